//! Credentials: `password_command` when configured, else the OS keyring.
//!
//! Nothing secret is ever stored in the config file, logged, or put into an error message.
//! A password lives in a [`Secret`], which prints as `***` and zeroes its bytes when dropped.
//!
//! Keyring entries use service [`KEYRING_SERVICE`] (`mailbag`) and user
//! `<username>@<host>` (see [`keyring_user`]), so two accounts that log in to the same server
//! as the same user share one entry. On Linux the keyring is the freedesktop Secret Service
//! (GNOME Keyring, KeePassXC, KWallet) reached over the D-Bus session bus.
//!
//! These functions block (a keyring round trip, or a command that may wait for a GPG agent);
//! async callers should run them on `tokio::task::spawn_blocking`.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::config::Account;

/// The keyring service name every mailbag entry is stored under.
pub const KEYRING_SERVICE: &str = "mailbag";

/// How long `password_command` may run before it is killed.
pub const PASSWORD_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest stderr excerpt put into an error message, in characters.
const STDERR_EXCERPT_CHARS: usize = 200;

/// A password. Prints as `***`; its bytes are overwritten with zeros when it is dropped.
///
/// NOTE: this is best effort. Copies made before the value reached us (a pipe buffer, the
/// keyring library's own strings) or by the code that uses it (a TLS write buffer) are out of
/// our hands; what we own, we wipe.
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps a password.
    pub fn new(password: String) -> Secret {
        Secret(password.into_bytes())
    }

    /// The password itself, for handing to the server. Never log or format it.
    pub fn expose(&self) -> &str {
        // NOTE: the bytes came from a `String`, so this never fails; an empty fallback avoids a
        // panic path all the same.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// Whether the password is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.iter_mut().for_each(|b| *b = 0);
        // NOTE: `black_box` keeps the compiler from treating the zeroing as a dead store.
        std::hint::black_box(&mut self.0);
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// What kind of credential failure this is, so a caller can choose what to tell the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// The keyring has no entry for this account.
    NotFound,
    /// No keyring service could be reached (no D-Bus session, no Secret Service).
    NoService,
    /// The keyring is there but locked, or the user dismissed the unlock prompt.
    Locked,
    /// `password_command` failed, timed out, or printed nothing usable.
    CommandFailed,
    /// The keyring failed in some other way.
    Other,
}

/// Why no password could be had (or stored). Messages never contain the password.
#[derive(Debug, Error)]
pub enum CredentialError {
    #[error(
        "no password stored for {account} in the OS keyring: run `mailbag setup` or set \
         password_command"
    )]
    NotFound { account: String },
    #[error(
        "no OS keyring service is reachable (no D-Bus session / Secret Service): set \
         password_command in config.toml instead"
    )]
    NoService {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "the OS keyring is locked or refused access for {account}: unlock it, or set \
         password_command in config.toml"
    )]
    Locked {
        account: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the OS keyring failed for {account}: {reason}")]
    Keyring { account: String, reason: String },
    #[error("cannot run password_command for {account}: {source}")]
    CommandSpawn {
        account: String,
        #[source]
        source: std::io::Error,
    },
    #[error("password_command for {account} failed ({status}): {stderr}")]
    CommandFailed {
        account: String,
        status: String,
        stderr: String,
    },
    #[error("password_command for {account} did not finish within {seconds} s and was killed")]
    CommandTimedOut { account: String, seconds: u64 },
    #[error("password_command for {account} printed no password on stdout")]
    CommandEmpty { account: String },
    #[error("password_command for {account} printed bytes that are not UTF-8")]
    CommandNotUtf8 { account: String },
}

impl CredentialError {
    /// The coarse kind of this failure.
    pub fn kind(&self) -> CredentialKind {
        match self {
            CredentialError::NotFound { .. } => CredentialKind::NotFound,
            CredentialError::NoService { .. } => CredentialKind::NoService,
            CredentialError::Locked { .. } => CredentialKind::Locked,
            CredentialError::Keyring { .. } => CredentialKind::Other,
            CredentialError::CommandSpawn { .. }
            | CredentialError::CommandFailed { .. }
            | CredentialError::CommandTimedOut { .. }
            | CredentialError::CommandEmpty { .. }
            | CredentialError::CommandNotUtf8 { .. } => CredentialKind::CommandFailed,
        }
    }
}

/// The keyring user an account's password is stored under: `<username>@<host>`.
///
/// For `email = "me@example.com"` on `imap.example.com` that is
/// `me@example.com@imap.example.com`.
pub fn keyring_user(account: &Account) -> String {
    format!("{}@{}", account.username(), account.host)
}

