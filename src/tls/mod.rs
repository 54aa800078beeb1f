//! Connecting to a server: TCP with a timeout, then TLS that is verified by default.
//!
//! Shared by IMAP and POP3. On Linux and the BSDs the handshake is OpenSSL's, set up here so
//! that the system trust store is not parsed on every connection (`openssl.rs`); on macOS and
//! Windows it is the platform's own, through native-tls (`native.rs`).
//!
//! Certificates are always checked against the system's trust store; `tls_ca_file` adds one
//! more trusted CA (or a self-signed server certificate), and `tls_cert_sha256` trusts exactly
//! one certificate, named by the SHA-256 of its DER bytes, in place of the chain check — the
//! way a user says "I have looked at this certificate and I trust it" for a self-signed
//! server. Nothing turns verification off.

use std::path::PathBuf;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::net::TcpStream;

use crate::backend::BackendError;

#[cfg(not(any(target_vendor = "apple", windows)))]
#[path = "openssl.rs"]
mod backend;
#[cfg(any(target_vendor = "apple", windows))]
#[path = "native.rs"]
mod backend;

pub use backend::TlsStream;

/// Why a handshake did not happen, before it is put into words for the user.
#[derive(Debug)]
enum Failure {
    /// `tls_ca_file` holds no usable certificate.
    BadCaFile(String),
    /// The handshake failed, with the TLS library's reason.
    Handshake(String),
}

/// How long connecting (TCP and the TLS handshake, each) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// What to trust beyond the system's CAs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsTrust {
    /// A PEM file with one or more extra CA (or self-signed) certificates.
    pub ca_file: Option<PathBuf>,
    /// Trust exactly the certificate with this SHA-256 fingerprint (of its DER encoding).
    pub cert_sha256: Option<[u8; 32]>,
}

/// Format a SHA-256 fingerprint as `AB:CD:...`.
pub fn fingerprint_hex(fp: &[u8; 32]) -> String {
    fp.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parse `AB:CD:...` / `abcd...` into a SHA-256 fingerprint.
pub fn parse_fingerprint(s: &str) -> Option<[u8; 32]> {
    let hex: String = s
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .collect();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Open a TCP connection with [`CONNECT_TIMEOUT`], with errors that say what happened.
pub async fn connect_tcp(host: &str, port: u16) -> Result<TcpStream, BackendError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port))).await {
        Err(_) => Err(BackendError::Timeout {
            host: host.to_string(),
            port,
            secs: CONNECT_TIMEOUT.as_secs(),
        }),
        Ok(Err(e)) => Err(BackendError::Connect {
            host: host.to_string(),
            port,
            reason: match e.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    "connection refused (is the port right?)".to_string()
                }
                _ => e.to_string(),
            },
        }),
        Ok(Ok(stream)) => {
            // NOTE: small commands and their replies should not wait for Nagle.
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
    }
}

/// Run the TLS handshake over `stream`, verifying the server as `host`.
pub async fn handshake(
    stream: TcpStream,
    host: &str,
    trust: &TlsTrust,
) -> Result<TlsStream, BackendError> {
    let tls_err = |reason: String| BackendError::Tls {
        host: host.to_string(),
        reason,
    };
    let ca_pem = match &trust.ca_file {
        Some(path) => Some(
            std::fs::read(path)
                .map_err(|e| tls_err(format!("cannot read tls_ca_file {}: {e}", path.display())))?,
        ),
        None => None,
    };
    // NOTE: the pinned fingerprint replaces the chain and name checks; it is compared below
    // before a single byte of the session (let alone a password) is sent.
    let verify = trust.cert_sha256.is_none();
    let connecting = backend::connect(stream, host, ca_pem.as_deref(), verify);
    let tls = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Err(_) => {
            return Err(tls_err(format!(
                "no tls handshake within {} s",
                CONNECT_TIMEOUT.as_secs()
            )));
        }
        Ok(Err(Failure::BadCaFile(e))) => {
            return Err(tls_err(format!(
                "tls_ca_file {} is not a PEM certificate: {}",
                trust
                    .ca_file
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                crate::sanitize::line(&e)
            )));
        }
        Ok(Err(Failure::Handshake(e))) => return Err(tls_err(describe_tls_error(&e))),
        Ok(Ok(tls)) => tls,
    };
    if let Some(pin) = &trust.cert_sha256 {
        let der = peer_certificate_der(&tls)
            .ok_or_else(|| tls_err("the server sent no certificate".into()))?;
        let got: [u8; 32] = Sha256::digest(&der).into();
        if &got != pin {
            return Err(tls_err(format!(
                "the server's certificate ({}) is not the one trusted by tls_cert_sha256",
                fingerprint_hex(&got)
            )));
        }
    }
    Ok(tls)
}

