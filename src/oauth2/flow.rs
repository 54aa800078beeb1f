//! Getting the first tokens: the authorization code grant with PKCE and a loopback redirect,
//! or the device authorization grant.
//!
//! **Authorization code** (RFC 6749 §4.1, RFC 7636 PKCE with S256, RFC 8252 native apps):
//! mailbag listens on `127.0.0.1` on a port the kernel picks (RFC 8252 §7.3; plain `http` on
//! the loopback interface is what the RFC prescribes), opens the system browser with
//! `xdg-open` (a failure is fine) and also hands the URL to the [`Prompt`], so a user on a
//! headless box can open it elsewhere and paste the final redirect URL back (the browser's
//! "cannot connect to 127.0.0.1" page still shows it in the address bar). The `state` value
//! must come back unchanged (RFC 6749 §10.12).
//!
//! **Device** (RFC 8628): show the user code and the verification URL, then poll the token
//! endpoint every `interval` seconds; `authorization_pending` means keep waiting,
//! `slow_down` adds 5 s to the interval (§3.5), `access_denied` and `expired_token` end it.

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::{Endpoints, OAuth2Error, base64url, random_bytes, store, token};
use crate::config::{Account, OAuth2Provider};
use crate::credentials::Secret;
use crate::wizard::http::{percent_decode, percent_encode};

/// What the sign-in needs to tell the user. The CLI prints; the TUI wizard draws.
pub trait Prompt: Send {
    /// Open this URL in a browser (it is shown whether or not a browser was started).
    fn show_url(&mut self, url: &str);
    /// Go to `verification_uri` and enter `user_code` (RFC 8628 §3.3).
    fn show_device_code(
        &mut self,
        user_code: &str,
        verification_uri: &str,
        verification_uri_complete: Option<&str>,
    );
    /// A short progress line ("waiting for the browser ...").
    fn status(&mut self, text: &str);
}

/// How to get the first tokens.
pub enum Method {
    /// Authorization code with PKCE and a loopback redirect.
    Browser {
        /// Run `xdg-open` on the URL (the URL is shown to the prompt either way).
        open_browser: bool,
        /// Lines the user pasted (the final redirect URL, from a headless box).
        pasted: Option<mpsc::Receiver<String>>,
    },
    /// Device authorization grant.
    Device,
}

/// Signs `account` in interactively and stores the tokens; afterwards the backends can
/// connect. `account_name` is the `NAME` of `[accounts.NAME]`.
pub async fn sign_in(
    account_name: &str,
    account: &Account,
    method: Method,
    prompt: &mut dyn Prompt,
) -> Result<(), OAuth2Error> {
    if account.oauth2_token_command.is_some() {
        return Err(OAuth2Error::Config {
            account: account_name.to_string(),
            reason: "this account gets its tokens from oauth2_token_command; there is nothing \
                     to sign in to"
                .into(),
        });
    }
    let ep = Endpoints::for_account(account_name, account)?;
    let tokens = match method {
        Method::Browser {
            open_browser,
            pasted,
        } => authorization_code(&ep, account, open_browser, pasted, prompt).await?,
        Method::Device => device(&ep, prompt).await?,
    };
    store::store_sign_in(account_name, account, tokens).await?;
    prompt.status("signed in; the refresh token is in the OS keyring");
    Ok(())
}

/// A PKCE verifier and its S256 challenge (RFC 7636 §4.1, §4.2).
pub struct Pkce {
    pub verifier: Secret,
    pub challenge: String,
}

impl Pkce {
    /// A fresh verifier: 32 random bytes, base64url (43 characters).
    pub fn new() -> Result<Pkce, OAuth2Error> {
        let verifier = base64url(&random_bytes(32)?);
        let challenge = challenge_for(&verifier);
        Ok(Pkce {
            verifier: Secret::new(verifier),
            challenge,
        })
    }
}

/// `BASE64URL(SHA256(verifier))` (RFC 7636 §4.2).
pub fn challenge_for(verifier: &str) -> String {
    base64url(&Sha256::digest(verifier.as_bytes()))
}

