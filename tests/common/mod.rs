//! A private, throw-away Dovecot for integration tests.
//!
//! Why: mailbag's IMAP (RFC 9051 / RFC 3501) and POP3 (RFC 1939, STLS from
//! RFC 2595 §4) code is tested against a real server, not a mock. Each
//! [`Dovecot`] gets its own temp dir with a generated config, a self-signed
//! certificate for `localhost` / `127.0.0.1`, a passwd-file with two users
//! ([`ALICE`], [`BOB`]) and maildir homes. It listens on four free loopback
//! ports: IMAP plain (STARTTLS, RFC 3501 §6.2.1), IMAP implicit TLS
//! (RFC 8314 §3.3), POP3 plain (STLS) and POP3 implicit TLS.
//!
//! The server runs as a foreground child in its own process group and is
//! stopped (SIGTERM, then SIGKILL) when the handle drops, also while a test
//! panics. If Dovecot is not installed, [`Dovecot::start`] prints a loud
//! `SKIPPED` line and returns `None`, unless `MAILBAG_REQUIRE_DOVECOT=1`, in
//! which case it panics.
//!
//! Only `std::process`, `std::net` and `tempfile` are used, so sync `#[test]`
//! functions can use it; async tests build their own tokio runtime.

#![allow(dead_code)]

pub mod oauth_server;
pub mod pty;

use std::fmt::Write as _;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Result type of the harness; errors carry a one-line description.
pub type Result<T> = std::result::Result<T, io::Error>;

/// The environment variable that turns a missing Dovecot into a failure.
pub const REQUIRE_ENV: &str = "MAILBAG_REQUIRE_DOVECOT";

/// One mail user known to the harness Dovecot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestUser {
    /// Login name (also the local part of the address `<name>@mailbag.test`).
    pub name: &'static str,
    /// Cleartext password accepted by the passdb.
    pub password: &'static str,
}

/// The first test user.
pub const ALICE: TestUser = TestUser {
    name: "alice",
    password: "alice-Secret-1",
};

/// The second test user.
pub const BOB: TestUser = TestUser {
    name: "bob",
    password: "bob-Secret-2",
};

/// Every user in the passwd-file.
pub const USERS: [TestUser; 2] = [ALICE, BOB];

/// Loopback address every listener binds to.
pub const HOST: &str = "127.0.0.1";

/// The name in the certificate (also valid: `127.0.0.1`).
pub const TLS_NAME: &str = "localhost";

/// How long to wait for the listeners to come up.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long to wait for a clean shutdown before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// How many times to retry when another process grabbed one of our ports.
const START_ATTEMPTS: usize = 5;

/// Handle to a running private Dovecot; stops it on drop.
#[derive(Debug)]
pub struct Dovecot {
    dir: tempfile::TempDir,
    child: Child,
    dovecot_bin: PathBuf,
    doveadm_bin: PathBuf,
    version: String,
    imap_plain_port: u16,
    imap_tls_port: u16,
    pop3_plain_port: u16,
    pop3_tls_port: u16,
    /// uid/gid to chown seeded files to (only when running as root).
    mail_owner: Option<(u32, u32)>,
    next_seed_id: AtomicU64,
}

/// Ports of one start attempt.
#[derive(Clone, Copy, Debug)]
struct Ports {
    imap: u16,
    imaps: u16,
    pop3: u16,
    pop3s: u16,
}

/// Why a start attempt failed.
enum StartError {
    /// Another process took a port between probing and binding; retry.
    PortClash(String),
    /// Anything else; give up.
    Fatal(io::Error),
}

impl From<io::Error> for StartError {
    fn from(e: io::Error) -> Self {
        StartError::Fatal(e)
    }
}

/// Who the server, its login processes and its mail users run as.
#[derive(Debug)]
struct Identity {
    /// uid of this process (and of the Dovecot master).
    uid: u32,
    /// Name of this process's user, for `default_internal_user`.
    user: String,
    /// Name of this process's group, for `default_internal_group`.
    group: String,
    /// Unprivileged user for login processes (they refuse to run as root).
    login_user: String,
    /// uid owning the maildirs.
    mail_uid: u32,
    /// gid owning the maildirs.
    mail_gid: u32,
}

impl Identity {
    /// True when running as root, so files we write must be chowned.
    fn is_root(&self) -> bool {
        self.uid == 0
    }
}

impl Dovecot {
    /// Starts a private Dovecot, or returns `None` (after a loud `SKIPPED`
    /// line on stderr) when Dovecot is not installed.
    ///
    /// Panics when Dovecot is missing and `MAILBAG_REQUIRE_DOVECOT=1`, or when
    /// Dovecot is installed but cannot be started (that is a real failure).
    /// The test name in the skip line comes from the libtest thread name.
    pub fn start() -> Option<Dovecot> {
        Self::start_with_config("")
    }

