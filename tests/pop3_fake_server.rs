//! POP3 protocol edge cases against a small scripted server, run through the real `mailbag`
//! binary.
//!
//! Why a fake server here: everything a well-behaved server does is tested against the real
//! Dovecot in `tests/pop3_sync.rs`. What is tested here are the replies Dovecot will not produce
//! on demand, yet real servers and attackers do: `-ERR [IN-USE]` at login (RFC 2449 §8.1.1), a
//! connection cut in the middle of a RETR (RFC 1939 §7), malformed status lines and listings,
//! a server without STLS when `security = "starttls"` (RFC 2595 §4), bytes injected after the
//! STLS `+OK` and before the TLS handshake (RFC 2595 §4, CVE-2011-0411), a server without UIDL
//! (RFC 1939 §7 makes it optional), a server with or without PIPELINING (RFC 2449 §6.6), a
//! message that vanished between UIDL and RETR, and a `-ERR` greeting (RFC 1939 §4).
//!
//! The fake listens on `127.0.0.1:0`, serves exactly one connection from a [`Script`] on its own
//! thread, and records what the client sent ([`Log`]). Every accept and read has a timeout, so a
//! test never hangs; the fake stops by itself after QUIT, after a scripted close, when the client
//! goes away, or when a timeout expires. `mailbag` itself runs under a deadline as well.
//!
//! Clear text (`security = "none"`) is configured explicitly in every test except the STARTTLS
//! ones; the TLS test generates a self-signed certificate with the `openssl` CLI.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The login name every profile uses.
const USER: &str = "alice";
/// The password every profile uses (and the fake accepts).
const PASSWORD: &str = "fake-Secret-9";
/// How long the fake waits for a connection or for the next bytes from the client.
const IO_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one `mailbag` run may take before it is killed and the test fails.
const RUN_DEADLINE: Duration = Duration::from_secs(120);
/// How long the lock-step check listens for a command sent too early.
///
/// NOTE: a correct client never sends during this window, so the check can miss a pipelining
/// client on a slow machine but never blames a correct one.
const LOCKSTEP_WINDOW: Duration = Duration::from_millis(150);
/// The password of the PKCS#12 file the TLS test generates.
const P12_PASSWORD: &str = "fake-p12";

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------

/// One message on the fake server.
#[derive(Clone, Debug)]
struct Msg {
    uidl: String,
    raw: Vec<u8>,
}

/// Message `i`: CRLF line endings, a line starting with a dot (dot-stuffed on the wire) and a
/// `From ` line (quoted in the mbox), so that byte-identity means something.
fn message(i: u32) -> Msg {
    let raw = format!(
        "Return-Path: <sender{i}@example.org>\r\n\
         Message-ID: <fake-{i}@mailbag.test>\r\n\
         Date: 1 Jan 2024 10:{i:02}:00 +0000\r\n\
         From: Sender {i} <sender{i}@example.org>\r\n\
         To: {USER} <{USER}@example.com>\r\n\
         Subject: Fake message {i}\r\n\
         \r\n\
         Hello,\r\n\
         .this line starts with a dot\r\n\
         From here on the mbox quotes it\r\n\
         ..and this one with two\r\n\
         {filler}\
         \r\n\
         bye {i}\r\n",
        filler = "Some filler text so that the message is long enough to cut in half.\r\n"
            .repeat(i as usize * 3),
    );
    Msg {
        uidl: format!("uid-{i}"),
        raw: raw.into_bytes(),
    }
}

/// Messages 1 to `n`.
fn messages(n: u32) -> Vec<Msg> {
    (1..=n).map(message).collect()
}

/// The Message-ID the parser sees in `raw`.
fn message_id(raw: &[u8]) -> String {
    mailbag::backend::Envelope::from_raw(raw)
        .message_id
        .unwrap_or_default()
}

