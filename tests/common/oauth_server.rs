//! A small OAuth2 authorization server for the OAuth2 tests, written for them.
//!
//! Why: mailbag's sign-in (RFC 6749 authorization code with RFC 7636 PKCE, RFC 8628 device
//! grant, refresh with rotation) and Dovecot's `oauth2` passdb (token introspection,
//! RFC 7662 style, `introspection_mode = post`) both need a real server to talk to. It listens
//! on one loopback port and speaks HTTPS to mailbag (a certificate made like the Dovecot one,
//! trusted through `oauth2_ca_file`) and plain HTTP to Dovecot's introspection requests: the
//! first byte of a connection tells them apart (0x16 starts a TLS handshake).
//!
//! Endpoints: `GET /authorize` (answers with a 302 to the redirect URI, as if the user had
//! consented), `POST /token` (authorization_code, refresh_token, device_code), `POST /device`,
//! `POST /introspect`. Tokens are random; the test can expire access tokens, revoke refresh
//! tokens, approve or deny device codes and read counters through [`AuthServer`].
//!
//! Refresh tokens rotate on every use by default and the old one stops working at once — the
//! strictest behaviour, which is what the crash test needs.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The client id the server accepts.
pub const CLIENT_ID: &str = "mailbag-test-client";

/// See [`State::before_refresh`].
pub type RefreshHook = Box<dyn FnMut(&str) + Send>;

/// What the server knows; shared between its tasks and the test.
#[derive(Default)]
pub struct State {
    /// access token → (user, still valid)
    pub access: HashMap<String, (String, bool)>,
    /// refresh token → (user, still valid)
    pub refresh: HashMap<String, (String, bool)>,
    /// authorization code → (user, PKCE challenge, redirect URI)
    codes: HashMap<String, (String, String, String)>,
    /// device code → device state
    devices: HashMap<String, Device>,
    /// How many refresh_token grants succeeded.
    pub refreshes: u32,
    /// How many introspection requests Dovecot made.
    pub introspections: u32,
    /// How many device polls came sooner than the interval allowed.
    pub polls_too_fast: u32,
    /// Device polls answered, by answer (`authorization_pending`, `slow_down`, `ok`, ...).
    pub poll_answers: Vec<String>,
    /// `expires_in` for new access tokens.
    pub access_lifetime: u64,
    /// Rotate refresh tokens on use (default true).
    pub rotate: bool,
    /// The user the next authorization or device approval signs in.
    pub user: String,
    /// Sent to `/authorize`, for the test to check.
    pub last_authorize_query: String,
    /// Requests that were refused and why (for failure messages).
    pub log: Vec<String>,
    /// Hold every introspection answer until this is false again (Dovecot, and so the
    /// client's login, waits meanwhile).
    pub hold_introspection: bool,
    /// How many introspection requests were held.
    pub held: u32,
    /// Tell Dovecot every token is inactive (a mailbox whose IMAP/POP access was withdrawn).
    pub reject_all: bool,
    /// Called with the refresh token of each refresh request before it is judged (for a test
    /// that acts as a second mailbag process in that moment).
    pub before_refresh: Option<RefreshHook>,
}

struct Device {
    user_code: String,
    interval: Duration,
    last_poll: Option<Instant>,
    /// Polls still to answer with `authorization_pending` before the next step.
    pending_polls: u32,
    /// Answer one poll with `slow_down` after the pending ones.
    slow_down_once: bool,
    approved: bool,
    denied: bool,
    expired: bool,
}

/// Handle to a running server; it stops when dropped.
pub struct AuthServer {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
    ca: PathBuf,
    _dir: tempfile::TempDir,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 18];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = io::Read::read_exact(&mut f, &mut bytes);
    }
    let mut out = String::from(prefix);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