/// The password for `account`: from `password_command` if set, else from the OS keyring.
///
/// `account_name` is the `NAME` of `[accounts.NAME]`, used in messages.
pub fn password(account_name: &str, account: &Account) -> Result<Secret, CredentialError> {
    match &account.password_command {
        Some(command) => run_password_command(account_name, command, PASSWORD_COMMAND_TIMEOUT),
        None => {
            let entry = entry(account_name, account)?;
            match entry.get_password() {
                Ok(p) => Ok(Secret::new(p)),
                Err(e) => Err(keyring_error(account_name, e)),
            }
        }
    }
}

/// Stores `password` for `account` in the OS keyring (used by the setup wizard).
pub fn store_password(
    account_name: &str,
    account: &Account,
    password: &Secret,
) -> Result<(), CredentialError> {
    entry(account_name, account)?
        .set_password(password.expose())
        .map_err(|e| keyring_error(account_name, e))
}

/// Removes the stored password for `account`; `Ok(false)` if there was none.
pub fn delete_password(account_name: &str, account: &Account) -> Result<bool, CredentialError> {
    match entry(account_name, account)?.delete_credential() {
        Ok(()) => Ok(true),
        Err(keyring::Error::NoEntry) => Ok(false),
        Err(e) => Err(keyring_error(account_name, e)),
    }
}

fn entry(account_name: &str, account: &Account) -> Result<keyring::Entry, CredentialError> {
    keyring::Entry::new(KEYRING_SERVICE, &keyring_user(account))
        .map_err(|e| keyring_error(account_name, e))
}

/// Maps a keyring error to ours without ever carrying the stored secret along.
pub(crate) fn keyring_error(account_name: &str, err: keyring::Error) -> CredentialError {
    let account = account_name.to_string();
    match err {
        keyring::Error::NoEntry => CredentialError::NotFound { account },
        keyring::Error::PlatformFailure(source) => CredentialError::NoService { source },
        keyring::Error::NoStorageAccess(source) => CredentialError::Locked { account, source },
        // NOTE: `BadEncoding` holds the stored bytes, i.e. the password; drop them unseen.
        keyring::Error::BadEncoding(_) => CredentialError::Keyring {
            account,
            reason: "the stored secret is not valid UTF-8".to_string(),
        },
        keyring::Error::Ambiguous(items) => CredentialError::Keyring {
            account,
            reason: format!("{} entries match; remove the extras", items.len()),
        },
        other => CredentialError::Keyring {
            account,
            reason: other.to_string(),
        },
    }
}

/// Runs `command` with `sh -c` and returns its stdout minus one trailing newline.
///
/// stdin is `/dev/null`; stderr is kept only for the first line of a failure message. stdout
/// (the password) never appears in an error.
pub fn run_password_command(
    account_name: &str,
    command: &str,
    timeout: Duration,
) -> Result<Secret, CredentialError> {
    let account = account_name.to_string();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| CredentialError::CommandSpawn {
            account: account.clone(),
            source,
        })?;

    // NOTE: both pipes are drained on threads while we wait, so a chatty command cannot block
    // on a full pipe, and the wait can time out.
    let stdout = child.stdout.take().map(|mut out| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = out.read_to_end(&mut buf);
            Secret(buf)
        })
    });
    let stderr = child.stderr.take().map(|mut err| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            // NOTE: cap what we keep; only the first line is ever shown.
            let _ = err.by_ref().take(64 * 1024).read_to_end(&mut buf);
            let _ = std::io::copy(&mut err, &mut std::io::sink());
            buf
        })
    });

    let deadline = Instant::now() + timeout;
    // NOTE: a command that answers at once (a file, the keyring's CLI) is done in a few
    // milliseconds; checking every 10 ms made every login wait ~5 ms longer on average. The
    // pauses start short and grow, so a slow one (a pinentry prompt) costs few wake-ups.
    let mut pause = Duration::from_micros(250);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                // NOTE: the reader threads are not joined: a grandchild may still hold the
                // pipes open. They end when it does.
                return Err(CredentialError::CommandTimedOut {
                    account,
                    seconds: timeout.as_secs(),
                });
            }
            Ok(None) => {
                std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(source) => {
                let _ = child.kill();
                return Err(CredentialError::CommandSpawn { account, source });
            }
        }
    };

    let out = stdout
        .and_then(|h| h.join().ok())
        .unwrap_or_else(|| Secret(Vec::new()));
    let err = stderr.and_then(|h| h.join().ok()).unwrap_or_default();

    if !status.success() {
        drop(out);
        return Err(CredentialError::CommandFailed {
            account,
            status: status.to_string(),
            stderr: first_line(&err),
        });
    }
    let mut bytes = out;
    if bytes.0.ends_with(b"\r\n") {
        bytes.0.truncate(bytes.0.len() - 2);
    } else if bytes.0.ends_with(b"\n") {
        bytes.0.truncate(bytes.0.len() - 1);
    }
    if bytes.0.is_empty() {
        return Err(CredentialError::CommandEmpty { account });
    }
    if std::str::from_utf8(&bytes.0).is_err() {
        return Err(CredentialError::CommandNotUtf8 { account });
    }
    Ok(bytes)
}