/// A handshake that accepts any certificate, for showing the user what a server presents.
/// Nothing may be sent over it but what a certificate check needs.
pub async fn handshake_unverified(stream: TcpStream, host: &str) -> Result<TlsStream, String> {
    match backend::connect(stream, host, None, false).await {
        Ok(tls) => Ok(tls),
        Err(Failure::Handshake(e) | Failure::BadCaFile(e)) => {
            Err(format!("tls failed: {}", crate::sanitize::line(&e)))
        }
    }
}

/// The DER bytes of the certificate the server presented.
pub fn peer_certificate_der(tls: &TlsStream) -> Option<Vec<u8>> {
    backend::peer_certificate_der(tls)
}

/// Turn OpenSSL's message into something a user can act on.
fn describe_tls_error(raw: &str) -> String {
    let lower = raw.to_lowercase();
    let hint = if lower.contains("self-signed") || lower.contains("self signed") {
        "the certificate is self-signed and not trusted: set tls_ca_file or tls_cert_sha256"
    } else if lower.contains("unable to get local issuer") {
        "the certificate's issuer is not trusted: set tls_ca_file to its CA"
    } else if lower.contains("expired") {
        "the certificate has expired"
    } else if lower.contains("hostname mismatch") || lower.contains("ip address mismatch") {
        "the certificate is for another host name"
    } else if lower.contains("wrong version number") || lower.contains("unexpected eof") {
        "the server did not speak tls on this port (check port and security)"
    } else {
        "certificate verification or handshake failed"
    };
    format!("{hint} ({})", crate::sanitize::line(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_in_any_spelling() {
        let fp: [u8; 32] = core::array::from_fn(|i| i as u8 * 7);
        let hex = fingerprint_hex(&fp);
        assert_eq!(parse_fingerprint(&hex), Some(fp));
        assert_eq!(
            parse_fingerprint(&hex.replace(':', "").to_lowercase()),
            Some(fp)
        );
        assert_eq!(parse_fingerprint("AB:CD"), None);
        assert_eq!(parse_fingerprint(&"zz".repeat(32)), None);
        assert_eq!(parse_fingerprint(&"é".repeat(32)), None);
    }

    #[test]
    fn tls_errors_get_a_hint() {
        assert!(
            describe_tls_error("certificate verify failed (self-signed certificate)")
                .starts_with("the certificate is self-signed")
        );
        assert!(describe_tls_error("wrong version number").contains("did not speak tls"));
    }
}

/// A connection that is either plain TCP or TLS over TCP (after implicit TLS or STARTTLS).
#[derive(Debug)]
pub enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
    /// The stream was taken away (for a STARTTLS handshake); reading or writing fails.
    Detached,
}

impl Transport {
    /// Take the plain TCP stream out for a STARTTLS handshake; `None` if already TLS.
    pub fn take_plain(&mut self) -> Option<TcpStream> {
        match std::mem::replace(self, Transport::Detached) {
            Transport::Plain(tcp) => Some(tcp),
            other => {
                *self = other;
                None
            }
        }
    }
}

fn detached() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        "the connection was detached",
    )
}

impl tokio::io::AsyncRead for Transport {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
            Transport::Detached => std::task::Poll::Ready(Err(detached())),
        }
    }
}

impl tokio::io::AsyncWrite for Transport {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
            Transport::Detached => std::task::Poll::Ready(Err(detached())),
        }
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
            Transport::Detached => std::task::Poll::Ready(Err(detached())),
        }
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
            Transport::Detached => std::task::Poll::Ready(Ok(())),
        }
    }
}