/// The authorization request URL (RFC 6749 §4.1.1 plus PKCE).
pub fn authorization_url(
    ep: &Endpoints,
    auth_url: &str,
    login_hint: &str,
    redirect_uri: &str,
    state: &str,
    challenge: &str,
) -> String {
    let mut params = vec![
        ("response_type", "code"),
        ("client_id", ep.client_id.as_str()),
        ("redirect_uri", redirect_uri),
        ("state", state),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
        ("login_hint", login_hint),
    ];
    let scope = ep.scope();
    params.push(("scope", &scope));
    if ep.provider == OAuth2Provider::Google {
        // NOTE: Google issues a refresh token only when asked for offline access, and again
        // on a repeated sign-in only with a fresh consent.
        params.push(("access_type", "offline"));
        params.push(("prompt", "consent"));
    }
    let query = params
        .iter()
        .map(|(k, v)| format!("{k}={}", percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let sep = if auth_url.contains('?') { '&' } else { '?' };
    format!("{auth_url}{sep}{query}")
}

/// What a redirect carried.
#[derive(PartialEq, Eq)]
pub enum Redirected {
    Code {
        code: String,
        state: Option<String>,
    },
    Error {
        error: String,
        state: Option<String>,
    },
    /// Not a sign-in redirect (a favicon request, a stray page).
    Other,
}

impl std::fmt::Debug for Redirected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Redirected::Code { .. } => f.write_str("Code(***)"),
            Redirected::Error { error, .. } => write!(f, "Error({error})"),
            Redirected::Other => f.write_str("Other"),
        }
    }
}

impl Redirected {
    /// The `state` the redirect carried.
    fn state(&self) -> Option<&str> {
        match self {
            Redirected::Code { state, .. } | Redirected::Error { state, .. } => state.as_deref(),
            Redirected::Other => None,
        }
    }
}

/// Reads the query of a request target or of a whole pasted URL.
pub fn parse_redirect(target: &str) -> Redirected {
    let Some((_, query)) = target.trim().split_once('?') else {
        return Redirected::Other;
    };
    let query = query.split('#').next().unwrap_or("");
    let (mut code, mut error, mut state) = (None, None, None);
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v);
        match k {
            "code" => code = v,
            "error" => error = v,
            "state" => state = v,
            _ => {}
        }
    }
    match (code, error) {
        (_, Some(error)) => Redirected::Error {
            error: crate::sanitize::line(&error).into_owned(),
            state,
        },
        (Some(code), None) if !code.is_empty() => Redirected::Code { code, state },
        _ => Redirected::Other,
    }
}

/// The loopback redirect URI for a listener on `port`.
fn redirect_uri(ep: &Endpoints, port: u16) -> String {
    // NOTE: Microsoft Entra matches the registered `http://localhost` redirect (any port);
    // Google and RFC 8252 §7.3 prefer the literal address. Both resolve to the listener.
    match ep.provider {
        OAuth2Provider::Microsoft => format!("http://localhost:{port}/"),
        _ => format!("http://127.0.0.1:{port}/"),
    }
}

const DONE_PAGE: &str = "<!doctype html><meta charset=utf-8><title>mailbag</title>\
    <p>mailbag got the sign-in. You can close this window.</p>";
const FAILED_PAGE: &str = "<!doctype html><meta charset=utf-8><title>mailbag</title>\
    <p>The sign-in did not succeed; see the terminal.</p>";

