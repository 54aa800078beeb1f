//! TLS through the platform's own stack (Security.framework on macOS, SChannel on Windows),
//! by way of native-tls: there the system trust store is not a set of OpenSSL files.

use async_native_tls::{Certificate, TlsConnector};
use tokio::net::TcpStream;

use super::Failure;

/// An established TLS session over TCP.
pub type TlsStream = async_native_tls::TlsStream<TcpStream>;

/// Run a client handshake; see `super::openssl::connect` for the meaning of the arguments.
pub async fn connect(
    tcp: TcpStream,
    host: &str,
    ca_pem: Option<&[u8]>,
    verify: bool,
) -> Result<TlsStream, Failure> {
    let mut connector = TlsConnector::new();
    if let Some(pem) = ca_pem {
        // NOTE: every certificate in the file, as on Linux (`from_pem` takes only the first).
        let certs =
            Certificate::stack_from_pem(pem).map_err(|e| Failure::BadCaFile(e.to_string()))?;
        if certs.is_empty() {
            return Err(Failure::BadCaFile("no certificate in it".into()));
        }
        for cert in certs {
            connector = connector.add_root_certificate(cert);
        }
    }
    if !verify {
        connector = connector
            .danger_accept_invalid_certs(true)
            .danger_accept_invalid_hostnames(true);
    }
    connector
        .connect(host, tcp)
        .await
        .map_err(|e| Failure::Handshake(e.to_string()))
}

/// The DER bytes of the server's certificate.
pub fn peer_certificate_der(tls: &TlsStream) -> Option<Vec<u8>> {
    tls.peer_certificate()
        .ok()
        .flatten()
        .and_then(|c| c.to_der().ok())
}
