//! The login test: run a real login with the settings and password the user gave, step by
//! step, and on failure say in one line what to do.
//!
//! Steps, reported live as [`CheckEvent`]s: resolve the host, connect, TLS, read the
//! capabilities, log in, then list the folders (IMAP, RFC 3501 §6.3.8) or STAT (POP3,
//! RFC 1939 §5). Nothing on the server is changed. The connection code is the same the sync
//! uses ([`crate::backend::imap::check_login`], [`crate::backend::pop3::check_login`]).
//!
//! When the certificate is not trusted, a second handshake reads the certificate the server
//! presents — only to show its subject, issuer and SHA-256 fingerprint so the user can trust
//! exactly that one (`tls_cert_sha256`); nothing is sent over that connection.

use std::time::Duration;

use sha2::{Digest, Sha256};

use super::der;
use super::discover::Discovery;
use crate::backend::{BackendError, ConnectStep, PasswordSource};
use crate::config::{Account, Protocol, Security};
use crate::credentials::Secret;
use crate::error::ErrorKind;
use crate::tls;

/// A step of the login test, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStep {
    Resolve,
    Connect,
    Tls,
    Capabilities,
    Login,
    /// IMAP: LIST the folders.
    ListFolders,
    /// POP3: STAT.
    Stat,
}

impl CheckStep {
    /// What the step shows: `resolve`, `connect`, `tls`, ...
    pub fn label(self) -> &'static str {
        match self {
            CheckStep::Resolve => "resolve",
            CheckStep::Connect => "connect",
            CheckStep::Tls => "tls",
            CheckStep::Capabilities => "capabilities",
            CheckStep::Login => "login",
            CheckStep::ListFolders => "list folders",
            CheckStep::Stat => "stat",
        }
    }

    /// The steps a test of `account` runs, in order (no TLS step without encryption).
    pub fn plan(account: &Account) -> Vec<CheckStep> {
        let mut steps = vec![CheckStep::Resolve, CheckStep::Connect];
        if account.security != Security::None {
            steps.push(CheckStep::Tls);
        }
        steps.extend([CheckStep::Capabilities, CheckStep::Login]);
        steps.push(match account.protocol {
            Protocol::Imap => CheckStep::ListFolders,
            Protocol::Pop3 => CheckStep::Stat,
        });
        steps
    }
}

/// A live event of the login test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckEvent {
    /// The step finished; the text is a short detail (`127.0.0.1`, `12 folders`).
    Done(CheckStep, String),
    /// The step failed; the full failure is in the returned [`CheckFailure`].
    Failed(CheckStep, String),
}

/// What a successful test saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOk {
    /// IMAP: the folder names. POP3: empty.
    pub folders: Vec<String>,
    /// POP3: messages and octets in the maildrop.
    pub stat: Option<(u32, u64)>,
}

/// The certificate a server presented, for the user to look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    /// SHA-256 of the DER encoding: what `tls_cert_sha256` takes.
    pub sha256: [u8; 32],
}

impl CertInfo {
    /// The fingerprint as `AB:CD:...`.
    pub fn fingerprint(&self) -> String {
        tls::fingerprint_hex(&self.sha256)
    }

    /// The fingerprint as 64 lower-case hex digits, as saved in `tls_cert_sha256`.
    pub fn config_value(&self) -> String {
        self.sha256.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// What kind of failure, so a screen can choose what to offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureKind {
    /// Nothing answered there (name unknown, port closed, timeout): try the next candidate.
    Unreachable,
    /// The server refused the user name or password.
    WrongPassword,
    /// The certificate is not trusted; `cert` is what the server presented, when it could be
    /// read. Offer to trust exactly that certificate.
    Certificate { cert: Option<CertInfo> },
    /// The server offers no STARTTLS / STLS, so the password would go out unencrypted.
    NoEncryption,
    /// Anything else (a protocol error, a password command that failed).
    Other,
}

/// A failed test: the step, the reason, and one line saying what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckFailure {
    pub step: CheckStep,
    pub kind: FailureKind,
    /// The error, one line.
    pub reason: String,
    /// What to do, one line.
    pub hint: String,
}