/// A message as it goes over the wire after a RETR's `+OK`: dot-stuffed, ending in CRLF.
fn stuffed(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 16);
    for line in raw.split_inclusive(|&b| b == b'\n') {
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The fake server
// ---------------------------------------------------------------------------------------------

/// A scripted reply that replaces the normal one.
#[derive(Clone, Debug)]
enum Reply {
    /// Send these bytes as the reply.
    Raw(Vec<u8>),
    /// Send these bytes, then close the connection.
    RawThenClose(Vec<u8>),
}

/// STARTTLS on the fake: the identity to present and what to inject after STLS's `+OK`.
#[derive(Clone, Debug)]
struct TlsSetup {
    p12: Vec<u8>,
    /// Written in the same TCP write as `+OK`, before the handshake.
    inject: Vec<u8>,
    /// The CAPA lines offered once TLS is up (RFC 2595 §4: they may differ).
    capa_after: Vec<String>,
}

/// How the fake behaves. [`Script::new`] is a well-behaved server.
#[derive(Clone, Debug)]
struct Script {
    greeting: Vec<u8>,
    capa: Vec<String>,
    uidl: bool,
    messages: Vec<Msg>,
    /// `(command, reply)`: a command line equal to `command`, or starting with it and a
    /// space, gets `reply` instead of the normal one (compared upper-case).
    overrides: Vec<(String, Reply)>,
    tls: Option<TlsSetup>,
    /// At the first RETR, wait until this many RETRs have arrived before answering.
    wait_for_retrs: Option<usize>,
    /// Record a violation whenever a command arrives before the previous one was answered.
    check_lockstep: bool,
}

impl Script {
    fn new(messages: Vec<Msg>) -> Script {
        Script {
            greeting: b"+OK fake POP3 server ready\r\n".to_vec(),
            capa: ["TOP", "UIDL", "USER", "PIPELINING"]
                .map(String::from)
                .to_vec(),
            uidl: true,
            messages,
            overrides: Vec::new(),
            tls: None,
            wait_for_retrs: None,
            check_lockstep: false,
        }
    }

    fn capa(mut self, lines: &[&str]) -> Script {
        self.capa = lines.iter().map(|s| s.to_string()).collect();
        self
    }

    fn reply(mut self, command: &str, reply: Reply) -> Script {
        self.overrides.push((command.to_ascii_uppercase(), reply));
        self
    }
}

/// What the fake saw.
#[derive(Debug, Default)]
struct Log {
    /// Every command line received, in order.
    commands: Vec<String>,
    /// Message numbers of every DELE received.
    dele: Vec<u32>,
    /// Whether QUIT arrived (and so the deletions were committed).
    quit: bool,
    /// How many RETRs had arrived when the first one was answered (with `wait_for_retrs`).
    retrs_before_first_reply: Option<usize>,
    /// Commands that arrived before the previous command was answered (with `check_lockstep`).
    lockstep_violations: Vec<String>,
    /// Whether the STARTTLS handshake completed.
    tls_established: bool,
    /// The fake's own troubles (timeouts, I/O errors, a failed handshake).
    problems: Vec<String>,
}

impl Log {
    fn sent(&self, verb: &str) -> bool {
        self.commands.iter().any(|c| is_verb(c, verb))
    }

    fn count(&self, verb: &str) -> usize {
        self.commands.iter().filter(|c| is_verb(c, verb)).count()
    }
}

fn is_verb(line: &str, verb: &str) -> bool {
    let upper = line.to_ascii_uppercase();
    upper == verb || upper.starts_with(&format!("{verb} "))
}

/// A running fake; [`Fake::finish`] waits for it to stop and returns what it saw.
struct Fake {
    port: u16,
    thread: JoinHandle<Log>,
}

impl Fake {
    fn start(script: Script) -> Fake {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("local addr").port();
        let thread = thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(serve_one(listener, script))
        });
        Fake { port, thread }
    }

    fn finish(self) -> Log {
        self.thread.join().expect("the fake server panicked")
    }
}

async fn serve_one(listener: std::net::TcpListener, script: Script) -> Log {
    let mut log = Log::default();
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            log.problems.push(format!("listener: {e}"));
            return log;
        }
    };
    let stream = match tokio::time::timeout(IO_TIMEOUT, listener.accept()).await {
        Ok(Ok((stream, _))) => stream,
        Ok(Err(e)) => {
            log.problems.push(format!("accept: {e}"));
            return log;
        }
        Err(_) => {
            log.problems.push("no connection arrived".into());
            return log;
        }
    };
    drop(listener);
    let mut session = Session {
        conn: Conn::Plain(stream),
        buf: Vec::new(),
        eof: false,
        script: &script,
        log: &mut log,
        deleted: BTreeSet::new(),
    };
    if let Err(e) = session.run().await {
        session.log.problems.push(e);
    }
    log
}

/// The connection, before and after STARTTLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<async_native_tls::TlsStream<TcpStream>>),
    Gone,
}

impl Conn {
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf).await,
            Conn::Tls(s) => s.read(buf).await,
            Conn::Gone => Ok(0),
        }
    }

    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.write_all(bytes).await,
            Conn::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
            Conn::Gone => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }
}

/// One client connection being served.
struct Session<'a> {
    conn: Conn,
    buf: Vec<u8>,
    eof: bool,
    script: &'a Script,
    log: &'a mut Log,
    deleted: BTreeSet<u32>,
}

/// What to do after a command was answered.
enum Next {
    Continue,
    Close,
}