impl AuthServer {
    /// Starts the server on a free loopback port with a fresh certificate.
    pub fn start() -> io::Result<AuthServer> {
        let dir = tempfile::Builder::new()
            .prefix("mailbag-oauth-")
            .tempdir()?;
        super::make_certificate(dir.path())?;
        let p12 = dir.path().join("server.p12");
        super::run_capture(
            std::process::Command::new("openssl")
                .args(["pkcs12", "-export", "-passout", "pass:test"])
                .arg("-in")
                .arg(dir.path().join("ca.pem"))
                .arg("-inkey")
                .arg(dir.path().join("key.pem"))
                .arg("-out")
                .arg(&p12),
        )?;
        let p12 = std::fs::read(&p12)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let state = Arc::new(Mutex::new(State {
            access_lifetime: 3600,
            rotate: true,
            user: super::ALICE.name.to_string(),
            ..State::default()
        }));
        let (listener, acceptor) = runtime.block_on(async {
            let acceptor = async_native_tls::TlsAcceptor::new(&p12[..], "test")
                .await
                .map_err(io::Error::other)?;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            Ok::<_, io::Error>((listener, acceptor))
        })?;
        let addr = listener.local_addr()?;
        let shared = state.clone();
        runtime.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let state = shared.clone();
                tokio::spawn(async move {
                    let mut first = [0u8; 1];
                    if tcp.peek(&mut first).await.is_err() {
                        return;
                    }
                    if first[0] == 0x16 {
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            serve(tls, state, true).await;
                        }
                    } else {
                        serve(tcp, state, false).await;
                    }
                });
            }
        });
        Ok(AuthServer {
            addr,
            state,
            ca: dir.path().join("ca.pem"),
            _dir: dir,
            runtime: Some(runtime),
        })
    }

    /// The CA file that makes mailbag trust this server (`oauth2_ca_file`).
    pub fn ca_path(&self) -> &Path {
        &self.ca
    }

    /// `https://localhost:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    /// The plain-HTTP introspection URL for Dovecot.
    pub fn introspection_url(&self) -> String {
        format!("http://127.0.0.1:{}/introspect", self.addr.port())
    }

    /// The account keys for a custom provider pointing here.
    pub fn account_keys(&self) -> String {
        format!(
            "auth = \"oauth2\"\noauth2_provider = \"custom\"\noauth2_client_id = \"{CLIENT_ID}\"\n\
             oauth2_auth_url = \"{}\"\noauth2_token_url = \"{}\"\noauth2_device_url = \"{}\"\n\
             oauth2_scopes = [\"mail\", \"offline_access\"]\noauth2_ca_file = \"{}\"\n",
            self.url("/authorize"),
            self.url("/token"),
            self.url("/device"),
            self.ca.display()
        )
    }

    /// Issues a token pair for `user` directly (as if the user had signed in earlier).
    pub fn issue(&self, user: &str) -> (String, String) {
        let mut s = self.lock();
        issue_pair(&mut s, user)
    }

    /// Makes every access token issued so far invalid (as if they had all expired).
    pub fn expire_access_tokens(&self) {
        for v in self.lock().access.values_mut() {
            v.1 = false;
        }
    }

    /// Makes every refresh token issued so far invalid (revoked by the user or an admin).
    pub fn revoke_refresh_tokens(&self) {
        for v in self.lock().refresh.values_mut() {
            v.1 = false;
        }
    }

    /// The refresh tokens that still work.
    pub fn valid_refresh_tokens(&self) -> Vec<String> {
        self.lock()
            .refresh
            .iter()
            .filter(|(_, (_, ok))| *ok)
            .map(|(t, _)| t.clone())
            .collect()
    }

    /// Lets the device code with `user_code` expire (the next poll gets `expired_token`).
    pub fn expire_device(&self, user_code: &str) -> bool {
        let mut s = self.lock();
        for d in s.devices.values_mut() {
            if d.user_code == user_code {
                d.expired = true;
                return true;
            }
        }
        false
    }

    /// Approves (or denies) the device authorization with `user_code`.
    pub fn decide_device(&self, user_code: &str, approve: bool) -> bool {
        let mut s = self.lock();
        for d in s.devices.values_mut() {
            if d.user_code == user_code {
                d.approved = approve;
                d.denied = !approve;
                return true;
            }
        }
        false
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn issue_pair(s: &mut State, user: &str) -> (String, String) {
    let access = random_token("at-");
    let refresh = random_token("rt-");
    s.access.insert(access.clone(), (user.to_string(), true));
    s.refresh.insert(refresh.clone(), (user.to_string(), true));
    (access, refresh)
}

/// Writes `DIR/config/mailbag/config.toml` with one account `work` for ALICE on `d` over
/// `protocol` (`imap` or `pop3`, implicit TLS), followed by `extra` account keys.
pub fn write_profile(dir: &Path, d: &super::Dovecot, protocol: &str, extra: &str) {
    let config = dir.join("config/mailbag");
    std::fs::create_dir_all(&config).expect("config dir");
    let port = if protocol == "imap" {
        d.imap_tls_port()
    } else {
        d.pop3_tls_port()
    };
    std::fs::write(
        config.join("config.toml"),
        format!(
            "[accounts.work]\nemail = \"alice@example.com\"\nprotocol = \"{protocol}\"\n\
             host = \"{}\"\nport = {port}\nsecurity = \"tls\"\nusername = \"{}\"\n\
             tls_ca_file = \"{}\"\n{extra}",
            super::TLS_NAME,
            super::ALICE.name,
            d.ca_path().display(),
        ),
    )
    .expect("config");
}

/// `mailbag ARGS` in the profile `dir` (as [`write_profile`] lays it out: `DIR/config`,
/// `DIR/data`).
pub fn mailbag_in(dir: &Path, args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_mailbag"));
    c.args(args)
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("XDG_DATA_HOME", dir.join("data"))
        .env_remove("MAILBAG_CONFIG");
    c
}

/// A parsed request.
struct Request {
    method: String,
    path: String,
    query: HashMap<String, String>,
    form: HashMap<String, String>,
}

async fn read_request<S: AsyncRead + Unpin>(io: &mut S) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = io.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 64 * 1024 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let length = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = io.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    Some(Request {
        method,
        path: path.to_string(),
        query: parse_form(query),
        form: parse_form(&String::from_utf8_lossy(&body)),
    })
}

