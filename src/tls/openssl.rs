//! TLS through OpenSSL directly (Linux and the other Unix systems whose trust store is OpenSSL's).
//!
//! Why not native-tls here: its connector has OpenSSL parse the whole system CA bundle twice
//! (`SSL_CTX_set_default_verify_paths`, then openssl-probe's file), 80–100 ms on the project's
//! machine, on every connection. This module builds one context per process and trust setting,
//! and finds the system CAs through OpenSSL's hashed certificate directory, which loads only the
//! certificates a handshake actually needs. The bundle file is loaded as well (once per
//! process) unless it lies in a hashed directory that covers it. The checks are those of
//! `openssl::ssl::SslConnector`: peer verification, host name (or IP address) verification
//! without partial wildcards, SNI, TLS 1.2 or newer, and the same cipher list.

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
#[derive(Debug, Default, PartialEq, Eq)]
struct SystemRoots {
    /// Hashed directories (`c_rehash` / `update-ca-certificates` layout), loaded on demand.
    dirs: Vec<PathBuf>,
    /// A bundle file, loaded whole: one that no hashed directory is known to cover.
    file: Option<PathBuf>,
}

fn system_roots() -> &'static SystemRoots {
    static ROOTS: OnceLock<SystemRoots> = OnceLock::new();
    ROOTS.get_or_init(|| {
        // NOTE: openssl-probe honours SSL_CERT_FILE and SSL_CERT_DIR first, as OpenSSL does.
        let probe = openssl_probe::probe();
        choose_roots(probe.cert_file, probe.cert_dir)
    })
}

/// Trust every hashed directory and the bundle file, as OpenSSL's default paths do. The bundle
/// is left out only when it lies in a hashed directory that has a link for each of its
/// certificates: the layout `update-ca-certificates` and `c_rehash` write from one list. Any
/// other bundle (one SSL_CERT_FILE names elsewhere, say) is loaded, so a CA in only one of
/// them stays trusted.
fn choose_roots(file: Option<PathBuf>, mut dirs: Vec<PathBuf>) -> SystemRoots {
    // NOTE: SSL_CERT_DIR is often the system's directory, which the probe lists again.
    let mut seen = std::collections::HashSet::new();
    dirs.retain(|d| seen.insert(d.clone()));
    let dirs: Vec<(PathBuf, usize)> = dirs
        .into_iter()
        .map(|d| {
            let links = count_hash_links(&d);
            (d, links)
        })
        .filter(|(_, links)| *links > 0)
        .collect();
    let covered = |file: &PathBuf| {
        let certs = count_pem_certs(file);
        dirs.iter()
            .any(|(dir, links)| *links >= certs && lies_in(file, dir))
    };
    SystemRoots {
        file: file.filter(|f| !covered(f)),
        dirs: dirs.into_iter().map(|(d, _)| d).collect(),
    }
}

/// Whether `file` is in `dir`, as named or once symbolic links are resolved.
fn lies_in(file: &Path, dir: &Path) -> bool {
    let canonical = |p: &Path| std::fs::canonicalize(p).ok();
    file.parent() == Some(dir)
        || canonical(file).is_some_and(|f| f.parent().map(Path::to_path_buf) == canonical(dir))
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
        let roots = system_roots();
        if !roots.dirs.is_empty() {
            let lookup = store.add_lookup(X509Lookup::hash_dir()).map_err(ssl_err)?;
            for dir in &roots.dirs {
                if let Some(dir) = dir.to_str() {
                    lookup.add_dir(dir, SslFiletype::PEM).map_err(ssl_err)?;
                }
            }
        }
        if let Some(file) = &roots.file {
            let lookup = store.add_lookup(X509Lookup::file()).map_err(ssl_err)?;
            // NOTE: an unreadable bundle leaves the other roots, as OpenSSL's own default
            // paths would; the handshake then says which issuer is missing.
            let _ = lookup.load_cert_file(file, SslFiletype::PEM);
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
    fn the_bundle_is_skipped_only_when_a_hashed_directory_covers_it() {
        let pem = "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n";
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = |name: &str, links: usize| {
            let d = tmp.path().join(name);
            std::fs::create_dir(&d).expect("mkdir");
            for i in 0..links {
                std::fs::write(d.join(format!("0000000{i}.0")), pem).expect("write");
            }
            d
        };
        let (full, partial, empty) = (dir("full", 2), dir("partial", 1), dir("empty", 0));
        let bundle = |path: PathBuf| {
            std::fs::write(&path, pem.repeat(2)).expect("write");
            Some(path)
        };
        let system = bundle(full.join("ca-certificates.crt"));
        assert_eq!(
            choose_roots(system.clone(), vec![full.clone(), empty, full.clone()]),
            SystemRoots {
                dirs: vec![full.clone()],
                file: None
            },
            "the system's bundle, covered by its hashed directory"
        );
        let elsewhere = bundle(tmp.path().join("company.pem"));
        assert_eq!(
            choose_roots(elsewhere.clone(), vec![full.clone()]),
            SystemRoots {
                dirs: vec![full.clone()],
                file: elsewhere
            },
            "a bundle of its own (SSL_CERT_FILE) is loaded beside the directory"
        );
        let uncovered = bundle(partial.join("ca-certificates.crt"));
        assert_eq!(
            choose_roots(uncovered.clone(), vec![partial.clone()]),
            SystemRoots {
                dirs: vec![partial],
                file: uncovered
            },
            "a CA with no hash link is still trusted, and so is the directory"
        );
    }

    #[test]
    fn a_bad_ca_file_is_reported_not_panicked_on() {
        assert!(matches!(
            context(Some(b"not a certificate"), true),
            Err(Failure::BadCaFile(_))
        ));
    }
}