    /// Like [`Dovecot::start`], with extra lines appended to the generated config (for example
    /// an `imap_capability` that hides QRESYNC, to test the paths other servers take).
    pub fn start_with_config(extra: &str) -> Option<Dovecot> {
        Self::start_with_files(extra, &[])
    }

    /// Like [`Dovecot::start`], with its `oauth2` passdb (the XOAUTH2 and OAUTHBEARER
    /// mechanisms) checking tokens at `introspection_url` (`introspection_mode = post`),
    /// next to the usual passwd-file.
    pub fn start_oauth2(introspection_url: &str) -> Option<Dovecot> {
        let conf = format!(
            "introspection_mode = post\n\
             introspection_url = {introspection_url}\n\
             force_introspection = yes\n\
             username_attribute = username\n\
             active_attribute = active\n\
             active_value = true\n\
             timeout_msecs = 10000\n"
        );
        let extra = "auth_mechanisms = plain login xoauth2 oauthbearer\n\
                     passdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  \
                     args = {root}/dovecot-oauth2.conf.ext\n}\n";
        Self::start_with_files(extra, &[("dovecot-oauth2.conf.ext", conf)])
    }

    /// Like [`Dovecot::start_with_config`], also writing `files` into the server's directory
    /// first; `{root}` in `extra` is that directory.
    pub fn start_with_files(extra: &str, files: &[(&str, String)]) -> Option<Dovecot> {
        let test = thread::current()
            .name()
            .unwrap_or("<unnamed test>")
            .to_owned();
        let Some(dovecot_bin) = find_binary("dovecot", &["/usr/sbin", "/usr/local/sbin"]) else {
            if std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1") {
                panic!(
                    "dovecot not found: install dovecot-imapd dovecot-pop3d \
                     (apt-get install -y dovecot-imapd dovecot-pop3d) or unset {REQUIRE_ENV}"
                );
            }
            // NOTE: write to the stderr handle, not `eprintln!`, which libtest
            // captures and hides for passing tests.
            let _ = writeln!(io::stderr(), "SKIPPED (dovecot not found): {test}");
            return None;
        };
        match Self::start_with(&dovecot_bin, extra, files) {
            Ok(d) => Some(d),
            Err(e) => panic!("cannot start dovecot for {test}: {e}"),
        }
    }

    /// Starts Dovecot from the given binary; errors carry the log content.
    fn start_with(dovecot_bin: &Path, extra: &str, files: &[(&str, String)]) -> Result<Dovecot> {
        let doveadm_bin = dovecot_bin
            .parent()
            .map(|p| p.join("doveadm"))
            .filter(|p| p.is_file())
            .or_else(|| find_binary("doveadm", &["/usr/bin", "/usr/sbin", "/usr/local/bin"]))
            .ok_or_else(|| io::Error::other("doveadm not found next to dovecot or in PATH"))?;
        let version = run_capture(Command::new(dovecot_bin).arg("--version"))?
            .trim()
            .to_owned();
        let dir = tempfile::Builder::new()
            .prefix("mailbag-dovecot-")
            .tempdir()?;
        let id = current_identity(dir.path())?;
        let root = dir.path();
        for sub in ["run", "state", "home"] {
            fs::create_dir_all(root.join(sub))?;
        }
        make_certificate(root)?;
        write_users(root, &id)?;
        for (name, text) in files {
            fs::write(root.join(name), text)?;
        }
        let extra = extra.replace("{root}", &root.display().to_string());

        let mut last_clash = String::new();
        for _ in 0..START_ATTEMPTS {
            let ports = free_ports()?;
            let mut conf = render_config(&version, root, &id, ports);
            conf.push_str(&extra);
            conf.push('\n');
            fs::write(root.join("dovecot.conf"), conf)?;
            // NOTE: truncate the logs so a retry's failure is not read from
            // an older attempt.
            fs::write(root.join("dovecot.log"), b"")?;
            let stderr = fs::File::create(root.join("dovecot.stderr"))?;
            let mut child = Command::new(dovecot_bin)
                .arg("-F")
                .arg("-c")
                .arg(root.join("dovecot.conf"))
                .stdin(Stdio::null())
                .stdout(stderr.try_clone()?)
                .stderr(stderr)
                .process_group(0)
                .spawn()
                .map_err(|e| {
                    io::Error::other(format!("cannot spawn {}: {e}", dovecot_bin.display()))
                })?;
            match wait_ready(&mut child, root, ports) {
                Ok(()) => {
                    return Ok(Dovecot {
                        dir,
                        child,
                        dovecot_bin: dovecot_bin.to_path_buf(),
                        doveadm_bin,
                        version,
                        imap_plain_port: ports.imap,
                        imap_tls_port: ports.imaps,
                        pop3_plain_port: ports.pop3,
                        pop3_tls_port: ports.pop3s,
                        mail_owner: id.is_root().then_some((id.mail_uid, id.mail_gid)),
                        next_seed_id: AtomicU64::new(1),
                    });
                }
                Err(e) => {
                    stop_child(&mut child);
                    match e {
                        StartError::PortClash(log) => last_clash = log,
                        StartError::Fatal(e) => return Err(e),
                    }
                }
            }
        }
        Err(io::Error::other(format!(
            "dovecot hit a port clash {START_ATTEMPTS} times; last log: {last_clash}"
        )))
    }

    /// Freezes every Dovecot process (SIGSTOP): connections stay open but nothing answers,
    /// like a link that died silently.
    pub fn pause(&self) {
        signal_group(self.child.id(), "STOP");
    }

    /// Lets a paused Dovecot run again (SIGCONT).
    pub fn resume(&self) {
        signal_group(self.child.id(), "CONT");
    }

    /// Stops the server (mail and config stay) until [`Dovecot::restart`].
    pub fn stop(&mut self) {
        stop_child(&mut self.child);
    }

    /// Starts the stopped server again on the same ports with the same mail.
    pub fn restart(&mut self) -> Result<()> {
        let root = self.dir.path();
        let stderr = fs::File::create(root.join("dovecot.stderr"))?;
        self.child = Command::new(&self.dovecot_bin)
            .arg("-F")
            .arg("-c")
            .arg(root.join("dovecot.conf"))
            .stdin(Stdio::null())
            .stdout(stderr.try_clone()?)
            .stderr(stderr)
            .process_group(0)
            .spawn()?;
        let ports = Ports {
            imap: self.imap_plain_port,
            imaps: self.imap_tls_port,
            pop3: self.pop3_plain_port,
            pop3s: self.pop3_tls_port,
        };
        // NOTE: the old listening sockets may linger briefly; retry while the port is busy.
        let mut last = None;
        for _ in 0..20 {
            match wait_ready(&mut self.child, root, ports) {
                Ok(()) => return Ok(()),
                Err(StartError::PortClash(log)) => {
                    last = Some(log);
                    thread::sleep(Duration::from_millis(250));
                    let stderr = fs::File::create(root.join("dovecot.stderr"))?;
                    self.child = Command::new(&self.dovecot_bin)
                        .arg("-F")
                        .arg("-c")
                        .arg(root.join("dovecot.conf"))
                        .stdin(Stdio::null())
                        .stdout(stderr.try_clone()?)
                        .stderr(stderr)
                        .process_group(0)
                        .spawn()?;
                }
                Err(StartError::Fatal(e)) => return Err(e),
            }
        }
        Err(io::Error::other(format!(
            "dovecot did not restart: {}",
            last.unwrap_or_default()
        )))
    }

    /// Loopback address of every listener (`127.0.0.1`).
    pub fn host(&self) -> &'static str {
        HOST
    }

    /// IMAP port without TLS; offers STARTTLS and allows plaintext LOGIN.
    pub fn imap_plain_port(&self) -> u16 {
        self.imap_plain_port
    }

    /// IMAP port with implicit TLS (993-style).
    pub fn imap_tls_port(&self) -> u16 {
        self.imap_tls_port
    }

    /// POP3 port without TLS; offers STLS and allows USER/PASS.
    pub fn pop3_plain_port(&self) -> u16 {
        self.pop3_plain_port
    }

    /// POP3 port with implicit TLS (995-style).
    pub fn pop3_tls_port(&self) -> u16 {
        self.pop3_tls_port
    }

    /// Path of the PEM certificate to trust (the server's self-signed cert).
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The PEM bytes of [`Dovecot::ca_path`].
    pub fn ca_pem(&self) -> Result<Vec<u8>> {
        fs::read(self.ca_path())
    }

    /// The users in the passwd-file.
    pub fn users(&self) -> [TestUser; 2] {
        USERS
    }

    /// The temp dir holding config, certificate, logs and mail homes.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The generated `dovecot.conf`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("dovecot.conf")
    }

    /// The Dovecot log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("dovecot.log")
    }

    /// `dovecot --version` output, e.g. `2.3.19.1 (9b53102964)`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Home directory of a user.
    pub fn home(&self, user: &str) -> PathBuf {
        self.dir.path().join("home").join(user)
    }

    /// Maildir directory of a mailbox (Maildir++ layout, `/` separator).
    pub fn maildir(&self, user: &str, mailbox: &str) -> PathBuf {
        let root = self.home(user).join("Maildir");
        if mailbox.eq_ignore_ascii_case("INBOX") {
            root
        } else {
            root.join(format!(".{}", mailbox.replace('/', ".")))
        }
    }

    /// Log plus early stderr, for failure messages.
    pub fn logs(&self) -> String {
        read_logs(self.dir.path())
    }

    /// Runs `doveadm -c <conf> <args>` against this instance and returns stdout.
    ///
    /// Fails with stderr when doveadm exits non-zero.
    pub fn doveadm(&self, args: &[&str]) -> Result<String> {
        run_capture(
            Command::new(&self.doveadm_bin)
                .arg("-c")
                .arg(self.config_path())
                .args(args),
        )
    }

    /// Number of messages in a mailbox according to Dovecot.
    pub fn message_count(&self, user: &str, mailbox: &str) -> Result<u64> {
        let out = self.doveadm(&["mailbox", "status", "-u", user, "messages", mailbox])?;
        // NOTE: the flow formatter prints `<mailbox> messages=N`.
        out.split_whitespace()
            .find_map(|t| t.strip_prefix("messages="))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| io::Error::other(format!("unexpected doveadm output: {out:?}")))
    }

    /// Creates a mailbox (no error if it already exists).
    pub fn create_mailbox(&self, user: &str, mailbox: &str) -> Result<()> {
        match self.doveadm(&["mailbox", "create", "-u", user, mailbox]) {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().contains("already exists") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Delivers one raw RFC 5322 message via `doveadm save`.
    pub fn deliver(&self, user: &str, mailbox: &str, raw: &[u8]) -> Result<()> {
        let mut child = Command::new(&self.doveadm_bin)
            .arg("-c")
            .arg(self.config_path())
            .args(["save", "-u", user, "-m", mailbox])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(raw)?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "doveadm save failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }

    /// Creates a directory (and missing parents) owned by the mail user.
    fn create_owned_dir(&self, dir: &Path) -> Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        if let Some(parent) = dir.parent() {
            self.create_owned_dir(parent)?;
        }
        fs::create_dir(dir)?;
        self.chown_to_mail_user(dir)
    }

    /// When running as root, hands a file we wrote to the mail user.
    fn chown_to_mail_user(&self, path: &Path) -> Result<()> {
        match self.mail_owner {
            Some((uid, gid)) => std::os::unix::fs::chown(path, Some(uid), Some(gid)),
            None => Ok(()),
        }
    }

    /// Writes `n` realistic messages straight into the mailbox's maildir and
    /// lets Dovecot index them; returns their Message-IDs in UID order.
    ///
    /// Each message comes from [`seed_message`] with an id unique within this
    /// instance. Files are written to `tmp/` and renamed into `cur/` (the
    /// maildir delivery protocol), named so that Dovecot assigns UIDs in
    /// seeding order, with mtime = the message's Date (INTERNALDATE).
    pub fn seed(&self, user: &str, mailbox: &str, n: usize) -> Result<Vec<String>> {
        if !mailbox.eq_ignore_ascii_case("INBOX") {
            self.create_mailbox(user, mailbox)?;
        }
        let before = self.message_count(user, mailbox)?;
        let dir = self.maildir(user, mailbox);
        self.create_owned_dir(&dir)?;
        for sub in ["cur", "new", "tmp"] {
            self.create_owned_dir(&dir.join(sub))?;
        }
        let first = self.next_seed_id.fetch_add(n as u64, Ordering::Relaxed);
        let pid = std::process::id();
        let mut ids = Vec::with_capacity(n);
        for id in first..first + n as u64 {
            let msg = seed_message(id, user);
            let date = seed_date(id);
            // NOTE: Dovecot sorts new maildir files by name before giving out
            // UIDs; a fixed-width time plus a zero-padded counter keeps the
            // order. S= must be the exact file size.
            let base = format!("{date}.M{id:09}P{pid}.mailbag");
            let name = format!("{base},S={len},W={len}:2,", len = msg.bytes.len());
            let tmp = dir.join("tmp").join(&base);
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&msg.bytes)?;
            f.set_modified(UNIX_EPOCH + Duration::from_secs(date))?;
            drop(f);
            self.chown_to_mail_user(&tmp)?;
            fs::rename(&tmp, dir.join("cur").join(name))?;
            ids.push(msg.message_id);
        }
        let after = self.message_count(user, mailbox)?;
        if after != before + n as u64 {
            return Err(io::Error::other(format!(
                "seeded {n} messages into {user}/{mailbox} but dovecot counts {after} (was {before})"
            )));
        }
        Ok(ids)
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // A paused server would ignore SIGTERM until the stop timeout.
        signal_group(self.child.id(), "CONT");
        stop_child(&mut self.child);
        if thread::panicking() {
            let log = self.logs();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- dovecot log (last {} lines) ---", tail.len());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// Waits until all four listeners greet, the process exits, or time runs out.
fn wait_ready(child: &mut Child, root: &Path, ports: Ports) -> std::result::Result<(), StartError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            let log = read_logs(root);
            if log.contains("Address already in use") {
                return Err(StartError::PortClash(log));
            }
            return Err(StartError::Fatal(io::Error::other(format!(
                "dovecot exited during startup ({status}); log:\n{log}"
            ))));
        }
        // NOTE: the plain listeners must greet, which proves a login process
        // serves them; the kernel alone would accept the TCP connection.
        if greets(ports.imap, "* OK")
            && greets(ports.pop3, "+OK")
            && connects(ports.imaps)
            && connects(ports.pop3s)
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(StartError::Fatal(io::Error::other(format!(
                "dovecot did not accept connections within {READY_TIMEOUT:?}; log:\n{}",
                read_logs(root)
            ))));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Log plus early stderr of the instance in `root`.
fn read_logs(root: &Path) -> String {
    let log = fs::read_to_string(root.join("dovecot.log")).unwrap_or_default();
    let err = fs::read_to_string(root.join("dovecot.stderr")).unwrap_or_default();
    format!("{log}{err}")
}

/// Stops a server: SIGTERM to its process group, SIGKILL after a timeout.
fn stop_child(child: &mut Child) {
    let pgid = child.id();
    if matches!(child.try_wait(), Ok(None)) {
        signal_group(pgid, "TERM");
        let deadline = Instant::now() + STOP_TIMEOUT;
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        if matches!(child.try_wait(), Ok(None)) {
            signal_group(pgid, "KILL");
            let _ = child.kill();
        }
    }
    let _ = child.wait();
    // NOTE: worker processes (auth, login, imap) share the group and exit
    // when the master goes; make sure none outlives the test.
    let deadline = Instant::now() + STOP_TIMEOUT;
    while group_alive(pgid) {
        if Instant::now() >= deadline {
            signal_group(pgid, "KILL");
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// One generated message.
#[derive(Clone, Debug)]
pub struct SeedMessage {
    /// The Message-ID including angle brackets.
    pub message_id: String,
    /// The Subject as plain text (before any RFC 2047 encoding).
    pub subject: String,
    /// The whole message with CRLF line endings.
    pub bytes: Vec<u8>,
}

/// Senders used by [`seed_message`], picked by id.
const SENDERS: [(&str, &str); 5] = [
    ("Carol Example", "carol@example.org"),
    ("Dave Sender", "dave@example.net"),
    ("Erin Q. Public", "erin@lists.example.com"),
    ("Frank Müller", "frank@example.de"),
    ("Grace Hopper", "grace@navy.example"),
];

/// First Date used by [`seed_date`]: 2024-01-01T00:00:00Z.
const SEED_EPOCH: u64 = 1_704_067_200;

/// Unix time of seeded message `id` (one hour apart).
pub fn seed_date(id: u64) -> u64 {
    SEED_EPOCH + id * 3600
}

/// Builds the deterministic message number `id` addressed to `user`.
///
/// Every 5th message is multipart/mixed with a base64 attachment, every 7th
/// has an RFC 2047 encoded UTF-8 subject; the rest are plain text.
pub fn seed_message(id: u64, user: &str) -> SeedMessage {
    let (from_name, from_addr) = SENDERS[(id % SENDERS.len() as u64) as usize];
    let message_id = format!("<seed-{id}.{user}@mailbag.test>");
    let date = rfc5322_date(seed_date(id));
    let mut out = String::with_capacity(1024);
    let from = if from_name.is_ascii() {
        format!("\"{from_name}\" <{from_addr}>")
    } else {
        format!("=?UTF-8?B?{}?= <{from_addr}>", base64(from_name.as_bytes()))
    };
    let (subject, subject_header) = if id.is_multiple_of(7) {
        let s = format!("Grüße Nummer {id} — café");
        let h = format!("=?UTF-8?B?{}?=", base64(s.as_bytes()));
        (s, h)
    } else {
        let s = format!("Seed message {id}");
        (s.clone(), s)
    };
    let _ = write!(
        out,
        "Return-Path: <{from_addr}>\r\n\
         Message-ID: {message_id}\r\n\
         Date: {date}\r\n\
         From: {from}\r\n\
         To: {user} <{user}@mailbag.test>\r\n\
         Subject: {subject_header}\r\n\
         MIME-Version: 1.0\r\n"
    );
    let body = format!(
        "Hello {user},\r\n\r\nthis is seeded message {id}.\r\n\
         It has a few lines of text so that previews have something to show.\r\n\
         \r\n-- \r\n{from_name}\r\n"
    );
    if id.is_multiple_of(5) {
        let boundary = format!("=_mailbag_{id:08x}");
        let attachment: Vec<u8> = (0..300u32).map(|i| (i * 7 + id as u32) as u8).collect();
        let _ = write!(
            out,
            "Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n\
             This is a multi-part message in MIME format.\r\n\
             --{boundary}\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: 8bit\r\n\r\n\
             {body}\
             --{boundary}\r\n\
             Content-Type: application/octet-stream; name=\"report-{id}.bin\"\r\n\
             Content-Disposition: attachment; filename=\"report-{id}.bin\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n"
        );
        let encoded = base64(&attachment);
        for chunk in encoded.as_bytes().chunks(76) {
            out.push_str(&String::from_utf8_lossy(chunk));
            out.push_str("\r\n");
        }
        let _ = write!(out, "--{boundary}--\r\n");
    } else {
        let _ = write!(
            out,
            "Content-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: 8bit\r\n\r\n{body}"
        );
    }
    SeedMessage {
        message_id,
        subject,
        bytes: out.into_bytes(),
    }
}

/// Formats a Unix time as an RFC 5322 §3.3 date in UTC.
pub fn rfc5322_date(unix: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // NOTE: civil-from-days (proleptic Gregorian), valid for dates after 1970.
    let z = days as i64 + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} +0000",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Standard base64 with padding (RFC 4648 §4).
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Looks for a binary in PATH, then in the extra directories.
fn find_binary(name: &str, extra: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Runs a command and returns stdout, or an error with its stderr.
fn run_capture(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io::Error::other(format!("cannot run {:?}: {e}", cmd.get_program())))?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{:?} {:?} failed ({}): {}",
            cmd.get_program(),
            cmd.get_args().collect::<Vec<_>>(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Works out the [`Identity`]: uid from a file we created, names from `id`.
fn current_identity(dir: &Path) -> Result<Identity> {
    let meta = fs::metadata(dir)?;
    let id = |args: &[&str]| -> Result<String> {
        Ok(run_capture(Command::new("id").args(args))?
            .trim()
            .to_owned())
    };
    let user = id(&["-un"])?;
    let group = id(&["-gn"])?;
    if meta.uid() != 0 {
        return Ok(Identity {
            uid: meta.uid(),
            login_user: user.clone(),
            user,
            group,
            mail_uid: meta.uid(),
            mail_gid: meta.gid(),
        });
    }
    // NOTE: as root two things differ. imap-login/pop3-login exit with "This
    // process must not be run as root", so they run as Dovecot's login user
    // (`dovenull` in the Debian packages) or `nobody`; the master chroots them
    // into base_dir/login. And Dovecot never accesses mail as uid 0 ("Mail
    // access not allowed for root", even with first_valid_uid = 0), so the
    // mail users get nobody's uid/gid and we chown what we write for them.
    let login_user = ["dovenull", "nobody"]
        .into_iter()
        .find(|u| id(&["-u", u]).is_ok())
        .ok_or_else(|| io::Error::other("running as root but neither dovenull nor nobody exists"))?
        .to_owned();
    let parse = |s: String| {
        s.parse::<u32>()
            .map_err(|_| io::Error::other(format!("unexpected id output {s:?}")))
    };
    Ok(Identity {
        uid: 0,
        user,
        group,
        login_user,
        mail_uid: parse(id(&["-u", "nobody"])?)?,
        mail_gid: parse(id(&["-g", "nobody"])?)?,
    })
}

/// Creates a self-signed EC certificate for localhost / 127.0.0.1.
fn make_certificate(root: &Path) -> Result<()> {
    run_capture(
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec"])
            .args(["-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
            .args(["-days", "7", "-subj", "/CN=localhost"])
            .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
            .arg("-keyout")
            .arg(root.join("key.pem"))
            .arg("-out")
            .arg(root.join("ca.pem")),
    )?;
    Ok(())
}

/// Writes the passwd-file and creates the users' homes.
fn write_users(root: &Path, id: &Identity) -> Result<()> {
    if id.is_root() {
        // NOTE: mail processes run as nobody and must traverse to the homes.
        for dir in [root.to_path_buf(), root.join("home")] {
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o711))?;
        }
    }
    let mut users = String::new();
    for u in USERS {
        let home = root.join("home").join(u.name);
        fs::create_dir_all(&home)?;
        if id.is_root() {
            std::os::unix::fs::chown(&home, Some(id.mail_uid), Some(id.mail_gid))?;
        }
        // NOTE: passwd-file fields: user:password:uid:gid:gecos:home:shell:extra.
        let _ = writeln!(
            users,
            "{}:{{PLAIN}}{}:{}:{}::{}::",
            u.name,
            u.password,
            id.mail_uid,
            id.mail_gid,
            home.display()
        );
    }
    fs::write(root.join("users"), users)
}

/// Reserves four distinct free loopback ports (released before returning).
fn free_ports() -> Result<Ports> {
    let listeners = (0..4)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<io::Result<Vec<_>>>()?;
    let ports = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<io::Result<Vec<_>>>()?;
    match ports.as_slice() {
        &[imap, imaps, pop3, pop3s] => Ok(Ports {
            imap,
            imaps,
            pop3,
            pop3s,
        }),
        _ => Err(io::Error::other("could not reserve four ports")),
    }
}

/// True when a TCP connection to the port succeeds.
fn connects(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// True when the port sends a first line starting with `prefix`.
fn greets(port: u16, prefix: &str) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    if stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .is_err()
    {
        return false;
    }
    let mut line = String::new();
    let mut reader = BufReader::new(stream.take(4096));
    reader.read_line(&mut line).is_ok() && line.starts_with(prefix)
}

/// Sends a signal to a whole process group via `kill(1)`.
fn signal_group(pgid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args(["-s", signal, "--", &format!("-{pgid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// True while any process is left in the group.
fn group_alive(pgid: u32) -> bool {
    Command::new("kill")
        .args(["-s", "0", "--", &format!("-{pgid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Major and minor version from `dovecot --version` output.
fn parse_version(version: &str) -> (u32, u32) {
    let mut parts = version
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    (parts.next().unwrap_or(2), parts.next().unwrap_or(3))
}

/// Renders `dovecot.conf` for 2.3 or 2.4 syntax.
fn render_config(version: &str, root: &Path, id: &Identity, ports: Ports) -> String {
    let r = root.display();
    let (major, minor) = parse_version(version);
    let v24 = (major, minor) >= (2, 4);
    let mut c = String::new();
    if v24 {
        c.push_str("dovecot_config_version = 2.4.0\ndovecot_storage_version = 2.4.0\n");
    }
    let _ = write!(
        c,
        "# Generated by mailbag tests/common for Dovecot {version}\n\
         protocols = imap pop3\n\
         listen = {HOST}\n\
         base_dir = {r}/run\n\
         state_dir = {r}/state\n\
         log_path = {r}/dovecot.log\n\
         info_log_path = {r}/dovecot.log\n\
         auth_verbose = yes\n\
         auth_mechanisms = plain login\n\
         ssl = yes\n\
         default_internal_user = {user}\n\
         default_internal_group = {group}\n\
         default_login_user = {login_user}\n\
         first_valid_uid = {uid}\n\
         first_valid_gid = {gid}\n",
        user = id.user,
        group = id.group,
        login_user = id.login_user,
        uid = id.mail_uid.min(500),
        gid = id.mail_gid.min(1),
    );
    if v24 {
        let _ = write!(
            c,
            "ssl_server_cert_file = {r}/ca.pem\n\
             ssl_server_key_file = {r}/key.pem\n\
             auth_allow_cleartext = yes\n\
             mail_driver = maildir\n\
             mail_path = ~/Maildir\n\
             mailbox_list_layout = maildir++\n\
             pop3_uidl_format = %{{uid | hex(8)}}%{{uidvalidity | hex(8)}}\n\
             passdb passwd-file {{\n  passwd_file_path = {r}/users\n}}\n\
             userdb passwd-file {{\n  passwd_file_path = {r}/users\n}}\n"
        );
    } else {
        let _ = write!(
            c,
            "ssl_cert = <{r}/ca.pem\n\
             ssl_key = <{r}/key.pem\n\
             disable_plaintext_auth = no\n\
             mail_location = maildir:~/Maildir\n\
             pop3_uidl_format = %08Xu%08Xv\n\
             passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {r}/users\n}}\n\
             userdb {{\n  driver = passwd-file\n  args = username_format=%u {r}/users\n}}\n"
        );
    }
    let address = if v24 { "listen" } else { "address" };
    // NOTE: as root keep Dovecot's default `chroot = login` for the login
    // services; an ordinary user cannot chroot, so switch it off.
    let chroot = if id.uid == 0 { "" } else { "  chroot =\n" };
    let _ = write!(
        c,
        "namespace inbox {{\n  inbox = yes\n  separator = /\n  prefix =\n\
         \x20 mailbox Drafts {{\n    special_use = \\Drafts\n    auto = subscribe\n  }}\n\
         \x20 mailbox Sent {{\n    special_use = \\Sent\n    auto = subscribe\n  }}\n\
         \x20 mailbox Trash {{\n    special_use = \\Trash\n    auto = subscribe\n  }}\n\
         \x20 mailbox Junk {{\n    special_use = \\Junk\n    auto = subscribe\n  }}\n\
         \x20 mailbox Archive {{\n    special_use = \\Archive\n    auto = subscribe\n  }}\n\
         }}\n\
         protocol imap {{\n  mail_max_userip_connections = 100\n}}\n\
         service imap-login {{\n{chroot}\
         \x20 inet_listener imap {{\n    {address} = {HOST}\n    port = {imap}\n  }}\n\
         \x20 inet_listener imaps {{\n    {address} = {HOST}\n    port = {imaps}\n    ssl = yes\n  }}\n}}\n\
         service pop3-login {{\n{chroot}\
         \x20 inet_listener pop3 {{\n    {address} = {HOST}\n    port = {pop3}\n  }}\n\
         \x20 inet_listener pop3s {{\n    {address} = {HOST}\n    port = {pop3s}\n    ssl = yes\n  }}\n}}\n",
        imap = ports.imap,
        imaps = ports.imaps,
        pop3 = ports.pop3,
        pop3s = ports.pop3s,
    );
    c
}

/// Whether Dovecot is installed: `false` after a loud `SKIPPED` line for `test`, a panic when
/// `MAILBAG_REQUIRE_DOVECOT=1`. For tests that start Dovecot in a child process.
pub fn dovecot_installed(test: &str) -> bool {
    if find_binary("dovecot", &["/usr/sbin", "/usr/local/sbin"]).is_some() {
        return true;
    }
    if std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1") {
        panic!("dovecot not found (needed for {test}) and {REQUIRE_ENV}=1");
    }
    let _ = writeln!(io::stderr(), "SKIPPED (dovecot not found): {test}");
    false
}

/// [`in_private_secret_service`] under the name some tests use.
pub fn in_keyring_session(child: &str, child_env: &str) -> Option<std::process::Output> {
    in_private_secret_service(child, child_env)
}

/// Current wall-clock Unix time (for callers building their own messages).
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A UDP DNS server on a thread, answering from `records` ((name, type, rdata); names match
/// without regard to case); NXDOMAIN otherwise.
pub fn dns_server(records: Vec<(String, u16, Vec<u8>)>) -> std::net::SocketAddr {
    use mailbag::wizard::dns;
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = socket.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        // NOTE: ends with the test process; it only ever answers loopback queries.
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let query = &buf[..n];
            let Some((name, qtype)) = dns::question(query) else {
                continue;
            };
            let answers: Vec<_> = records
                .iter()
                .filter(|(n, t, _)| n.eq_ignore_ascii_case(&name) && *t == qtype)
                .cloned()
                .collect();
            let rcode = if answers.is_empty() { 3 } else { 0 };
            let _ = socket.send_to(&dns::build_reply(query, rcode, false, &answers), from);
        }
    });
    addr
}

/// `name` on `PATH` (or in /usr/bin, /usr/sbin).
pub fn program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn keyring_required() -> bool {
    ["MAILBAG_REQUIRE_KEYRING", REQUIRE_ENV]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|v| v == "1"))
}

/// Runs the ignored test `child` of this test binary inside a private D-Bus session with an
/// unlocked gnome-keyring-daemon (a real Secret Service) and its own home, so the user's
/// keyrings are never touched; `child_env` is set to 1 for the child. Returns its output, or
/// `None` after a loud `SKIPPED` when the programs are missing (a panic when
/// `MAILBAG_REQUIRE_KEYRING=1` or `MAILBAG_REQUIRE_DOVECOT=1`).
pub fn in_private_secret_service(child: &str, child_env: &str) -> Option<std::process::Output> {
    let (Some(dbus), Some(keyring)) =
        (program("dbus-run-session"), program("gnome-keyring-daemon"))
    else {
        if keyring_required() {
            panic!(
                "dbus-run-session or gnome-keyring-daemon not found: install dbus-daemon and \
                 gnome-keyring (tests/run.sh does), or unset MAILBAG_REQUIRE_KEYRING / {REQUIRE_ENV}"
            );
        }
        let _ = writeln!(
            io::stderr(),
            "SKIPPED (dbus-run-session / gnome-keyring-daemon not found): {child}"
        );
        return None;
    };
    let home = tempfile::tempdir().expect("home");
    let exe = std::env::current_exe().expect("test binary");
    let script = format!(
        "printf '\\n' | {} --unlock --components=secrets >/dev/null || exit 97; exec \"$0\" \"$@\"",
        keyring.display()
    );
    let out = std::process::Command::new(dbus)
        .args(["--", "sh", "-c", &script])
        .arg(exe)
        .args([
            child,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("HOME", home.path())
        .env("XDG_DATA_HOME", home.path().join("share"))
        .env("XDG_RUNTIME_DIR", home.path())
        .env(child_env, "1")
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run dbus-run-session");
    Some(out)
}