/// `a=b&c=d` with percent and `+` decoding.
pub fn parse_form(text: &str) -> HashMap<String, String> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn sha256_b64url(text: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in digest.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

struct Reply {
    status: &'static str,
    headers: String,
    body: String,
}

fn json(status: &'static str, body: serde_json::Value) -> Reply {
    Reply {
        status,
        headers: "Content-Type: application/json\r\nCache-Control: no-store\r\n".into(),
        body: body.to_string(),
    }
}

fn oauth_error(error: &str) -> Reply {
    json("400 Bad Request", serde_json::json!({ "error": error }))
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut io: S, state: Arc<Mutex<State>>, tls: bool) {
    let Some(req) = read_request(&mut io).await else {
        return;
    };
    if req.path == "/introspect" {
        let mut counted = false;
        loop {
            {
                let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                if !s.hold_introspection {
                    break;
                }
                if !counted {
                    s.held += 1;
                    counted = true;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let reply = {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        handle(&mut s, &req, tls)
    };
    let text = format!(
        "HTTP/1.1 {}\r\n{}Content-Length: {}\r\nConnection: close\r\n\r\n{}",
        reply.status,
        reply.headers,
        reply.body.len(),
        reply.body
    );
    let _ = io.write_all(text.as_bytes()).await;
    let _ = io.flush().await;
    let _ = io.shutdown().await;
}

fn handle(s: &mut State, req: &Request, tls: bool) -> Reply {
    match (req.method.as_str(), req.path.as_str(), tls) {
        ("POST", "/introspect", false) => {
            s.introspections += 1;
            let token = req.form.get("token").cloned().unwrap_or_default();
            match s.access.get(&token) {
                Some((user, true)) if !s.reject_all => json(
                    "200 OK",
                    serde_json::json!({ "active": "true", "username": user }),
                ),
                _ => json("200 OK", serde_json::json!({ "active": "false" })),
            }
        }
        (_, _, false) => {
            s.log.push(format!("plain http to {}", req.path));
            json(
                "403 Forbidden",
                serde_json::json!({ "error": "https only" }),
            )
        }
        ("GET", "/authorize", true) => authorize(s, req),
        ("POST", "/token", true) => token(s, req),
        ("POST", "/device", true) => {
            if req.form.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
                return oauth_error("invalid_client");
            }
            let device_code = random_token("dc-");
            let user_code = format!("WDJB-{}", &random_token("")[..4].to_uppercase());
            s.devices.insert(
                device_code.clone(),
                Device {
                    user_code: user_code.clone(),
                    interval: Duration::from_secs(1),
                    last_poll: None,
                    pending_polls: 1,
                    slow_down_once: true,
                    approved: false,
                    denied: false,
                    expired: false,
                },
            );
            json(
                "200 OK",
                serde_json::json!({
                    "device_code": device_code,
                    "user_code": user_code,
                    "verification_uri": "https://localhost/device",
                    "expires_in": 600,
                    "interval": 1
                }),
            )
        }
        _ => json("404 Not Found", serde_json::json!({ "error": "not found" })),
    }
}

fn authorize(s: &mut State, req: &Request) -> Reply {
    let q = &req.query;
    s.last_authorize_query = q
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let ok = q.get("response_type").map(String::as_str) == Some("code")
        && q.get("client_id").map(String::as_str) == Some(CLIENT_ID)
        && q.get("code_challenge_method").map(String::as_str) == Some("S256")
        && q.get("code_challenge").is_some_and(|c| c.len() == 43);
    let (Some(redirect), Some(state)) = (q.get("redirect_uri"), q.get("state")) else {
        return json(
            "400 Bad Request",
            serde_json::json!({ "error": "invalid_request" }),
        );
    };
    if !redirect.starts_with("http://127.0.0.1:") && !redirect.starts_with("http://localhost:") {
        return json(
            "400 Bad Request",
            serde_json::json!({ "error": "redirect_uri not loopback" }),
        );
    }
    let location = if ok {
        let code = random_token("code-");
        s.codes.insert(
            code.clone(),
            (
                s.user.clone(),
                q.get("code_challenge").cloned().unwrap_or_default(),
                redirect.clone(),
            ),
        );
        format!("{redirect}?code={}&state={}", encode(&code), encode(state))
    } else {
        format!("{redirect}?error=invalid_request&state={}", encode(state))
    };
    Reply {
        status: "302 Found",
        headers: format!("Location: {location}\r\n"),
        body: String::new(),
    }
}

fn tokens_reply(s: &mut State, user: &str, refresh: Option<String>) -> Reply {
    let access = random_token("at-");
    s.access.insert(access.clone(), (user.to_string(), true));
    let mut body = serde_json::json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": s.access_lifetime,
    });
    if let Some(r) = refresh {
        body["refresh_token"] = serde_json::Value::String(r);
    }
    json("200 OK", body)
}

fn token(s: &mut State, req: &Request) -> Reply {
    let f = &req.form;
    if f.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return oauth_error("invalid_client");
    }
    match f.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let code = f.get("code").cloned().unwrap_or_default();
            let Some((user, challenge, redirect)) = s.codes.remove(&code) else {
                s.log.push("unknown code".into());
                return oauth_error("invalid_grant");
            };
            let verifier = f.get("code_verifier").cloned().unwrap_or_default();
            if sha256_b64url(&verifier) != challenge {
                s.log.push("pkce mismatch".into());
                return oauth_error("invalid_grant");
            }
            if f.get("redirect_uri") != Some(&redirect) {
                s.log.push("redirect_uri mismatch".into());
                return oauth_error("invalid_grant");
            }
            let refresh = random_token("rt-");
            s.refresh.insert(refresh.clone(), (user.clone(), true));
            tokens_reply(s, &user, Some(refresh))
        }
        Some("refresh_token") => {
            let old = f.get("refresh_token").cloned().unwrap_or_default();
            if let Some(hook) = s.before_refresh.as_mut() {
                hook(&old);
            }
            let user = match s.refresh.get(&old) {
                Some((user, true)) => user.clone(),
                _ => {
                    s.log.push("refused refresh token".into());
                    return oauth_error("invalid_grant");
                }
            };
            s.refreshes += 1;
            let rotated = if s.rotate {
                // NOTE: strict rotation: the old token dies the moment the new one is issued.
                if let Some(v) = s.refresh.get_mut(&old) {
                    v.1 = false;
                }
                let new = random_token("rt-");
                s.refresh.insert(new.clone(), (user.clone(), true));
                Some(new)
            } else {
                None
            };
            tokens_reply(s, &user, rotated)
        }
        Some("urn:ietf:params:oauth:grant-type:device_code") => {
            let code = f.get("device_code").cloned().unwrap_or_default();
            let user = s.user.clone();
            let Some(d) = s.devices.get_mut(&code) else {
                return oauth_error("invalid_grant");
            };
            let now = Instant::now();
            // NOTE: allow a little slack under the interval; a poll sooner than that is a
            // client that does not wait.
            let too_fast = d
                .last_poll
                .is_some_and(|t| now.duration_since(t) + Duration::from_millis(300) < d.interval);
            d.last_poll = Some(now);
            let answer = if too_fast {
                "too_fast"
            } else if d.denied {
                "access_denied"
            } else if d.expired {
                "expired_token"
            } else if d.pending_polls > 0 {
                d.pending_polls -= 1;
                "authorization_pending"
            } else if d.slow_down_once {
                d.slow_down_once = false;
                d.interval += Duration::from_secs(5);
                "slow_down"
            } else if d.approved {
                "ok"
            } else {
                "authorization_pending"
            };
            s.poll_answers.push(answer.to_string());
            match answer {
                "too_fast" => {
                    s.polls_too_fast += 1;
                    oauth_error("slow_down")
                }
                "ok" => {
                    s.devices.remove(&code);
                    let refresh = random_token("rt-");
                    s.refresh.insert(refresh.clone(), (user.clone(), true));
                    tokens_reply(s, &user, Some(refresh))
                }
                other => oauth_error(other),
            }
        }
        _ => oauth_error("unsupported_grant_type"),
    }
}