impl Session<'_> {
    async fn run(&mut self) -> Result<(), String> {
        let greeting = self.script.greeting.clone();
        self.send(&greeting).await?;
        if greeting.starts_with(b"-") {
            return Ok(());
        }
        while let Some(line) = self.line().await? {
            self.log.commands.push(line.clone());
            if self.script.check_lockstep {
                self.check_lockstep(&line).await?;
            }
            if let Next::Close = self.answer(&line).await? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Read once, waiting at most `wait`; `false` if nothing came in time.
    async fn fill(&mut self, wait: Duration) -> Result<bool, String> {
        if self.eof {
            return Ok(true);
        }
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout(wait, self.conn.read(&mut chunk)).await {
            Err(_) => Ok(false),
            Ok(Err(e)) => Err(format!("read: {e}")),
            Ok(Ok(0)) => {
                self.eof = true;
                Ok(true)
            }
            Ok(Ok(n)) => {
                self.buf
                    .extend_from_slice(chunk.get(..n).unwrap_or_default());
                Ok(true)
            }
        }
    }

    /// The next command line without its line ending; `None` once the client has gone.
    async fn line(&mut self) -> Result<Option<String>, String> {
        loop {
            if let Some(lf) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=lf).collect();
                let text = String::from_utf8_lossy(&line);
                return Ok(Some(text.trim_end_matches(['\r', '\n']).to_string()));
            }
            if self.eof {
                return Ok(None);
            }
            if !self.fill(IO_TIMEOUT).await? {
                return Err("no command from the client in time".into());
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.conn
            .write_all(bytes)
            .await
            .map_err(|e| format!("write: {e}"))
    }

    /// Without PIPELINING the client must wait for each reply: anything already here, or
    /// arriving while the fake holds back its reply, is a violation.
    async fn check_lockstep(&mut self, line: &str) -> Result<(), String> {
        if self.buf.is_empty() {
            self.fill(LOCKSTEP_WINDOW).await?;
        }
        if !self.buf.is_empty() {
            self.log.lockstep_violations.push(format!(
                "after {line:?} the client already sent {:?}",
                String::from_utf8_lossy(&self.buf)
            ));
        }
        Ok(())
    }

    /// Complete RETR lines waiting in the buffer.
    fn buffered_retrs(&self) -> usize {
        self.buf
            .split_inclusive(|&b| b == b'\n')
            .filter(|l| l.ends_with(b"\n"))
            .filter(|l| l.get(..5).is_some_and(|v| v.eq_ignore_ascii_case(b"RETR ")))
            .count()
    }

    /// Before answering the first RETR, wait for `want` RETRs in all (or a timeout).
    async fn wait_for_retrs(&mut self, want: usize) -> Result<(), String> {
        let deadline = Instant::now() + IO_TIMEOUT;
        while 1 + self.buffered_retrs() < want && !self.eof {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.fill(left).await? {
                break;
            }
        }
        self.log.retrs_before_first_reply = Some(1 + self.buffered_retrs());
        Ok(())
    }

    fn live(&self) -> impl Iterator<Item = (u32, &Msg)> {
        self.script
            .messages
            .iter()
            .zip(1u32..)
            .map(|(m, n)| (n, m))
            .filter(|(n, _)| !self.deleted.contains(n))
    }

    fn get(&self, arg: Option<&str>) -> Option<(u32, &Msg)> {
        let n: u32 = arg?.parse().ok()?;
        if self.deleted.contains(&n) {
            return None;
        }
        let index = usize::try_from(n.checked_sub(1)?).ok()?;
        self.script.messages.get(index).map(|m| (n, m))
    }

    async fn answer(&mut self, line: &str) -> Result<Next, String> {
        let upper = line.to_ascii_uppercase();
        let mut words = line.split(' ');
        let verb = words.next().unwrap_or_default().to_ascii_uppercase();
        let arg = words.next();
        let arg2 = words.next();

        if verb == "RETR"
            && self.log.retrs_before_first_reply.is_none()
            && let Some(want) = self.script.wait_for_retrs
        {
            self.wait_for_retrs(want).await?;
        }

        let overridden = self
            .script
            .overrides
            .iter()
            .find(|(cmd, _)| upper == *cmd || upper.starts_with(&format!("{cmd} ")))
            .map(|(_, reply)| reply.clone());
        match overridden {
            Some(Reply::Raw(bytes)) => {
                self.send(&bytes).await?;
                return Ok(Next::Continue);
            }
            Some(Reply::RawThenClose(bytes)) => {
                self.send(&bytes).await?;
                return Ok(Next::Close);
            }
            None => {}
        }

        let reply: Vec<u8> = match verb.as_str() {
            "CAPA" => {
                let lines = match (&self.conn, &self.script.tls) {
                    (Conn::Tls(_), Some(tls)) => &tls.capa_after,
                    _ => &self.script.capa,
                };
                let mut out = b"+OK capability list follows\r\n".to_vec();
                for l in lines {
                    out.extend_from_slice(l.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b".\r\n");
                out
            }
            "STLS" => return self.starttls().await,
            "USER" => b"+OK send PASS\r\n".to_vec(),
            "PASS" if line.get(5..) == Some(PASSWORD) => b"+OK logged in\r\n".to_vec(),
            "PASS" => b"-ERR [AUTH] invalid login\r\n".to_vec(),
            "AUTH" => b"+OK logged in\r\n".to_vec(),
            "NOOP" | "RSET" => b"+OK\r\n".to_vec(),
            "STAT" => {
                let (n, size) = self
                    .live()
                    .fold((0, 0), |(n, s), (_, m)| (n + 1, s + m.raw.len()));
                format!("+OK {n} {size}\r\n").into_bytes()
            }
            "LIST" => {
                let mut out = b"+OK scan listing follows\r\n".to_vec();
                for (n, m) in self.live() {
                    out.extend_from_slice(format!("{n} {}\r\n", m.raw.len()).as_bytes());
                }
                out.extend_from_slice(b".\r\n");
                out
            }
            "UIDL" if self.script.uidl => {
                let mut out = b"+OK unique-id listing follows\r\n".to_vec();
                for (n, m) in self.live() {
                    out.extend_from_slice(format!("{n} {}\r\n", m.uidl).as_bytes());
                }
                out.extend_from_slice(b".\r\n");
                out
            }
            "TOP" => match (self.get(arg), arg2) {
                (Some((_, m)), Some("0")) => {
                    let end = m
                        .raw
                        .windows(4)
                        .position(|w| w == b"\r\n\r\n")
                        .map_or(m.raw.len(), |p| p + 4);
                    let mut out = b"+OK top of message follows\r\n".to_vec();
                    out.extend_from_slice(&stuffed(m.raw.get(..end).unwrap_or_default()));
                    out.extend_from_slice(b".\r\n");
                    out
                }
                _ => b"-ERR no such message\r\n".to_vec(),
            },
            "RETR" => match self.get(arg) {
                Some((_, m)) => {
                    let mut out = format!("+OK {} octets\r\n", m.raw.len()).into_bytes();
                    out.extend_from_slice(&stuffed(&m.raw));
                    out.extend_from_slice(b".\r\n");
                    out
                }
                None => b"-ERR no such message\r\n".to_vec(),
            },
            "DELE" => match self.get(arg) {
                Some((n, _)) => {
                    self.log.dele.push(n);
                    self.deleted.insert(n);
                    format!("+OK message {n} deleted\r\n").into_bytes()
                }
                None => b"-ERR no such message\r\n".to_vec(),
            },
            "QUIT" => {
                self.log.quit = true;
                self.send(b"+OK bye\r\n").await?;
                return Ok(Next::Close);
            }
            _ => b"-ERR unknown command\r\n".to_vec(),
        };
        self.send(&reply).await?;
        Ok(Next::Continue)
    }

    /// STLS: `+OK` and the injected bytes in one write, then the TLS handshake.
    async fn starttls(&mut self) -> Result<Next, String> {
        let Some(tls) = self.script.tls.clone() else {
            self.send(b"-ERR STLS not available\r\n").await?;
            return Ok(Next::Continue);
        };
        if !self.buf.is_empty() {
            return Err("the client sent more after STLS without waiting for its reply".into());
        }
        let mut reply = b"+OK begin TLS negotiation\r\n".to_vec();
        reply.extend_from_slice(&tls.inject);
        self.send(&reply).await?;
        let acceptor = async_native_tls::TlsAcceptor::new(tls.p12.as_slice(), P12_PASSWORD)
            .await
            .map_err(|e| format!("tls acceptor: {e}"))?;
        let Conn::Plain(tcp) = std::mem::replace(&mut self.conn, Conn::Gone) else {
            return Err("STLS on a connection that is not plain".into());
        };
        let stream = tokio::time::timeout(IO_TIMEOUT, acceptor.accept(tcp))
            .await
            .map_err(|_| "tls handshake timed out".to_string())?
            .map_err(|e| format!("tls handshake: {e}"))?;
        self.conn = Conn::Tls(Box::new(stream));
        self.log.tls_established = true;
        Ok(Next::Continue)
    }
}

// ---------------------------------------------------------------------------------------------
// The mailbag side
// ---------------------------------------------------------------------------------------------

/// A mailbag profile (config + data) in a temporary directory.
struct Profile {
    dir: tempfile::TempDir,
}

impl Profile {
    fn new() -> Profile {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("password"), format!("{PASSWORD}\n")).expect("password");
        Profile { dir }
    }

    /// Point the account at `port`; `extra` is appended to the account table.
    fn configure(&self, port: u16, security: &str, extra: &str) {
        let config = self.dir.path().join("config/mailbag");
        std::fs::create_dir_all(&config).expect("config dir");
        std::fs::write(
            config.join("config.toml"),
            format!(
                "[accounts.pop]\n\
                 email = \"{USER}@example.com\"\n\
                 protocol = \"pop3\"\n\
                 host = \"127.0.0.1\"\n\
                 port = {port}\n\
                 security = \"{security}\"\n\
                 username = \"{USER}\"\n\
                 password_command = \"cat {pw}\"\n\
                 {extra}\n",
                pw = self.dir.path().join("password").display(),
            ),
        )
        .expect("config");
    }

    /// `mailbag sync` against `script` with clear text; returns its output and the fake's log.
    fn sync_plain(&self, script: Script, extra: &str) -> (Output, Log) {
        let fake = Fake::start(script);
        self.configure(fake.port, "none", extra);
        let out = self.run(&["sync"]);
        (out, fake.finish())
    }

    /// Run `mailbag` with this profile, killing it if it outlives [`RUN_DEADLINE`].
    fn run(&self, args: &[&str]) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mailbag"))
            .args(args)
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env("XDG_DATA_HOME", self.dir.path().join("data"))
            .env_remove("MAILBAG_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run mailbag");
        let drain = |pipe: Option<Box<dyn Read + Send>>| {
            thread::spawn(move || {
                let mut bytes = Vec::new();
                if let Some(mut pipe) = pipe {
                    let _ = pipe.read_to_end(&mut bytes);
                }
                bytes
            })
        };
        let stdout = drain(
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let stderr = drain(
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let deadline = Instant::now() + RUN_DEADLINE;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for mailbag") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("mailbag {args:?} did not finish within {RUN_DEADLINE:?}");
            }
            thread::sleep(Duration::from_millis(20));
        };
        Output {
            status,
            stdout: stdout.join().expect("stdout"),
            stderr: stderr.join().expect("stderr"),
        }
    }

    fn mbox(&self) -> PathBuf {
        self.dir.path().join("data/mailbag/mail/pop.mbox")
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every message in the mbox as `(Message-ID, bytes)`, in file order; empty if there is none.
fn mbox_messages(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    if !path.exists() {
        return out;
    }
    mailbag::store::mbox::scan(path, |m| {
        out.push((message_id(&m.raw), m.raw));
        Ok(())
    })
    .expect("scan mbox");
    out
}

/// Assert that the mbox holds exactly `expected`, each once and byte for byte.
fn assert_mbox_holds(path: &Path, expected: &[Msg]) {
    let found = mbox_messages(path);
    for m in expected {
        let id = message_id(&m.raw);
        let copies: Vec<&Vec<u8>> = found
            .iter()
            .filter(|(i, _)| *i == id)
            .map(|(_, b)| b)
            .collect();
        assert_eq!(
            copies.len(),
            1,
            "{id} is in the mbox {} times",
            copies.len()
        );
        assert!(
            copies.first().is_some_and(|b| **b == m.raw),
            "{id} differs from what the server sent"
        );
    }
    assert_eq!(
        found.len(),
        expected.len(),
        "the mbox holds other messages too: {:?}",
        found.iter().map(|(i, _)| i).collect::<Vec<_>>()
    );
}

/// A failed run: exit status 1 (not a panic's 101), a one-line error, no raw control bytes.
fn assert_failed_cleanly(out: &Output) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "exit status; stderr: {err}");
    assert!(!err.contains("panicked"), "mailbag panicked: {err}");
    assert!(
        !out.stderr.iter().any(|&b| b < 0x20 && b != b'\n'),
        "stderr has raw control characters: {:?}",
        err
    );
    let errors: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("mailbag: ") && !l.starts_with("mailbag: warning: "))
        .collect();
    assert_eq!(errors.len(), 1, "one error line expected: {err}");
    errors.first().map(|l| l.to_string()).unwrap_or_default()
}