async fn authorization_code(
    ep: &Endpoints,
    account: &Account,
    open_browser: bool,
    mut pasted: Option<mpsc::Receiver<String>>,
    prompt: &mut dyn Prompt,
) -> Result<token::Tokens, OAuth2Error> {
    let Some(auth_url) = &ep.auth_url else {
        return Err(OAuth2Error::Redirect(
            "this provider has no authorization endpoint: set oauth2_auth_url or use the \
             device sign-in (--device)"
                .into(),
        ));
    };
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(OAuth2Error::Listen)?;
    let port = listener.local_addr().map_err(OAuth2Error::Listen)?.port();
    // NOTE: `localhost` (the Microsoft redirect) may resolve to ::1 first; listen there too
    // when the same port is free. Failing that, browsers fall back to 127.0.0.1.
    let v6 = TcpListener::bind(("::1", port)).await.ok();
    let (found_tx, mut found) = mpsc::channel(4);
    // NOTE: the listeners close when this function returns, fails or is cancelled (the TUI
    // dropping the sign-in): the guard aborts their tasks.
    let _listening = AbortOnDrop(
        std::iter::once(listener)
            .chain(v6)
            .map(|l| tokio::spawn(accept_redirects(l, found_tx.clone())))
            .collect(),
    );
    drop(found_tx);
    let redirect = redirect_uri(ep, port);
    let pkce = Pkce::new()?;
    let state = base64url(&random_bytes(16)?);
    let url = authorization_url(
        ep,
        auth_url,
        account.username(),
        &redirect,
        &state,
        &pkce.challenge,
    );
    if open_browser {
        open_in_browser(&url);
    }
    prompt.show_url(&url);
    prompt.status(&format!(
        "waiting for the browser to come back to {redirect} (or paste the address it ends on)"
    ));
    let got = loop {
        let from_paste = async {
            match pasted.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            redirected = found.recv() => match redirected {
                Some(r) if r.state() == Some(state.as_str()) => break r,
                // NOTE: any local program or web page can reach the port; a redirect with
                // another state must neither end nor answer this sign-in (RFC 6749 §10.12).
                Some(_) => {
                    prompt.status("ignored a redirect that does not belong to this sign-in");
                    continue;
                }
                None => return Err(OAuth2Error::Listen(std::io::Error::other(
                    "the listener stopped",
                ))),
            },
            line = from_paste => match line {
                None => {
                    // NOTE: stdin closed; keep waiting for the browser alone.
                    pasted = None;
                    continue;
                }
                Some(line) if line.trim().is_empty() => continue,
                Some(line) => match parse_redirect(&line) {
                    Redirected::Other => {
                        prompt.status("that is not the address the sign-in ended on; try again");
                        continue;
                    }
                    r => break r,
                },
            },
        }
    };
    // NOTE: checked before an error is believed too, so a stray `error=access_denied`
    // cannot end the sign-in.
    if got.state() != Some(state.as_str()) {
        return Err(OAuth2Error::Redirect(
            "the state does not match this sign-in (an old or forged redirect)".into(),
        ));
    }
    let code = match got {
        Redirected::Code { code, .. } => Secret::new(code),
        Redirected::Error { error, .. } if error == "access_denied" => {
            return Err(OAuth2Error::Denied);
        }
        Redirected::Error { error, .. } => {
            return Err(OAuth2Error::Refused {
                error,
                description: None,
            });
        }
        Redirected::Other => return Err(OAuth2Error::Cancelled),
    };
    prompt.status("exchanging the code for tokens");
    token::exchange_code(ep, &code, &pkce.verifier, &redirect).await
}

/// Aborts its tasks when dropped.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Accepts browser connections, each served on its own task (a browser may open idle
/// speculative connections), and sends every sign-in redirect to `found`.
async fn accept_redirects(listener: TcpListener, found: mpsc::Sender<Redirected>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // NOTE: e.g. out of file descriptors; do not spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let found = found.clone();
        tokio::spawn(async move {
            let r = serve_redirect(stream).await;
            if r != Redirected::Other {
                let _ = found.send(r).await;
            }
        });
    }
}

/// Reads one HTTP request from the browser and answers it; returns what its target carried.
async fn serve_redirect(mut stream: tokio::net::TcpStream) -> Redirected {
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 2048];
    let read = async {
        loop {
            if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.len() > 16 * 1024 {
                break;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or(&[])),
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .is_err()
    {
        return Redirected::Other;
    }
    let text = String::from_utf8_lossy(&buf);
    let first = text.lines().next().unwrap_or("");
    let mut parts = first.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let result = if method == "GET" {
        parse_redirect(target)
    } else {
        Redirected::Other
    };
    let (status, page) = match &result {
        Redirected::Code { .. } => ("200 OK", DONE_PAGE),
        Redirected::Error { .. } => ("200 OK", FAILED_PAGE),
        Redirected::Other => ("404 Not Found", FAILED_PAGE),
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n{page}",
        page.len()
    );
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
    result
}

/// Starts the system browser on `url`; failures are ignored (the URL is also printed).
fn open_in_browser(url: &str) {
    // NOTE: the child is reaped by a thread so it does not linger as a zombie.
    if let Ok(mut child) = std::process::Command::new("xdg-open")
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        std::thread::spawn(move || {
            let _ = child.wait();
        });
    }
}