impl std::fmt::Display for CheckFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} failed: {}", self.step.label(), self.reason)
    }
}

/// How long resolving and reading the certificate may take.
const SHORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the login test for `account` with `password`. `provider` names the provider in the
/// wrong-password hint. Each step is reported to `on` as it completes or fails.
pub async fn test_login(
    account: &Account,
    password: &Secret,
    provider: Option<&str>,
    on: &mut (dyn FnMut(CheckEvent) + Send),
) -> Result<CheckOk, CheckFailure> {
    let host = account.host.as_str();
    let port = account.port();

    // Resolve.
    let resolved = tokio::time::timeout(SHORT_TIMEOUT, tokio::net::lookup_host((host, port))).await;
    let addrs: Vec<String> = match resolved {
        Ok(Ok(a)) => a.map(|a| a.ip().to_string()).collect(),
        Ok(Err(e)) => {
            return Err(fail(
                on,
                CheckStep::Resolve,
                FailureKind::Unreachable,
                format!("cannot find {host}: {e}"),
                "check the server name".into(),
            ));
        }
        Err(_) => {
            return Err(fail(
                on,
                CheckStep::Resolve,
                FailureKind::Unreachable,
                format!("no answer when looking up {host}"),
                "check the server name and your network".into(),
            ));
        }
    };
    let mut shown: Vec<String> = Vec::new();
    for a in addrs {
        if !shown.contains(&a) {
            shown.push(a);
        }
    }
    on(CheckEvent::Done(CheckStep::Resolve, shown.join(", ")));

    // Connect, TLS, capabilities, login: the backends report each step.
    let mut last = CheckStep::Resolve;
    let mut on_step = |s: ConnectStep| {
        let (step, detail) = match s {
            ConnectStep::Connected => (CheckStep::Connect, format!("{host}:{port}")),
            ConnectStep::Secured => (CheckStep::Tls, "verified".to_string()),
            ConnectStep::Capabilities(caps) => (CheckStep::Capabilities, short_caps(&caps)),
            ConnectStep::LoggedIn => (CheckStep::Login, account.username().to_string()),
        };
        last = step;
        on(CheckEvent::Done(step, detail));
    };
    let result = match account.protocol {
        Protocol::Imap => crate::backend::imap::check_login(
            account,
            PasswordSource::Given(password),
            &mut on_step,
        )
        .await
        .map(|folders| CheckOk {
            folders,
            stat: None,
        }),
        Protocol::Pop3 => crate::backend::pop3::check_login(
            account,
            PasswordSource::Given(password),
            &mut on_step,
        )
        .await
        .map(|stat| CheckOk {
            folders: Vec::new(),
            stat: Some(stat),
        }),
    };
    match result {
        Ok(ok) => {
            let (step, detail) = match &ok.stat {
                Some((n, size)) => (
                    CheckStep::Stat,
                    format!("{n} messages, {:.1} MB", *size as f64 / 1e6),
                ),
                None => (
                    CheckStep::ListFolders,
                    format!("{} folders", ok.folders.len()),
                ),
            };
            on(CheckEvent::Done(step, detail));
            Ok(ok)
        }
        Err(e) => {
            let failed_step = next_step(last, account);
            let (kind, hint) = classify(&e, account, provider).await;
            Err(fail(on, failed_step, kind, e.to_string(), hint))
        }
    }
}

/// The step after `last` in the plan for `account`.
fn next_step(last: CheckStep, account: &Account) -> CheckStep {
    let plan = CheckStep::plan(account);
    plan.iter()
        .position(|s| *s == last)
        .and_then(|i| plan.get(i + 1))
        .copied()
        .unwrap_or(last)
}

