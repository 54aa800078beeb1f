//! Smoke tests for the Dovecot harness in `tests/common`.
//!
//! Why: every other integration test builds on this harness, so these prove
//! that a private Dovecot starts, that TLS verifies against the harness CA
//! (implicit TLS per RFC 8314 §3.3, STARTTLS per RFC 3501 §6.2.1, STLS per
//! RFC 2595 §4), that login works and fails as it should, and that seeding
//! is visible over IMAP, POP3 (RFC 1939 §5 STAT) and doveadm.

mod common;

use async_native_tls::{Certificate, TlsConnector, TlsStream};
use common::{ALICE, Dovecot};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Runs an async test body on a fresh current-thread runtime.
fn block_on<F: std::future::Future<Output = TestResult>>(f: F) -> TestResult {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

/// A connector that trusts exactly the harness CA (verification stays on).
fn connector(d: &Dovecot) -> Result<TlsConnector, Box<dyn std::error::Error + Send + Sync>> {
    let ca = Certificate::from_pem(&d.ca_pem()?)?;
    Ok(TlsConnector::new().add_root_certificate(ca))
}

async fn tcp(d: &Dovecot, port: u16) -> std::io::Result<TcpStream> {
    TcpStream::connect((d.host(), port)).await
}

#[test]
fn imap_implicit_tls_login_and_select_sees_seeded_messages() -> TestResult {
    let Some(d) = Dovecot::start() else {
        return Ok(());
    };
    let ids = d.seed(ALICE.name, "INBOX", 5)?;
    assert_eq!(ids.len(), 5);
    block_on(async {
        let tls = connector(&d)?
            .connect(common::TLS_NAME, tcp(&d, d.imap_tls_port()).await?)
            .await?;
        let mut client = async_imap::Client::new(tls);
        let greeting = client.read_response().await?;
        assert!(greeting.is_some(), "no IMAP greeting");
        let mut session = client
            .login(ALICE.name, ALICE.password)
            .await
            .map_err(|(e, _)| e)?;
        let caps = session.capabilities().await?;
        for cap in ["IDLE", "CONDSTORE", "QRESYNC", "SPECIAL-USE"] {
            assert!(caps.has_str(cap), "server lacks {cap}");
        }
        let inbox = session.select("INBOX").await?;
        assert_eq!(inbox.exists, 5);
        session.logout().await?;
        Ok(())
    })
}

#[test]
fn imap_starttls_then_login() -> TestResult {
    let Some(d) = Dovecot::start() else {
        return Ok(());
    };
    block_on(async {
        let mut client = async_imap::Client::new(tcp(&d, d.imap_plain_port()).await?);
        assert!(client.read_response().await?.is_some(), "no IMAP greeting");
        client.run_command_and_check_ok("STARTTLS", None).await?;
        let plain = client.into_inner();
        let tls = connector(&d)?.connect(common::TLS_NAME, plain).await?;
        // NOTE: no second greeting after STARTTLS (RFC 3501 §6.2.1).
        let client = async_imap::Client::new(tls);
        let mut session = client
            .login(ALICE.name, ALICE.password)
            .await
            .map_err(|(e, _)| e)?;
        let inbox = session.select("INBOX").await?;
        assert_eq!(inbox.exists, 0);
        session.logout().await?;
        Ok(())
    })
}

#[test]
fn imap_wrong_password_is_refused() -> TestResult {
    let Some(d) = Dovecot::start() else {
        return Ok(());
    };
    block_on(async {
        let tls = connector(&d)?
            .connect(common::TLS_NAME, tcp(&d, d.imap_tls_port()).await?)
            .await?;
        let mut client = async_imap::Client::new(tls);
        assert!(client.read_response().await?.is_some(), "no IMAP greeting");
        let result = client.login(ALICE.name, "not-the-password").await;
        assert!(result.is_err(), "login with a wrong password succeeded");
        Ok(())
    })
}

#[test]
fn special_use_mailboxes_exist() -> TestResult {
    let Some(d) = Dovecot::start() else {
        return Ok(());
    };
    let list = d.doveadm(&["mailbox", "list", "-u", ALICE.name])?;
    for name in ["INBOX", "Drafts", "Sent", "Trash", "Junk", "Archive"] {
        assert!(
            list.lines().any(|l| l.trim() == name),
            "{name} missing from {list:?}"
        );
    }
    Ok(())
}

/// Reads one CRLF-terminated POP3 line.
async fn pop3_line<S: AsyncRead + Unpin>(r: &mut BufReader<S>) -> std::io::Result<String> {
    let mut line = String::new();
    r.read_line(&mut line).await?;
    Ok(line.trim_end().to_owned())
}

/// Sends a POP3 command and returns the status line, failing on `-ERR`.
async fn pop3_cmd<S: AsyncRead + AsyncWrite + Unpin>(
    r: &mut BufReader<S>,
    cmd: &str,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    r.get_mut()
        .write_all(format!("{cmd}\r\n").as_bytes())
        .await?;
    r.get_mut().flush().await?;
    let line = pop3_line(r).await?;
    let verb = cmd.split(' ').next().unwrap_or(cmd);
    if !line.starts_with("+OK") {
        return Err(format!("{verb} refused: {line}").into());
    }
    Ok(line)
}

/// Logs in as alice and returns the message count from STAT.
async fn pop3_login_and_stat(
    r: &mut BufReader<TlsStream<TcpStream>>,
) -> Result<u64, Box<dyn std::error::Error + Send + Sync>> {
    pop3_cmd(r, &format!("USER {}", ALICE.name)).await?;
    pop3_cmd(r, &format!("PASS {}", ALICE.password)).await?;
    let stat = pop3_cmd(r, "STAT").await?;
    let count = stat
        .split(' ')
        .nth(1)
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("bad STAT reply: {stat}"))?;
    pop3_cmd(r, "QUIT").await?;
    Ok(count)
}