async fn device(ep: &Endpoints, prompt: &mut dyn Prompt) -> Result<token::Tokens, OAuth2Error> {
    let auth = token::start_device(ep).await?;
    prompt.show_device_code(
        &auth.user_code,
        &auth.verification_uri,
        auth.verification_uri_complete.as_deref(),
    );
    prompt.status("waiting for the sign-in to be confirmed");
    let deadline = Instant::now() + Duration::from_secs(auth.expires_in);
    let mut interval = Duration::from_secs(auth.interval);
    loop {
        tokio::time::sleep(interval).await;
        if Instant::now() >= deadline {
            return Err(OAuth2Error::DeviceExpired);
        }
        match token::poll_device(ep, &auth.device_code).await {
            Ok(tokens) => return Ok(tokens),
            Err(OAuth2Error::Refused { error, description }) => match error.as_str() {
                "authorization_pending" => {}
                "slow_down" => interval = interval.saturating_add(Duration::from_secs(5)),
                "access_denied" => return Err(OAuth2Error::Denied),
                "expired_token" => return Err(OAuth2Error::DeviceExpired),
                _ => return Err(OAuth2Error::Refused { error, description }),
            },
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(provider: OAuth2Provider) -> Endpoints {
        Endpoints {
            provider,
            client_id: "client 1".into(),
            client_secret: None,
            auth_url: Some("https://auth.example/authorize".into()),
            token_url: "https://auth.example/token".into(),
            device_url: None,
            scopes: vec!["a".into(), "b/c".into()],
            ca_file: None,
        }
    }

    #[test]
    fn pkce_s256_matches_rfc7636_appendix_b() {
        assert_eq!(
            challenge_for("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let p = Pkce::new().expect("pkce");
        assert_eq!(p.verifier.expose().len(), 43);
        assert_eq!(p.challenge, challenge_for(p.verifier.expose()));
    }

    #[test]
    fn authorization_url_carries_pkce_state_and_scopes() {
        let e = ep(OAuth2Provider::Custom);
        let url = authorization_url(
            &e,
            "https://auth.example/authorize",
            "me@example.com",
            "http://127.0.0.1:4000/",
            "st",
            "ch",
        );
        assert!(url.starts_with("https://auth.example/authorize?response_type=code&"));
        for part in [
            "client_id=client%201",
            "redirect_uri=http%3A%2F%2F127.0.0.1%3A4000%2F",
            "state=st",
            "code_challenge=ch",
            "code_challenge_method=S256",
            "scope=a%20b%2Fc",
            "login_hint=me%40example.com",
        ] {
            assert!(url.contains(part), "{part} in {url}");
        }
        assert!(!url.contains("access_type"));
        let g = authorization_url(
            &ep(OAuth2Provider::Google),
            "https://x/auth?hd=example.com",
            "u",
            "r",
            "s",
            "c",
        );
        assert!(g.starts_with("https://x/auth?hd=example.com&response_type"));
        assert!(g.contains("access_type=offline"));
    }

    #[test]
    fn redirects_parse_from_targets_and_pasted_urls() {
        assert_eq!(
            parse_redirect("/?code=abc%2F1&state=xyz"),
            Redirected::Code {
                code: "abc/1".into(),
                state: Some("xyz".into())
            }
        );
        assert_eq!(
            parse_redirect("  http://127.0.0.1:5555/?state=s&code=c#frag \n"),
            Redirected::Code {
                code: "c".into(),
                state: Some("s".into())
            }
        );
        assert_eq!(
            parse_redirect("/?error=access_denied&state=s"),
            Redirected::Error {
                error: "access_denied".into(),
                state: Some("s".into())
            }
        );
        assert_eq!(parse_redirect("/favicon.ico"), Redirected::Other);
        assert_eq!(parse_redirect("/?code="), Redirected::Other);
        assert_eq!(
            format!("{:?}", parse_redirect("/?code=secret")),
            "Code(***)"
        );
    }

    #[test]
    fn microsoft_redirects_to_localhost() {
        assert_eq!(
            redirect_uri(&ep(OAuth2Provider::Microsoft), 4242),
            "http://localhost:4242/"
        );
        assert_eq!(
            redirect_uri(&ep(OAuth2Provider::Google), 4242),
            "http://127.0.0.1:4242/"
        );
    }

    /// Hands each shown URL to the test.
    struct Capture(std::sync::mpsc::Sender<String>);

    impl Prompt for Capture {
        fn show_url(&mut self, url: &str) {
            let _ = self.0.send(url.to_string());
        }
        fn show_device_code(&mut self, _: &str, _: &str, _: Option<&str>) {}
        fn status(&mut self, _: &str) {}
    }

    fn custom_account() -> Account {
        let mut a = crate::wizard::blank_account(
            "me@example.com",
            crate::config::Protocol::Imap,
            "imap.example.com",
            crate::config::Security::Tls,
        );
        super::super::configure(&mut a, OAuth2Provider::Custom, "cid", None);
        a.oauth2_auth_url = Some("https://auth.example/authorize".into());
        a.oauth2_token_url = Some("https://auth.example/token".into());
        a.oauth2_scopes = Some(vec!["mail".into()]);
        a
    }

    /// Starts a browser sign-in on a runtime thread; returns the `state` of its authorization
    /// URL and the listener's port.
    fn start_browser_sign_in(
        rt: &tokio::runtime::Runtime,
    ) -> (
        tokio::task::JoinHandle<Result<(), OAuth2Error>>,
        String,
        u16,
    ) {
        let (tx, rx) = std::sync::mpsc::channel();
        let task = rt.spawn(async move {
            let method = Method::Browser {
                open_browser: false,
                pasted: None,
            };
            sign_in("t", &custom_account(), method, &mut Capture(tx)).await
        });
        let url = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the URL is shown");
        let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
        let redirect = query
            .split('&')
            .find_map(|p| p.strip_prefix("redirect_uri="))
            .and_then(percent_decode)
            .expect("redirect_uri");
        let port = redirect
            .trim_start_matches("http://127.0.0.1:")
            .trim_end_matches('/')
            .parse()
            .expect("port");
        let state = query
            .split('&')
            .find_map(|p| p.strip_prefix("state="))
            .expect("state")
            .to_string();
        (task, state, port)
    }

    #[test]
    fn a_denied_consent_ends_the_browser_sign_in() {
        use std::io::{Read, Write};
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let (task, state, port) = start_browser_sign_in(&rt);
        let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        write!(
            tcp,
            "GET /?error=access_denied&state={state} HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        .expect("write");
        let mut page = String::new();
        let _ = tcp.read_to_string(&mut page);
        assert!(page.contains("did not succeed"), "{page}");
        let result = rt.block_on(task).expect("join");
        assert!(matches!(result, Err(OAuth2Error::Denied)), "{result:?}");
    }

    #[test]
    fn a_redirect_with_another_state_does_not_end_the_browser_sign_in() {
        use std::io::{Read, Write};
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let (task, state, port) = start_browser_sign_in(&rt);
        for query in [
            "error=access_denied&state=forged".to_string(),
            format!("error=access_denied&state={state}"),
        ] {
            let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
            write!(tcp, "GET /?{query} HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
            let mut page = String::new();
            let _ = tcp.read_to_string(&mut page);
        }
        // NOTE: had the forged redirect counted, the result would be a state mismatch.
        let result = rt.block_on(task).expect("join");
        assert!(matches!(result, Err(OAuth2Error::Denied)), "{result:?}");
    }

    #[test]
    fn a_cancelled_browser_sign_in_closes_its_listener() {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let (task, _, port) = start_browser_sign_in(&rt);
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        task.abort();
        let _ = rt.block_on(task);
        // NOTE: the accept tasks are aborted on drop; the runtime runs them down soon after,
        // then the port refuses connections (waited for, not timed).
        let refused = (0..50).any(|_| {
            let gone = std::net::TcpStream::connect(("127.0.0.1", port)).is_err();
            if !gone {
                std::thread::sleep(Duration::from_millis(100));
            }
            gone
        });
        assert!(refused, "the loopback listener outlived the sign-in");
    }
}