/// Waits for a `mailbag` child to exit (it is killed after two minutes: a hang is a failure);
/// returns whether it succeeded and its stderr.
pub fn finish(mut child: std::process::Child) -> (bool, String) {
    use std::io::Read as _;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            return (status.success(), err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mailbag did not finish");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Plays the browser on the authorization URL `url`: GET it over HTTPS trusting `ca`, and
/// return the status line and the `Location` header (the redirect to mailbag's listener).
pub fn browser_get(url: &str, ca: &Path) -> (String, Option<String>) {
    let rest = url.strip_prefix("https://").expect("https url");
    let (authority, target) = rest.split_at(rest.find('/').expect("path"));
    let (host, port) = authority.split_once(':').expect("port");
    let port: u16 = port.parse().expect("port number");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let cert =
            async_native_tls::Certificate::from_pem(&std::fs::read(ca).expect("ca")).expect("pem");
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let mut tls = async_native_tls::TlsConnector::new()
            .add_root_certificate(cert)
            .connect(host, tcp)
            .await
            .expect("tls");
        tls.write_all(
            format!("GET {target} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .expect("write");
        let mut reply = Vec::new();
        let _ = tls.read_to_end(&mut reply).await;
        let reply = String::from_utf8_lossy(&reply).into_owned();
        let status = reply.lines().next().unwrap_or("").to_string();
        let location = reply
            .lines()
            .find_map(|l| l.strip_prefix("Location: "))
            .map(str::to_string);
        (status, location)
    })
}

/// What the browser does with the redirect: a plain GET of `url` (`http://127.0.0.1:PORT/...`)
/// from mailbag's loopback listener; returns the whole reply.
pub fn browser_follow(url: &str) -> String {
    use std::io::{Read as _, Write as _};
    let rest = url.strip_prefix("http://").expect("http url");
    let (authority, target) = rest.split_at(rest.find('/').expect("path"));
    let mut tcp = std::net::TcpStream::connect(authority).expect("connect to the listener");
    write!(
        tcp,
        "GET {target} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut reply = String::new();
    let _ = tcp.read_to_string(&mut reply);
    reply
}
