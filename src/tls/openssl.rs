//! TLS through OpenSSL directly (Linux and the other Unix systems whose trust store is OpenSSL's).
//!
//! Why not native-tls here: its connector has OpenSSL parse the whole system CA bundle twice
//! (`SSL_CTX_set_default_verify_paths`, then openssl-probe's file), 80–100 ms on the project's
//! machine, on every connection. This module builds one context per process and trust setting,
//! and finds the system CAs through OpenSSL's hashed certificate directory, which loads only the
//! certificates a handshake actually needs. Where no complete hashed directory exists it loads
//! the bundle file, once per process. The checks are those of `openssl::ssl::SslConnector`:
//! peer verification, host name (or IP address) verification without partial wildcards, SNI,
//! TLS 1.2 or newer, and the same cipher list.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Mutex, OnceLock};

use openssl::ssl::{
    Ssl, SslContext, SslContextBuilder, SslFiletype, SslMethod, SslMode, SslOptions, SslVerifyMode,
    SslVersion,
};
use openssl::x509::store::{X509Lookup, X509StoreBuilder};
use openssl::x509::verify::X509CheckFlags;
use openssl::x509::{X509, X509VerifyResult};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;

use super::Failure;

/// An established TLS session over TCP.
pub type TlsStream = tokio_openssl::SslStream<TcpStream>;

/// The cipher list `openssl::ssl::SslConnector` uses.
const CIPHERS: &str = "DEFAULT:!aNULL:!eNULL:!MD5:!3DES:!DES:!RC4:!IDEA:!SEED:!aDSS:!SRP:!PSK";

/// Where the system's CAs are, decided once per process.
#[derive(Debug)]
enum SystemRoots {
    /// Hashed directories (`c_rehash` / `update-ca-certificates` layout), loaded on demand.
    Dirs(Vec<PathBuf>),
    /// A bundle file, loaded whole.
    File(PathBuf),
    /// Nothing found: only `tls_ca_file` and pinned certificates can be trusted.
    None,
}

fn system_roots() -> &'static SystemRoots {
    static ROOTS: OnceLock<SystemRoots> = OnceLock::new();
    ROOTS.get_or_init(|| {
        // NOTE: openssl-probe honours SSL_CERT_FILE and SSL_CERT_DIR first, as OpenSSL does.
        let probe = openssl_probe::probe();
        let bundle_certs = probe.cert_file.as_deref().map(count_pem_certs);
        let dirs: Vec<PathBuf> = probe
            .cert_dir
            .into_iter()
            .filter(|d| {
                let links = count_hash_links(d);
                // NOTE: a hashed directory is used only when it covers the bundle: a CA that is
                // in the bundle but has no hash link would otherwise stop being trusted.
                links > 0 && bundle_certs.is_none_or(|n| links >= n)
            })
            .collect();
        if !dirs.is_empty() {
            SystemRoots::Dirs(dirs)
        } else if let Some(file) = probe.cert_file {
            SystemRoots::File(file)
        } else {
            SystemRoots::None
        }
    })
}

/// How many certificates a PEM bundle holds (0 when it cannot be read).
fn count_pem_certs(path: &Path) -> usize {
    std::fs::read(path)
        .map(|pem| {
            pem.windows(27)
                .filter(|w| *w == b"-----BEGIN CERTIFICATE-----")
                .count()
        })
        .unwrap_or(0)
}

/// How many `XXXXXXXX.N` hash links a directory holds.
fn count_hash_links(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| is_hash_name(&e.file_name().to_string_lossy()))
        .count()
}