fn short_caps(caps: &[String]) -> String {
    let mut s = caps.join(" ");
    if s.len() > 60 {
        let mut cut = 60;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

fn fail(
    on: &mut (dyn FnMut(CheckEvent) + Send),
    step: CheckStep,
    kind: FailureKind,
    reason: String,
    hint: String,
) -> CheckFailure {
    let reason = crate::sanitize::line(&reason).into_owned();
    on(CheckEvent::Failed(step, reason.clone()));
    CheckFailure {
        step,
        kind,
        reason,
        hint,
    }
}

/// Sorts an error into a kind and the one line that says what to do.
async fn classify(
    e: &BackendError,
    account: &Account,
    provider: Option<&str>,
) -> (FailureKind, String) {
    match e {
        BackendError::Auth { .. } => (
            FailureKind::WrongPassword,
            format!(
                "check it, or create an app password for {}",
                provider.unwrap_or(&account.host)
            ),
        ),
        BackendError::NoStartTls { .. } => (
            FailureKind::NoEncryption,
            "this port offers no encryption: try port 993 (IMAP) or 995 (POP3) with security tls"
                .into(),
        ),
        BackendError::Tls { reason, .. }
            if !reason.contains("did not speak tls") && !reason.contains("no tls handshake") =>
        {
            let cert = read_certificate(account).await;
            let hint = match &cert {
                Some(c) => format!(
                    "if this is your server's certificate, trust exactly it: tls_cert_sha256 = \"{}\"",
                    c.config_value()
                ),
                None => "set tls_ca_file to the CA that signed the server's certificate".into(),
            };
            (FailureKind::Certificate { cert }, hint)
        }
        e if e.kind() == ErrorKind::Network || e.kind() == ErrorKind::Tls => (
            FailureKind::Unreachable,
            "nothing answered there: try the next candidate, or check host, port and security"
                .into(),
        ),
        _ => (
            FailureKind::Other,
            "check the settings; if they are right, the server may be having trouble".into(),
        ),
    }
}

/// Reads the certificate the server presents, for display only.
async fn read_certificate(account: &Account) -> Option<CertInfo> {
    let d = Discovery::default();
    let der = super::probe::peer_certificate(
        &d,
        &account.host,
        account.port(),
        account.protocol,
        account.security,
        SHORT_TIMEOUT,
    )
    .await
    .ok()?;
    let names = der::cert_names(&der).unwrap_or(der::CertNames {
        subject: "(unreadable)".into(),
        issuer: "(unreadable)".into(),
    });
    Some(CertInfo {
        subject: names.subject,
        issuer: names.issuer,
        sha256: Sha256::digest(&der).into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wizard::blank_account;

    #[test]
    fn plans_and_the_step_that_failed() {
        let imap = blank_account("a@b.c", Protocol::Imap, "h", Security::Starttls);
        assert_eq!(
            CheckStep::plan(&imap),
            [
                CheckStep::Resolve,
                CheckStep::Connect,
                CheckStep::Tls,
                CheckStep::Capabilities,
                CheckStep::Login,
                CheckStep::ListFolders
            ]
        );
        assert_eq!(next_step(CheckStep::Connect, &imap), CheckStep::Tls);
        assert_eq!(next_step(CheckStep::Capabilities, &imap), CheckStep::Login);
        let pop = blank_account("a@b.c", Protocol::Pop3, "h", Security::None);
        let plan = CheckStep::plan(&pop);
        assert!(!plan.contains(&CheckStep::Tls));
        assert_eq!(plan.last(), Some(&CheckStep::Stat));
        assert_eq!(next_step(CheckStep::Connect, &pop), CheckStep::Capabilities);
    }

    #[test]
    fn fingerprints_for_display_and_config() {
        let c = CertInfo {
            subject: "CN=x".into(),
            issuer: "CN=x".into(),
            sha256: [0xab; 32],
        };
        assert_eq!(c.config_value(), "ab".repeat(32));
        assert!(c.fingerprint().starts_with("AB:AB:"));
        assert_eq!(
            crate::config::parse(
                &format!(
                    "[accounts.a]\nemail='a@b.c'\nprotocol='imap'\nhost='h'\ntls_cert_sha256='{}'\n",
                    c.config_value()
                ),
                std::path::Path::new("c.toml")
            )
            .ok()
            .and_then(|cfg| cfg.accounts.get("a").and_then(|a| a.tls_cert_sha256_bytes())),
            Some([0xab; 32])
        );
    }
}