/// The first non-empty line of `stderr`, shortened and with control characters removed.
fn first_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let line = text.lines().map(str::trim).find(|l| !l.is_empty());
    match line {
        None => "no message on stderr".to_string(),
        Some(line) => {
            let mut short: String = line
                .chars()
                .filter(|c| !c.is_control())
                .take(STDERR_EXCERPT_CHARS)
                .collect();
            if line.chars().count() > STDERR_EXCERPT_CHARS {
                short.push_str("...");
            }
            short
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Protocol, Security};

    const LONG: Duration = Duration::from_secs(30);

    fn account(password_command: Option<&str>) -> Account {
        Account {
            password_command: password_command.map(str::to_string),
            ..crate::wizard::blank_account(
                "me@example.com",
                Protocol::Imap,
                "imap.example.com",
                Security::Tls,
            )
        }
    }

    fn run(command: &str) -> Result<Secret, CredentialError> {
        run_password_command("work", command, LONG)
    }

    #[test]
    fn command_output_loses_exactly_one_trailing_newline() {
        let cases = [
            ("printf 'hunter2\\n'", "hunter2"),
            ("printf 'hunter2\\r\\n'", "hunter2"),
            ("printf 'hunter2'", "hunter2"),
            ("printf 'hunter2\\n\\n'", "hunter2\n"),
            ("printf ' spaced pass \\n'", " spaced pass "),
            ("printf 'line1\\nline2\\n'", "line1\nline2"),
        ];
        for (command, want) in cases {
            match run(command) {
                Ok(secret) => assert_eq!(secret.expose(), want, "{command}"),
                Err(e) => panic!("{command}: {e}"),
            }
        }
    }

    #[test]
    fn password_uses_password_command_when_set() {
        let secret = password("work", &account(Some("echo from-command"))).expect("command");
        assert_eq!(secret.expose(), "from-command");
    }

    #[test]
    fn failing_command_reports_status_and_first_stderr_line_but_not_stdout() {
        let err =
            run("echo leaked-secret; echo 'gpg: decryption failed' >&2; echo more >&2; exit 3")
                .expect_err("must fail");
        assert_eq!(err.kind(), CredentialKind::CommandFailed);
        let msg = err.to_string();
        assert!(msg.contains("password_command for work failed"), "{msg}");
        assert!(msg.contains("exit status: 3"), "{msg}");
        assert!(msg.contains("gpg: decryption failed"), "{msg}");
        assert!(!msg.contains("more"), "only the first stderr line: {msg}");
        assert!(!msg.contains("leaked-secret"), "stdout leaked: {msg}");
    }

    #[test]
    fn failing_command_without_stderr_says_so() {
        let err = run("exit 1").expect_err("must fail");
        let msg = err.to_string();
        assert!(msg.contains("exit status: 1"), "{msg}");
        assert!(msg.contains("no message on stderr"), "{msg}");
    }

    #[test]
    fn missing_program_is_a_command_failure() {
        let err = run("mailbag-no-such-program-xyz").expect_err("must fail");
        assert_eq!(err.kind(), CredentialKind::CommandFailed);
        assert!(err.to_string().contains("exit status: 127"), "{err}");
    }

    #[test]
    fn empty_output_is_an_error() {
        for command in ["true", "echo", "printf '\\r\\n'"] {
            let err = run(command).expect_err("empty");
            assert!(
                matches!(err, CredentialError::CommandEmpty { .. }),
                "{command}: {err}"
            );
            assert_eq!(err.kind(), CredentialKind::CommandFailed);
            assert!(err.to_string().contains("printed no password"), "{err}");
        }
    }

    #[test]
    fn stdin_is_not_inherited() {
        // NOTE: with stdin from /dev/null, `cat` ends at once instead of waiting for input.
        let err = run("cat").expect_err("empty");
        assert!(matches!(err, CredentialError::CommandEmpty { .. }), "{err}");
    }

    #[test]
    fn non_utf8_output_is_an_error() {
        let err = run("printf '\\377\\376\\n'").expect_err("not utf-8");
        assert!(
            matches!(err, CredentialError::CommandNotUtf8 { .. }),
            "{err}"
        );
    }

    #[test]
    fn slow_command_is_killed() {
        let err = run_password_command("work", "exec sleep 30", Duration::from_millis(100))
            .expect_err("timeout");
        assert!(
            matches!(err, CredentialError::CommandTimedOut { .. }),
            "{err}"
        );
        assert_eq!(err.kind(), CredentialKind::CommandFailed);
    }

    #[test]
    fn long_stderr_is_shortened_and_control_characters_dropped() {
        let line = first_line(format!("\n  \x1b[31m{}\n", "e".repeat(500)).as_bytes());
        assert!(line.ends_with("..."), "{line}");
        assert!(line.chars().count() <= STDERR_EXCERPT_CHARS + 3);
        assert!(!line.contains('\x1b'));
    }

    #[test]
    fn secret_never_formats_its_value() {
        let s = Secret::new("hunter2".into());
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(s.expose(), "hunter2");
        assert!(!s.is_empty());
    }

    #[test]
    fn keyring_user_is_username_at_host() {
        let mut a = account(None);
        assert_eq!(keyring_user(&a), "me@example.com@imap.example.com");
        a.username = Some("me".into());
        assert_eq!(keyring_user(&a), "me@imap.example.com");
    }

    #[test]
    fn keyring_errors_map_to_kinds_without_secrets() {
        let e = keyring_error("work", keyring::Error::NoEntry);
        assert_eq!(e.kind(), CredentialKind::NotFound);
        assert_eq!(
            e.to_string(),
            "no password stored for work in the OS keyring: run `mailbag setup` or set \
             password_command"
        );
        let e = keyring_error("work", keyring::Error::BadEncoding(b"hunter2\xff".to_vec()));
        assert_eq!(e.kind(), CredentialKind::Other);
        assert!(!format!("{e} {e:?}").contains("hunter2"), "{e:?}");
        let e = keyring_error("work", keyring::Error::PlatformFailure("no bus".into()));
        assert_eq!(e.kind(), CredentialKind::NoService);
        let e = keyring_error("work", keyring::Error::NoStorageAccess("locked".into()));
        assert_eq!(e.kind(), CredentialKind::Locked);
    }

    /// The marker the child prints once its assertions have passed.
    const CHILD_OK: &str = "MAILBAG-KEYRING-CHILD-OK";

    #[test]
    fn keyring_without_dbus_session_says_no_service() {
        // NOTE: environment variables are process-wide and other tests run in parallel, so the
        // check runs in a child process (this test binary, running only the ignored test
        // below) with the D-Bus address pointing nowhere.
        let exe = std::env::current_exe().expect("test binary");
        let out = Command::new(exe)
            .args([
                "credentials::tests::keyring_child_without_dbus",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(
                "DBUS_SESSION_BUS_ADDRESS",
                "unix:path=/nonexistent/mailbag-test-bus",
            )
            .env("MAILBAG_KEYRING_CHILD", "1")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .stdin(Stdio::null())
            .output()
            .expect("run child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stdout.contains(CHILD_OK),
            "child failed ({}):\n{stdout}\n{stderr}",
            out.status
        );
    }

    #[test]
    #[ignore = "run by keyring_without_dbus_session_says_no_service in a child process"]
    fn keyring_child_without_dbus() {
        if std::env::var_os("MAILBAG_KEYRING_CHILD").is_none() {
            println!("skipped: only meaningful as a child of the test above");
            return;
        }
        let a = account(None);
        let want = "no OS keyring service is reachable (no D-Bus session / Secret Service): \
                    set password_command in config.toml instead";
        let err = password("work", &a).expect_err("no keyring");
        assert_eq!(err.kind(), CredentialKind::NoService, "{err}");
        assert_eq!(err.to_string(), want);
        let err = store_password("work", &a, &Secret::new("pw".into())).expect_err("no keyring");
        assert_eq!(err.kind(), CredentialKind::NoService, "{err}");
        let err = delete_password("work", &a).expect_err("no keyring");
        assert_eq!(err.kind(), CredentialKind::NoService, "{err}");
        println!("{CHILD_OK}");
    }
}
