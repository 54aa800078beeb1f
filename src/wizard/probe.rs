//! Probing a host and port for a mail server without logging in, and reading a server's
//! certificate for display.
//!
//! A probe connects, reads the greeting (`* OK` for IMAP, RFC 3501 §7.1.1; `+OK` for POP3,
//! RFC 1939 §4) and sets up TLS: at once for implicit TLS (RFC 8314 §3.3), or after
//! `STARTTLS` (RFC 3501 §6.2.1) / `STLS` (RFC 2595 §4). The certificate is verified as for a
//! real connection; a server whose certificate is not trusted still counts as found, with the
//! reason, so the user can decide to trust it at the login test.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::discover::Discovery;
use crate::config::{Protocol, Security};
use crate::sanitize;

/// What a successful probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probed {
    /// The greeting line, sanitised.
    pub greeting: String,
    /// Set when TLS works but the certificate is not trusted: the reason.
    pub untrusted: Option<String>,
}

/// Probes `host:port` for `protocol` with `security`, within `timeout`.
pub async fn probe(
    discovery: &Discovery,
    host: &str,
    port: u16,
    protocol: Protocol,
    security: Security,
    timeout: Duration,
) -> Result<Probed, String> {
    tokio::time::timeout(timeout, async {
        let tcp = discovery.connect(host, port).await?;
        match security {
            Security::Tls => {
                let (tls, untrusted) = verified_or_not(discovery, tcp, host, true).await?;
                let Some(tls) = tls else {
                    return Err("tls failed".to_string());
                };
                let mut io = BufReader::new(tls);
                let greeting = greeting(&mut io, protocol).await?;
                Ok(Probed {
                    greeting,
                    untrusted,
                })
            }
            Security::Starttls => {
                let mut io = BufReader::new(tcp);
                let greeting = greeting(&mut io, protocol).await?;
                start_tls(&mut io, protocol).await?;
                let (_tls, untrusted) =
                    verified_or_not(discovery, io.into_inner(), host, false).await?;
                Ok(Probed {
                    greeting,
                    untrusted,
                })
            }
            Security::None => {
                let mut io = BufReader::new(tcp);
                let greeting = greeting(&mut io, protocol).await?;
                Ok(Probed {
                    greeting,
                    untrusted: None,
                })
            }
        }
    })
    .await
    .map_err(|_| format!("no answer within {} s", timeout.as_secs_f64().ceil() as u64))?
}

/// The TLS stream of a verified handshake. If verification is what failed: the reason, and
/// with `reconnect` an unverified stream on a new connection (to read the greeting over).
async fn verified_or_not(
    discovery: &Discovery,
    tcp: TcpStream,
    host: &str,
    reconnect: bool,
) -> Result<(Option<crate::tls::TlsStream>, Option<String>), String> {
    let peer = tcp.peer_addr().map_err(|e| e.to_string())?;
    match crate::tls::handshake(tcp, host, &discovery.trust).await {
        Ok(tls) => Ok((Some(tls), None)),
        Err(e) => {
            let reason = e.to_string();
            if !looks_like_trust_failure(&reason) {
                return Err(reason);
            }
            if !reconnect {
                // NOTE: the handshake got as far as the certificate, so TLS itself works.
                return Ok((None, Some(reason)));
            }
            // NOTE: the first connection is spent; a second one, at the same address, shows
            // whether TLS itself works. Nothing is sent on it.
            let tcp = TcpStream::connect(peer).await.map_err(|e| e.to_string())?;
            let tls = crate::tls::handshake_unverified(tcp, host).await?;
            Ok((Some(tls), Some(reason)))
        }
    }
}

fn looks_like_trust_failure(reason: &str) -> bool {
    let r = reason.to_lowercase();
    if r.contains("did not speak tls") {
        return false;
    }
    [
        "certificate",
        "self-signed",
        "issuer",
        "another host name",
        "expired",
        "verify",
    ]
    .iter()
    .any(|w| r.contains(w))
}

/// Reads the greeting and checks it is the protocol's.
async fn greeting<S: AsyncRead + Unpin>(
    io: &mut BufReader<S>,
    protocol: Protocol,
) -> Result<String, String> {
    let line = read_line(io).await?;
    let ok = match protocol {
        Protocol::Imap => line.starts_with("* OK") || line.starts_with("* PREAUTH"),
        Protocol::Pop3 => line.starts_with("+OK"),
    };
    if !ok {
        return Err(format!(
            "not a {} greeting: {}",
            protocol.as_str(),
            sanitize::line(&line)
        ));
    }
    Ok(sanitize::line(&line).into_owned())
}

/// Asks for STARTTLS / STLS and waits for the go-ahead.
async fn start_tls<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut BufReader<S>,
    protocol: Protocol,
) -> Result<(), String> {
    let command: &[u8] = match protocol {
        Protocol::Imap => b"m1 STARTTLS\r\n",
        Protocol::Pop3 => b"STLS\r\n",
    };
    // The tagged reply (IMAP) or the status line (POP3): `Some(true)` is the go-ahead,
    // `None` an untagged line to skip.
    let ok = |l: &str| match protocol {
        Protocol::Imap => l.strip_prefix("m1 ").map(|rest| rest.starts_with("OK")),
        Protocol::Pop3 => Some(l.starts_with("+OK")),
    };
    io.get_mut()
        .write_all(command)
        .await
        .map_err(|e| format!("cannot send STARTTLS: {e}"))?;
    for _ in 0..32 {
        let line = read_line(io).await?;
        match ok(&line) {
            Some(true) => return Ok(()),
            Some(false) => {
                return Err(format!(
                    "the server refused STARTTLS: {}",
                    sanitize::line(&line)
                ));
            }
            None => {}
        }
    }
    Err("no answer to STARTTLS".into())
}

/// One line, at most 4 KiB, without its line ending.
async fn read_line<S: AsyncRead + Unpin>(io: &mut BufReader<S>) -> Result<String, String> {
    let mut buf = Vec::new();
    let mut limited = (&mut *io).take(4096);
    let n = limited
        .read_until(b'\n', &mut buf)
        .await
        .map_err(|e| format!("the connection failed: {e}"))?;
    if n == 0 {
        return Err("the server closed the connection".into());
    }
    if !buf.ends_with(b"\n") {
        return Err("the server sent an overlong line".into());
    }
    Ok(String::from_utf8_lossy(&buf).trim_end().to_string())
}

/// The DER bytes of the certificate `host:port` presents, read only to show it to the user.
///
/// NOTE: this handshake accepts any certificate, because its one purpose is to display the
/// certificate that failed verification. Nothing but the STARTTLS negotiation is ever sent on
/// this connection, and it is closed straight away.
pub async fn peer_certificate(
    discovery: &Discovery,
    host: &str,
    port: u16,
    protocol: Protocol,
    security: Security,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    tokio::time::timeout(timeout, async {
        let tcp = discovery.connect(host, port).await?;
        let tcp = match security {
            Security::Tls => tcp,
            Security::Starttls => {
                let mut io = BufReader::new(tcp);
                greeting(&mut io, protocol).await?;
                start_tls(&mut io, protocol).await?;
                io.into_inner()
            }
            Security::None => return Err("the connection does not use TLS".to_string()),
        };
        let mut tls = crate::tls::handshake_unverified(tcp, host).await?;
        let der = crate::tls::peer_certificate_der(&tls)
            .ok_or_else(|| "the server sent no certificate".to_string());
        let _ = tls.shutdown().await;
        der
    })
    .await
    .map_err(|_| format!("no answer within {} s", timeout.as_secs_f64().ceil() as u64))?
}