/// The fake saw no trouble of its own.
fn assert_fake_ok(log: &Log) {
    assert!(log.problems.is_empty(), "fake server: {:?}", log.problems);
}

// ---------------------------------------------------------------------------------------------
// 1. [IN-USE] at login
// ---------------------------------------------------------------------------------------------

const IN_USE: &[u8] = b"-ERR [IN-USE] mailbox locked by another session\r\n";

#[test]
fn in_use_at_pass_is_a_clear_error_and_touches_nothing() {
    let p = Profile::new();
    let script = Script::new(messages(3)).reply("PASS", Reply::Raw(IN_USE.to_vec()));
    let (out, log) = p.sync_plain(script, "leave_on_server = false");
    let err = assert_failed_cleanly(&out);
    assert!(err.contains("in use by another POP3 session"), "{err}");
    assert!(!err.contains(PASSWORD), "the password leaked: {err}");
    assert!(log.sent("PASS"));
    assert!(!log.sent("RETR") && !log.sent("DELE"), "{:?}", log.commands);
    assert!(mbox_messages(&p.mbox()).is_empty());
}

#[test]
fn in_use_at_auth_plain_is_a_clear_error_and_touches_nothing() {
    let p = Profile::new();
    let script = Script::new(messages(3))
        .capa(&["TOP", "UIDL", "USER", "SASL PLAIN", "PIPELINING"])
        .reply("AUTH", Reply::Raw(IN_USE.to_vec()));
    let (out, log) = p.sync_plain(script, "leave_on_server = false");
    let err = assert_failed_cleanly(&out);
    assert!(err.contains("in use by another POP3 session"), "{err}");
    assert!(log.sent("AUTH"), "{:?}", log.commands);
    assert!(!log.sent("PASS"), "{:?}", log.commands);
    assert!(!log.sent("RETR") && !log.sent("DELE"), "{:?}", log.commands);
    assert!(mbox_messages(&p.mbox()).is_empty());
}