fn is_hash_name(name: &str) -> bool {
    match name.split_once('.') {
        Some((hash, n)) => {
            hash.len() == 8
                && hash.bytes().all(|b| b.is_ascii_hexdigit())
                && !n.is_empty()
                && n.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

fn ssl_err(e: openssl::error::ErrorStack) -> Failure {
    Failure::Handshake(e.to_string())
}

/// Build a client context: system CAs plus `extra`, verifying the peer when `verify` is set.
fn build_context(extra: &[X509], verify: bool) -> Result<SslContext, Failure> {
    let mut ctx = SslContextBuilder::new(SslMethod::tls_client()).map_err(ssl_err)?;
    let mut opts =
        SslOptions::ALL | SslOptions::NO_COMPRESSION | SslOptions::NO_SSLV2 | SslOptions::NO_SSLV3;
    opts &= !SslOptions::DONT_INSERT_EMPTY_FRAGMENTS;
    ctx.set_options(opts);
    ctx.set_mode(
        SslMode::AUTO_RETRY
            | SslMode::ACCEPT_MOVING_WRITE_BUFFER
            | SslMode::ENABLE_PARTIAL_WRITE
            | SslMode::RELEASE_BUFFERS,
    );
    ctx.set_cipher_list(CIPHERS).map_err(ssl_err)?;
    ctx.set_min_proto_version(Some(SslVersion::TLS1_2))
        .map_err(ssl_err)?;
    if verify {
        ctx.set_verify(SslVerifyMode::PEER);
        let mut store = X509StoreBuilder::new().map_err(ssl_err)?;
        match system_roots() {
            SystemRoots::Dirs(dirs) => {
                let lookup = store.add_lookup(X509Lookup::hash_dir()).map_err(ssl_err)?;
                for dir in dirs {
                    if let Some(dir) = dir.to_str() {
                        lookup.add_dir(dir, SslFiletype::PEM).map_err(ssl_err)?;
                    }
                }
            }
            SystemRoots::File(file) => {
                let lookup = store.add_lookup(X509Lookup::file()).map_err(ssl_err)?;
                // NOTE: an unreadable bundle leaves only the extra certificates, as OpenSSL's
                // own default paths would; the handshake then says which issuer is missing.
                let _ = lookup.load_cert_file(file, SslFiletype::PEM);
            }
            SystemRoots::None => {}
        }
        for cert in extra {
            store.add_cert(cert.clone()).map_err(ssl_err)?;
        }
        ctx.set_cert_store(store.build());
    } else {
        ctx.set_verify(SslVerifyMode::NONE);
    }
    Ok(ctx.build())
}

/// The context for one trust setting, built once per process.
fn context(ca_pem: Option<&[u8]>, verify: bool) -> Result<SslContext, Failure> {
    type Key = (Option<[u8; 32]>, bool);
    static CONTEXTS: OnceLock<Mutex<HashMap<Key, SslContext>>> = OnceLock::new();
    let key: Key = (ca_pem.map(|p| Sha256::digest(p).into()), verify);
    let contexts = CONTEXTS.get_or_init(Default::default);
    if let Some(ctx) = contexts.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return Ok(ctx);
    }
    let extra = match ca_pem {
        Some(pem) => match X509::stack_from_pem(pem) {
            Ok(certs) if !certs.is_empty() => certs,
            Ok(_) => return Err(Failure::BadCaFile("no certificate in it".into())),
            Err(e) => return Err(Failure::BadCaFile(e.to_string())),
        },
        None => Vec::new(),
    };
    let ctx = build_context(&extra, verify)?;
    if let Ok(mut m) = contexts.lock() {
        m.insert(key, ctx.clone());
    }
    Ok(ctx)
}

/// Run a client handshake. With `verify`, the chain is checked against the system CAs and
/// `ca_pem`, and the certificate must name `host`; without, any certificate is accepted (for
/// pinning by fingerprint, or for showing a certificate to the user).
pub async fn connect(
    tcp: TcpStream,
    host: &str,
    ca_pem: Option<&[u8]>,
    verify: bool,
) -> Result<TlsStream, Failure> {
    let ctx = context(ca_pem, verify)?;
    let mut ssl = Ssl::new(&ctx).map_err(ssl_err)?;
    let ip = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .ok();
    if ip.is_none() {
        ssl.set_hostname(host).map_err(ssl_err)?;
    }
    if verify {
        let param = ssl.param_mut();
        param.set_hostflags(X509CheckFlags::NO_PARTIAL_WILDCARDS);
        match ip {
            Some(ip) => param.set_ip(ip).map_err(ssl_err)?,
            None => param.set_host(host).map_err(ssl_err)?,
        }
    }
    let mut stream = tokio_openssl::SslStream::new(ssl, tcp).map_err(ssl_err)?;
    if let Err(e) = Pin::new(&mut stream).connect().await {
        let verdict = stream.ssl().verify_result();
        let mut reason = e.to_string();
        if verdict != X509VerifyResult::OK {
            reason.push_str(&format!(" ({})", verdict.error_string()));
        }
        return Err(Failure::Handshake(reason));
    }
    Ok(stream)
}

/// The DER bytes of the server's certificate.
pub fn peer_certificate_der(tls: &TlsStream) -> Option<Vec<u8>> {
    tls.ssl().peer_certificate().and_then(|c| c.to_der().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_names_are_recognised() {
        assert!(is_hash_name("002c0b4f.0"));
        assert!(is_hash_name("ABCDEF01.12"));
        assert!(!is_hash_name("ca-certificates.crt"));
        assert!(!is_hash_name("002c0b4f."));
        assert!(!is_hash_name("002c0b4.0"));
        assert!(!is_hash_name("002c0b4g.0"));
    }

    #[test]
    fn bundle_certificates_are_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("b.pem");
        std::fs::write(
            &path,
            "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n\
             -----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        assert_eq!(count_pem_certs(&path), 2);
        assert_eq!(count_pem_certs(&dir.path().join("missing")), 0);
    }

    #[test]
    fn a_bad_ca_file_is_reported_not_panicked_on() {
        assert!(matches!(
            context(Some(b"not a certificate"), true),
            Err(Failure::BadCaFile(_))
        ));
    }
}