#[test]
fn pop3_implicit_tls_stat_counts_seeded_messages() -> TestResult {
    let Some(d) = Dovecot::start() else {
        return Ok(());
    };
    d.seed(ALICE.name, "INBOX", 5)?;
    block_on(async {
        let tls = connector(&d)?
            .connect(common::TLS_NAME, tcp(&d, d.pop3_tls_port()).await?)
            .await?;
        let mut r = BufReader::new(tls);
        let greeting = pop3_line(&mut r).await?;
        assert!(greeting.starts_with("+OK"), "greeting: {greeting}");
        assert_eq!(pop3_login_and_stat(&mut r).await?, 5);
        Ok(())
    })
}

#[test]
fn pop3_stls_then_login() -> TestResult {
    let Some(d) = Dovecot::start() else {
        return Ok(());
    };
    d.seed(ALICE.name, "INBOX", 2)?;
    block_on(async {
        let mut r = BufReader::new(tcp(&d, d.pop3_plain_port()).await?);
        let greeting = pop3_line(&mut r).await?;
        assert!(greeting.starts_with("+OK"), "greeting: {greeting}");
        pop3_cmd(&mut r, "STLS").await?;
        // NOTE: the server sends nothing between +OK and the handshake, so
        // the BufReader holds no bytes that would be lost here.
        assert!(r.buffer().is_empty());
        let tls = connector(&d)?
            .connect(common::TLS_NAME, r.into_inner())
            .await?;
        let mut r = BufReader::new(tls);
        assert_eq!(pop3_login_and_stat(&mut r).await?, 2);
        Ok(())
    })
}

#[test]
fn seeding_ten_thousand_messages_is_indexed() -> TestResult {
    let Some(d) = Dovecot::start() else {
        return Ok(());
    };
    let ids = d.seed(ALICE.name, "INBOX", 10_000)?;
    assert_eq!(ids.len(), 10_000);
    let out = d.doveadm(&["mailbox", "status", "-u", ALICE.name, "messages", "INBOX"])?;
    assert!(
        out.split_whitespace().any(|t| t == "messages=10000"),
        "doveadm says {out:?}"
    );
    Ok(())
}

#[test]
fn deliver_and_doveadm_flags_round_trip() -> TestResult {
    let Some(d) = Dovecot::start() else {
        return Ok(());
    };
    let msg = common::seed_message(42, common::BOB.name);
    d.deliver(common::BOB.name, "Archive", &msg.bytes)?;
    assert_eq!(d.message_count(common::BOB.name, "Archive")?, 1);
    d.doveadm(&[
        "flags",
        "add",
        "-u",
        "bob",
        "\\Flagged",
        "mailbox",
        "Archive",
        "uid",
        "1",
    ])?;
    let out = d.doveadm(&[
        "fetch",
        "-u",
        "bob",
        "flags hdr.message-id",
        "mailbox",
        "Archive",
        "uid",
        "1",
    ])?;
    assert!(out.contains("\\Flagged"), "flags not set: {out}");
    assert!(out.contains(&msg.message_id), "wrong message: {out}");
    Ok(())
}