// ---------------------------------------------------------------------------------------------
// 2. The connection drops in the middle of a RETR
// ---------------------------------------------------------------------------------------------

#[test]
fn a_drop_mid_retr_deletes_nothing_and_the_next_sync_gets_each_message_once() {
    // With PIPELINING, RETR 4 and 5 are still outstanding at the drop; without it, none is.
    for capa in [
        &["TOP", "UIDL", "USER", "PIPELINING"][..],
        &["TOP", "UIDL", "USER"][..],
    ] {
        let p = Profile::new();
        let all = messages(5);
        let third = all.get(2).expect("message 3");
        let wire = stuffed(&third.raw);
        let mut half = format!("+OK {} octets\r\n", third.raw.len()).into_bytes();
        half.extend_from_slice(wire.get(..wire.len() / 2).unwrap_or_default());
        let script = Script {
            // NOTE: with PIPELINING, answer only once every RETR is in: closing while the
            // client is still writing makes the kernel reset the connection, and the client
            // then (rightly, but less precisely) reports a failed write instead.
            wait_for_retrs: capa.contains(&"PIPELINING").then_some(5),
            ..Script::new(all.clone())
                .capa(capa)
                .reply("RETR 3", Reply::RawThenClose(half))
        };
        let (out, log) = p.sync_plain(script, "leave_on_server = false");
        let err = assert_failed_cleanly(&out);
        assert!(
            err.contains("127.0.0.1 closed the connection in the middle of a reply"),
            "{capa:?}: {err}"
        );
        assert!(log.sent("RETR 3"), "{:?}", log.commands);
        assert!(
            !log.sent("DELE"),
            "DELE after a failed download: {:?}",
            log.commands
        );

        // A well-behaved server with the same messages (same UIDLs).
        let (out, log) = p.sync_plain(
            Script::new(all.clone()).capa(capa),
            "leave_on_server = false",
        );
        assert!(out.status.success(), "{capa:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("pop: 5 new"), "{}", stderr(&out));
        assert_fake_ok(&log);
        assert_eq!(log.dele, vec![1, 2, 3, 4, 5]);
        assert!(log.quit);
        // Each message once and byte-identical: the uncommitted tail of the first run is gone.
        assert_mbox_holds(&p.mbox(), &all);
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Malformed replies
// ---------------------------------------------------------------------------------------------

#[test]
fn a_garbage_status_line_is_a_protocol_error() {
    for (what, script) in [
        (
            "greeting",
            Script {
                greeting: b"+WHAT\x1b]0;pwned\x07\r\n".to_vec(),
                ..Script::new(messages(2))
            },
        ),
        (
            "CAPA",
            Script::new(messages(2)).reply("CAPA", Reply::Raw(b"+WHAT\x1b[2J\r\n".to_vec())),
        ),
        (
            "RETR",
            Script::new(messages(2)).reply("RETR 2", Reply::Raw(b"+WHAT\x1b[2J\r\n".to_vec())),
        ),
    ] {
        let p = Profile::new();
        let (out, log) = p.sync_plain(script, "leave_on_server = false");
        let err = assert_failed_cleanly(&out);
        assert!(
            err.contains("protocol error from 127.0.0.1") && err.contains("+WHAT"),
            "{what}: {err}"
        );
        assert!(
            err.contains("malformed status line"),
            "{what}: the reason is named: {err}"
        );
        assert!(!log.sent("DELE"), "{what}: {:?}", log.commands);
        // NOTE: a batch is only committed once it is whole; nothing of a failed pass counts.
        assert!(
            mbox_messages(&p.mbox()).is_empty() || what == "RETR",
            "{what}"
        );
    }
}

#[test]
fn a_bad_uidl_line_is_a_protocol_error_and_nothing_is_fetched() {
    let p = Profile::new();
    let script = Script::new(messages(3)).reply(
        "UIDL",
        Reply::Raw(b"+OK\r\n1 uid-1\r\n2 \x1b[2J\r\n3 uid-3\r\n.\r\n".to_vec()),
    );
    let (out, log) = p.sync_plain(script, "leave_on_server = false");
    let err = assert_failed_cleanly(&out);
    assert!(err.contains("protocol error from 127.0.0.1"), "{err}");
    assert!(err.contains("unique-id listing"), "{err}");
    assert!(!log.sent("RETR") && !log.sent("DELE"), "{:?}", log.commands);
    assert!(mbox_messages(&p.mbox()).is_empty());
}

#[test]
fn an_unterminated_listing_then_close_is_a_clear_error() {
    let p = Profile::new();
    let script = Script::new(messages(3)).reply(
        "UIDL",
        Reply::RawThenClose(b"+OK\r\n1 uid-1\r\n2 ui".to_vec()),
    );
    let (out, log) = p.sync_plain(script, "leave_on_server = false");
    let err = assert_failed_cleanly(&out);
    assert!(
        err.contains("127.0.0.1 closed the connection in the middle of a reply"),
        "{err}"
    );
    assert!(!log.sent("RETR") && !log.sent("DELE"), "{:?}", log.commands);
    assert!(mbox_messages(&p.mbox()).is_empty());
}

#[test]
fn an_unterminated_uidl_listing_then_close_is_a_dropped_connection() {
    let p = Profile::new();
    let script = Script::new(messages(3)).reply(
        "UIDL",
        Reply::RawThenClose(b"+OK\r\n1 uid-1\r\n2 uid-2\r\n".to_vec()),
    );
    let (out, log) = p.sync_plain(script, "leave_on_server = false");
    let err = assert_failed_cleanly(&out);
    assert!(
        err.contains("127.0.0.1 closed the connection in the middle of a reply"),
        "{err}"
    );
    assert!(!log.sent("RETR") && !log.sent("DELE"), "{:?}", log.commands);
    assert!(mbox_messages(&p.mbox()).is_empty());
}

// ---------------------------------------------------------------------------------------------
// 4. security = "starttls" without STLS
// ---------------------------------------------------------------------------------------------

#[test]
fn starttls_without_stls_stops_before_the_password_is_sent() {
    let p = Profile::new();
    let fake = Fake::start(Script::new(messages(2)));
    p.configure(fake.port, "starttls", "");
    let out = p.run(&["sync"]);
    let log = fake.finish();
    let err = assert_failed_cleanly(&out);
    assert!(err.contains("does not offer STLS"), "{err}");
    assert_eq!(log.commands, vec!["CAPA".to_string()]);
    assert!(
        !log.commands.iter().any(|c| c.contains(PASSWORD)),
        "the password went out in clear text: {:?}",
        log.commands
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Bytes injected between STLS's +OK and the TLS handshake
// ---------------------------------------------------------------------------------------------

/// A self-signed certificate for localhost / 127.0.0.1 (made with the `openssl` CLI) as the
/// PEM file the client trusts and a PKCS#12 identity for the fake.
fn certificate(dir: &Path) -> (PathBuf, Vec<u8>) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let p12 = dir.join("identity.p12");
    let run = |cmd: &mut Command| {
        let out = cmd.output().expect("run openssl (is it installed?)");
        assert!(
            out.status.success(),
            "openssl failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec"])
        .args(["-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
        .args(["-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    run(Command::new("openssl")
        .args(["pkcs12", "-export", "-passout"])
        .arg(format!("pass:{P12_PASSWORD}"))
        .arg("-in")
        .arg(&cert)
        .arg("-inkey")
        .arg(&key)
        .arg("-out")
        .arg(&p12));
    (cert, std::fs::read(&p12).expect("read identity.p12"))
}

#[test]
fn bytes_injected_before_the_tls_handshake_are_discarded() {
    // NOTE: a lone `+OK injected` taken as the reply to the post-TLS CAPA would be absorbed
    // (the real reply's lines would just read as odd capabilities), so the second injection is
    // a whole forged CAPA reply without SASL PLAIN: a client that kept it logs in with
    // USER/PASS and then reads every later reply one step off.
    for inject in [
        &b"+OK injected\r\n"[..],
        &b"+OK injected\r\nUSER\r\n.\r\n"[..],
    ] {
        let shown = String::from_utf8_lossy(inject).into_owned();
        let p = Profile::new();
        let (ca, p12) = certificate(p.dir.path());
        let all = messages(3);
        let script = Script {
            tls: Some(TlsSetup {
                p12,
                inject: inject.to_vec(),
                // NOTE: SASL PLAIN only after TLS: if the client logs in with AUTH, it read
                // the real post-TLS CAPA, not injected bytes.
                capa_after: ["TOP", "UIDL", "USER", "SASL PLAIN", "PIPELINING"]
                    .map(String::from)
                    .to_vec(),
            }),
            ..Script::new(all.clone()).capa(&["TOP", "UIDL", "USER", "STLS", "PIPELINING"])
        };
        let fake = Fake::start(script);
        p.configure(
            fake.port,
            "starttls",
            &format!("tls_ca_file = \"{}\"", ca.display()),
        );
        let out = p.run(&["sync"]);
        let log = fake.finish();
        assert!(out.status.success(), "{shown:?}: {}", stderr(&out));
        assert_fake_ok(&log);
        assert!(log.tls_established);
        assert_eq!(
            log.commands.get(..3),
            Some(&["CAPA".to_string(), "STLS".into(), "CAPA".into()][..]),
            "{shown:?}: {:?}",
            log.commands
        );
        assert!(
            log.commands
                .get(3)
                .is_some_and(|c| c.starts_with("AUTH PLAIN")),
            "{shown:?}: the login did not follow the post-TLS CAPA: {:?}",
            log.commands
        );
        assert!(!log.sent("USER") && !log.sent("PASS"), "{:?}", log.commands);
        assert_eq!(log.count("RETR"), 3);
        assert!(log.quit);
        assert!(stderr(&out).contains("pop: 3 new"), "{}", stderr(&out));
        assert_mbox_holds(&p.mbox(), &all);
    }
}

// ---------------------------------------------------------------------------------------------
// 6. No UIDL
// ---------------------------------------------------------------------------------------------

#[test]
fn without_uidl_a_stable_stand_in_downloads_each_message_once() {
    let p = Profile::new();
    let all = messages(4);
    let script = || Script {
        uidl: false,
        ..Script::new(all.clone()).capa(&["TOP", "USER", "PIPELINING"])
    };
    let (out, log) = p.sync_plain(script(), "");
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("mailbag: warning: pop: the server does not support UIDL"),
        "{err}"
    );
    assert!(err.contains("pop: 4 new"), "{err}");
    assert_fake_ok(&log);
    assert!(
        log.sent("LIST"),
        "the sizes come from LIST: {:?}",
        log.commands
    );
    assert_eq!(log.count("RETR"), 4);
    assert_mbox_holds(&p.mbox(), &all);

    let (out, log) = p.sync_plain(script(), "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("pop: 0 new"), "{}", stderr(&out));
    assert_fake_ok(&log);
    assert_eq!(log.count("TOP"), 4, "{:?}", log.commands);
    assert!(!log.sent("RETR"), "{:?}", log.commands);
    assert!(log.quit);
    assert_mbox_holds(&p.mbox(), &all);
}

// ---------------------------------------------------------------------------------------------
// 7. With and without PIPELINING
// ---------------------------------------------------------------------------------------------

#[test]
fn without_pipelining_commands_go_one_at_a_time() {
    let p = Profile::new();
    let all = messages(5);
    let script = Script {
        check_lockstep: true,
        ..Script::new(all.clone()).capa(&["TOP", "UIDL", "USER"])
    };
    let (out, log) = p.sync_plain(script, "leave_on_server = false");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_fake_ok(&log);
    assert!(
        log.lockstep_violations.is_empty(),
        "pipelined without PIPELINING: {:?}",
        log.lockstep_violations
    );
    assert_eq!(log.count("RETR"), 5);
    assert_eq!(log.dele, vec![1, 2, 3, 4, 5]);
    assert!(log.quit);
    assert_mbox_holds(&p.mbox(), &all);
}

#[test]
fn with_pipelining_the_retrs_arrive_before_the_first_reply() {
    let p = Profile::new();
    let all = messages(5);
    let script = Script {
        wait_for_retrs: Some(5),
        ..Script::new(all.clone())
    };
    let (out, log) = p.sync_plain(script, "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_fake_ok(&log);
    assert_eq!(
        log.retrs_before_first_reply,
        Some(5),
        "RETRs were not pipelined"
    );
    assert!(
        !log.sent("LIST"),
        "LIST was asked for although UIDL answered: {:?}",
        log.commands
    );
    assert_eq!(log.count("RETR"), 5);
    assert_mbox_holds(&p.mbox(), &all);
}

// ---------------------------------------------------------------------------------------------
// 8. -ERR to one RETR
// ---------------------------------------------------------------------------------------------

#[test]
fn a_vanished_message_is_skipped_with_a_warning() {
    let p = Profile::new();
    let all = messages(5);
    let script = Script::new(all.clone()).reply(
        "RETR 3",
        Reply::Raw(b"-ERR message 3 was deleted by another session\r\n".to_vec()),
    );
    let (out, log) = p.sync_plain(script, "leave_on_server = false");
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("mailbag: warning: message 3 (uid-3) could not be downloaded"),
        "{err}"
    );
    assert!(err.contains("pop: 4 new"), "{err}");
    assert_fake_ok(&log);
    // Only what was downloaded is deleted on the server.
    assert_eq!(log.dele, vec![1, 2, 4, 5]);
    assert!(log.quit);
    let kept: Vec<Msg> = all.iter().filter(|m| m.uidl != "uid-3").cloned().collect();
    assert_mbox_holds(&p.mbox(), &kept);
}

#[test]
fn a_uidl_listed_twice_deletes_neither_message() {
    let p = Profile::new();
    let mut all = messages(3);
    all[2].uidl = all[1].uidl.clone();
    let (out, log) = p.sync_plain(Script::new(all.clone()), "leave_on_server = false");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_fake_ok(&log);
    // Only one of the two was downloaded: deleting both would lose the other.
    assert_eq!(log.dele, vec![1]);
    assert!(log.quit);
    assert_mbox_holds(&p.mbox(), &all[..2]);
}

// ---------------------------------------------------------------------------------------------
// 9. -ERR greeting
// ---------------------------------------------------------------------------------------------

#[test]
fn an_err_greeting_is_a_clear_error() {
    let p = Profile::new();
    let script = Script {
        greeting: b"-ERR too many connections from your address\r\n".to_vec(),
        ..Script::new(messages(2))
    };
    let (out, log) = p.sync_plain(script, "");
    let err = assert_failed_cleanly(&out);
    assert!(err.contains("127.0.0.1"), "{err}");
    assert!(err.contains("refused the session"), "{err}");
    assert!(
        err.contains("too many connections from your address"),
        "{err}"
    );
    assert!(
        !err.contains("user name or password"),
        "a rejected greeting is not a wrong password: {err}"
    );
    assert!(log.commands.is_empty(), "{:?}", log.commands);
}

#[test]
fn a_sys_temp_greeting_is_a_temporary_error() {
    let p = Profile::new();
    let script = Script {
        greeting: b"-ERR [SYS/TEMP] overloaded, try again later\r\n".to_vec(),
        ..Script::new(messages(2))
    };
    let (out, _) = p.sync_plain(script, "");
    let err = assert_failed_cleanly(&out);
    assert!(err.contains("a temporary problem on the server"), "{err}");
    assert!(!err.contains("user name or password"), "{err}");
}
