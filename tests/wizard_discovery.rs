//! Discovery from every source against real local servers: an HTTPS server for autoconfig
//! (certificate made by the `openssl` CLI), a UDP DNS server answering SRV and MX records
//! (RFC 6186, RFC 1035), and the Dovecot harness for guessed host names; and the order
//! between the sources.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Dovecot;
use mailbag::config::{Protocol, Security};
use mailbag::tls::TlsTrust;
use mailbag::wizard::discover::{self, Discovery, Outcome, Step};
use mailbag::wizard::dns;
use mailbag::wizard::providers::ProviderDb;
use mailbag::wizard::{EmailAddress, Source};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A self-signed certificate for the test domain's web hosts, as PEM files and a PKCS#12.
struct WebCert {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    p12: Vec<u8>,
}

fn web_cert() -> WebCert {
    let dir = tempfile::tempdir().expect("tmp");
    let key = dir.path().join("key.pem");
    let cert = dir.path().join("cert.pem");
    let p12 = dir.path().join("id.p12");
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args([
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=autoconfig.example.test",
        ])
        .args([
            "-addext",
            "subjectAltName=DNS:autoconfig.example.test,DNS:example.test",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(
        ok.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let ok = Command::new("openssl")
        .args(["pkcs12", "-export", "-passout", "pass:test"])
        .arg("-in")
        .arg(&cert)
        .arg("-inkey")
        .arg(&key)
        .arg("-out")
        .arg(&p12)
        .output()
        .expect("run openssl");
    assert!(
        ok.status.success(),
        "openssl pkcs12: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    WebCert {
        p12: std::fs::read(&p12).expect("p12"),
        ca: cert,
        _dir: dir,
    }
}

/// A tiny HTTPS server: path prefix → raw HTTP response. Records the request targets.
async fn https_server(
    cert: &WebCert,
    routes: Vec<(&'static str, String)>,
) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let acceptor = async_native_tls::TlsAcceptor::new(&cert.p12[..], "test")
        .await
        .expect("acceptor");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let routes = routes.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&req).to_string();
                let target = text.split(' ').nth(1).unwrap_or("").to_string();
                let host = text
                    .lines()
                    .find_map(|l| l.strip_prefix("Host: "))
                    .unwrap_or("")
                    .to_string();
                log.lock().expect("lock").push(format!("{host}{target}"));
                let response = routes
                    .iter()
                    .find(|(prefix, _)| format!("{host}{target}").starts_with(prefix))
                    .map(|(_, r)| r.clone())
                    .unwrap_or_else(|| {
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_string()
                    });
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (addr, seen)
}

/// A UDP socket that never answers.
async fn silent_dns() -> (SocketAddr, tokio::net::UdpSocket) {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    (socket.local_addr().expect("addr"), socket)
}

fn ok_xml(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

const CONFIG_XML: &str = r#"<?xml version="1.0"?>
<clientConfig version="1.1">
  <emailProvider id="example.test">
    <displayName>Example Test Mail</displayName>
    <incomingServer type="pop3">
      <hostname>pop.example.test</hostname>
      <port>995</port>
      <socketType>SSL</socketType>
      <username>%EMAILLOCALPART%</username>
    </incomingServer>
    <incomingServer type="imap">
      <hostname>imap.example.test</hostname>
      <port>993</port>
      <socketType>SSL</socketType>
      <username>%EMAILADDRESS%</username>
    </incomingServer>
  </emailProvider>
</clientConfig>"#;

fn email() -> EmailAddress {
    EmailAddress::parse("alice@example.test").expect("address")
}

/// A discovery that reaches only the local servers.
fn offline(ca: &Path) -> Discovery {
    Discovery {
        offline: true,
        trust: TlsTrust {
            ca_file: Some(ca.to_path_buf()),
            cert_sha256: None,
        },
        dns_timeout: Duration::from_secs(2),
        ..Discovery::default()
    }
}

fn web_hosts(addr: SocketAddr) -> HashMap<(String, u16), SocketAddr> {
    HashMap::from([
        (("autoconfig.example.test".to_string(), 443), addr),
        (("example.test".to_string(), 443), addr),
    ])
}

#[tokio::test]
async fn autoconfig_over_local_https() {
    let cert = web_cert();
    let (addr, seen) = https_server(
        &cert,
        vec![(
            "autoconfig.example.test/mail/config-v1.1.xml?emailaddress=alice%40example.test",
            ok_xml(CONFIG_XML),
        )],
    )
    .await;
    let d = Discovery {
        hosts: web_hosts(addr),
        ..offline(&cert.ca)
    };
    let (found, notes) = discover::from_autoconfig(&email(), &d).await;
    assert_eq!(found.len(), 2, "{notes:?}");
    let pop = &found[0];
    assert_eq!(
        (
            pop.protocol,
            pop.host.as_str(),
            pop.port,
            pop.security,
            pop.username.as_str()
        ),
        (
            Protocol::Pop3,
            "pop.example.test",
            995,
            Security::Tls,
            "alice"
        )
    );
    assert!(
        matches!(&pop.source, Source::Autoconfig { url } if url.starts_with("https://autoconfig.example.test/"))
    );
    assert_eq!(pop.provider.as_deref(), Some("Example Test Mail"));
    assert_eq!(seen.lock().expect("lock").len(), 1);

    // Through `discover`, IMAP is put first.
    let d = Discovery {
        use_bundled: false,
        use_dns: false,
        use_guess: false,
        ..d
    };
    let all = discover::discover(&email(), &d).await;
    assert_eq!(
        all.candidates.first().map(|c| c.protocol),
        Some(Protocol::Imap)
    );
}

#[tokio::test]
async fn autoconfig_falls_back_to_well_known_and_follows_redirects() {
    let cert = web_cert();
    let (addr, seen) = https_server(
        &cert,
        vec![
            ("autoconfig.example.test/", "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n".to_string()),
            (
                "example.test/.well-known/autoconfig/mail/config-v1.1.xml",
                "HTTP/1.1 302 Found\r\nLocation: /moved.xml\r\nContent-Length: 0\r\n\r\n".to_string(),
            ),
            (
                "example.test/moved.xml",
                format!(
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{CONFIG_XML}\r\n0\r\n\r\n",
                    CONFIG_XML.len()
                ),
            ),
        ],
    )
    .await;
    let d = Discovery {
        hosts: web_hosts(addr),
        ..offline(&cert.ca)
    };
    let (found, notes) = discover::from_autoconfig(&email(), &d).await;
    assert_eq!(found.len(), 2, "{notes:?}");
    assert!(notes[0].contains("HTTP 500"), "{notes:?}");
    assert!(
        matches!(&found[0].source, Source::Autoconfig { url } if url.contains("/.well-known/")),
        "{:?}",
        found[0].source
    );
    assert_eq!(seen.lock().expect("lock").len(), 3);
}

#[tokio::test]
async fn malformed_autoconfig_xml_gives_a_clear_message() {
    let cert = web_cert();
    let broken =
        "<clientConfig>\n<emailProvider>\n<incomingServer type=\"imap\">\n</emailProvider>";
    let (addr, _) = https_server(&cert, vec![("autoconfig.example.test/", ok_xml(broken))]).await;
    let d = Discovery {
        hosts: web_hosts(addr),
        use_bundled: false,
        use_dns: false,
        use_guess: false,
        ..offline(&cert.ca)
    };
    let found = discover::discover(&email(), &d).await;
    assert!(found.candidates.is_empty());
    let report = found
        .reports
        .iter()
        .find(|r| r.step == Step::Autoconfig)
        .expect("report");
    let Outcome::Nothing(notes) = &report.outcome else {
        panic!("{report:?}");
    };
    assert!(
        notes[0].contains(
            "the autoconfig file is not valid XML: line 4: </emailProvider> closes <incomingServer>"
        ),
        "{notes:?}"
    );
}

#[tokio::test]
async fn autoconfig_from_an_untrusted_server_is_refused() {
    let cert = web_cert();
    let (addr, seen) = https_server(
        &cert,
        vec![("autoconfig.example.test/", ok_xml(CONFIG_XML))],
    )
    .await;
    let d = Discovery {
        hosts: web_hosts(addr),
        trust: TlsTrust::default(),
        ..offline(&cert.ca)
    };
    let (found, notes) = discover::from_autoconfig(&email(), &d).await;
    assert!(found.is_empty());
    assert!(
        notes[0].contains("tls with autoconfig.example.test failed"),
        "{notes:?}"
    );
    assert!(
        seen.lock().expect("lock").is_empty(),
        "no request over an unverified link"
    );
}

fn srv(name: &str, prio: u16, weight: u16, port: u16, target: &str) -> (String, u16, Vec<u8>) {
    (
        name.to_string(),
        dns::TYPE_SRV,
        dns::srv_rdata(prio, weight, port, target),
    )
}

#[tokio::test]
async fn srv_records_from_a_local_dns_server() {
    let server = common::dns_server(vec![
        srv(
            "_imaps._tcp.example.test",
            20,
            0,
            993,
            "backup.example.test",
        ),
        srv("_imaps._tcp.example.test", 10, 1, 993, "light.example.test"),
        srv(
            "_imaps._tcp.example.test",
            10,
            50,
            993,
            "heavy.example.test",
        ),
        srv("_imap._tcp.example.test", 0, 0, 0, "."),
        srv("_pop3s._tcp.example.test", 0, 0, 995, "pop.example.test"),
    ]);
    let d = Discovery {
        nameserver: Some(server),
        offline: true,
        ..Discovery::default()
    };
    let (found, notes) = discover::from_dns(&email(), &d).await;
    let hosts: Vec<(&str, Security)> = found
        .iter()
        .map(|c| (c.host.as_str(), c.security))
        .collect();
    assert_eq!(
        hosts,
        [
            ("heavy.example.test", Security::Tls),
            ("light.example.test", Security::Tls),
            ("backup.example.test", Security::Tls),
            ("pop.example.test", Security::Tls),
        ]
    );
    assert!(
        matches!(&found[0].source, Source::Srv { record } if record == "_imaps._tcp.example.test")
    );
    assert!(
        notes
            .iter()
            .any(|n| n
                .contains("_imap._tcp.example.test: the domain says this service is not offered")),
        "{notes:?}"
    );
}

#[tokio::test]
async fn mx_host_names_a_known_provider() {
    let server = common::dns_server(vec![
        (
            "example.test".into(),
            dns::TYPE_MX,
            dns::mx_rdata(20, "alt2.aspmx.l.google.com"),
        ),
        (
            "example.test".into(),
            dns::TYPE_MX,
            dns::mx_rdata(10, "aspmx.l.google.com"),
        ),
    ]);
    let d = Discovery {
        nameserver: Some(server),
        offline: true,
        use_bundled: false,
        use_autoconfig: false,
        use_guess: false,
        ..Discovery::default()
    };
    let found = discover::discover(&email(), &d).await;
    let first = found.candidates.first().expect("a candidate");
    assert_eq!(first.host, "imap.gmail.com");
    assert_eq!(first.provider.as_deref(), Some("Gmail"));
    assert_eq!(
        first.source,
        Source::Mx {
            host: "aspmx.l.google.com".into()
        }
    );
}

#[tokio::test]
async fn dns_timeout_gives_a_clear_message() {
    let (addr, _socket) = silent_dns().await;
    let d = Discovery {
        nameserver: Some(addr),
        dns_timeout: Duration::from_millis(300),
        offline: true,
        use_bundled: false,
        use_autoconfig: false,
        use_guess: false,
        ..Discovery::default()
    };
    let found = discover::discover(&email(), &d).await;
    assert!(found.candidates.is_empty());
    let Outcome::Nothing(notes) = &found.reports[2].outcome else {
        panic!("{:?}", found.reports);
    };
    let want =
        format!("no answer from the DNS server {addr} within 1 s for _imaps._tcp.example.test SRV");
    assert!(notes.iter().any(|n| n == &want), "{notes:?}");
    assert!(
        notes.iter().any(|n| n.contains("for example.test MX")),
        "{notes:?}"
    );
}

/// Guessed host names mapped onto the Dovecot harness's ports.
fn dovecot_hosts(d: &Dovecot) -> HashMap<(String, u16), SocketAddr> {
    let at = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    HashMap::from([
        (
            ("imap.example.test".to_string(), 993),
            at(d.imap_tls_port()),
        ),
        (
            ("imap.example.test".to_string(), 143),
            at(d.imap_plain_port()),
        ),
        (("pop.example.test".to_string(), 995), at(d.pop3_tls_port())),
        (
            ("pop3.example.test".to_string(), 110),
            at(d.pop3_plain_port()),
        ),
    ])
}

#[tokio::test]
async fn guessing_against_dovecot() {
    let Some(dovecot) = Dovecot::start() else {
        return;
    };
    let d = Discovery {
        hosts: dovecot_hosts(&dovecot),
        use_bundled: false,
        use_autoconfig: false,
        use_dns: false,
        ..offline(&dovecot.ca_path())
    };
    let found = discover::discover(&email(), &d).await;
    let got: Vec<(Protocol, &str, u16, Security)> = found
        .candidates
        .iter()
        .map(|c| (c.protocol, c.host.as_str(), c.port, c.security))
        .collect();
    assert_eq!(
        got,
        [
            (Protocol::Imap, "imap.example.test", 993, Security::Tls),
            (Protocol::Imap, "imap.example.test", 143, Security::Starttls),
            (Protocol::Pop3, "pop.example.test", 995, Security::Tls),
            (Protocol::Pop3, "pop3.example.test", 110, Security::Starttls),
        ]
    );
    assert!(found.candidates.iter().all(|c| c.source == Source::Guess));
    // The harness certificate is for localhost, so it does not match the guessed names:
    // found, but marked for the user to decide.
    assert!(
        found
            .candidates
            .iter()
            .all(|c| c.notes.iter().any(|n| n.contains("not trusted"))),
        "{:?}",
        found.candidates
    );
}

/// Every source at once: bundled (a database that knows example.test), autoconfig, SRV and
/// guesses, in that order; and by default only the first that finds something.
#[tokio::test]
async fn sources_come_in_order() {
    let Some(dovecot) = Dovecot::start() else {
        return;
    };
    let cert = web_cert();
    let (web, _) = https_server(
        &cert,
        vec![("autoconfig.example.test/", ok_xml(CONFIG_XML))],
    )
    .await;
    let server = common::dns_server(vec![srv(
        "_imaps._tcp.example.test",
        0,
        0,
        993,
        "srv.example.test",
    )]);
    let db = ProviderDb::parse(
        "[[provider]]\nid='t'\nname='Test'\ndomains=['example.test']\n\
         [[provider.server]]\nprotocol='imap'\nhost='bundled.example.test'\nport=993\n\
         security='tls'\nusername='%EMAILADDRESS%'\n",
    )
    .expect("db");
    let mut hosts = dovecot_hosts(&dovecot);
    hosts.extend(web_hosts(web));
    // NOTE: autoconfig needs the web CA, guessing the Dovecot one; the web CA is the trust
    // anchor here, so the guesses are found with an untrusted certificate (see above).
    let d = Discovery {
        providers: db,
        nameserver: Some(server),
        hosts,
        all_sources: true,
        ..offline(&cert.ca)
    };
    let found = discover::discover(&email(), &d).await;
    let labels: Vec<&str> = found.candidates.iter().map(|c| c.source.label()).collect();
    let firsts: Vec<&str> = {
        let mut v: Vec<&str> = Vec::new();
        for l in &labels {
            if v.last() != Some(l) {
                v.push(l);
            }
        }
        v
    };
    assert_eq!(
        firsts,
        ["bundled", "autoconfig", "dns-srv", "guess"],
        "{labels:?}"
    );
    assert!(
        found
            .reports
            .iter()
            .all(|r| matches!(r.outcome, Outcome::Found(_))),
        "{:?}",
        found.reports
    );

    let first_only = discover::discover(
        &email(),
        &Discovery {
            all_sources: false,
            ..d.clone()
        },
    )
    .await;
    assert!(
        first_only
            .candidates
            .iter()
            .all(|c| c.source == Source::Bundled)
    );
    let outcomes: Vec<&Outcome> = first_only.reports.iter().map(|r| &r.outcome).collect();
    assert_eq!(
        outcomes,
        [
            &Outcome::Found(1),
            &Outcome::Skipped,
            &Outcome::Skipped,
            &Outcome::Skipped
        ]
    );

    let no_bundled = discover::discover(
        &email(),
        &Discovery {
            all_sources: false,
            use_bundled: false,
            ..d
        },
    )
    .await;
    assert!(
        no_bundled
            .candidates
            .iter()
            .all(|c| c.source.label() == "autoconfig")
    );
}

/// A DNS server that answers every UDP query truncated (TC bit) and the full answer over
/// TCP on the same port (RFC 7766), when `tcp` is set.
async fn truncating_dns(records: Vec<(String, u16, Vec<u8>)>, tcp: bool) -> SocketAddr {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = socket.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let reply = dns::build_reply(&buf[..n], 0, true, &[]);
            let _ = socket.send_to(&reply, from).await;
        }
    });
    if tcp {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind tcp");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let records = records.clone();
                tokio::spawn(async move {
                    let mut len = [0u8; 2];
                    if s.read_exact(&mut len).await.is_err() {
                        return;
                    }
                    let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    if s.read_exact(&mut q).await.is_err() {
                        return;
                    }
                    let Some((name, qtype)) = dns::question(&q) else {
                        return;
                    };
                    let answers: Vec<_> = records
                        .iter()
                        .filter(|(n, t, _)| *n == name && *t == qtype)
                        .cloned()
                        .collect();
                    let rcode = if answers.is_empty() { 3 } else { 0 };
                    let reply = dns::build_reply(&q, rcode, false, &answers);
                    let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
                    framed.extend_from_slice(&reply);
                    let _ = s.write_all(&framed).await;
                });
            }
        });
    }
    addr
}

#[tokio::test]
async fn truncated_dns_answers_are_asked_again_over_tcp() {
    let records = vec![srv(
        "_imaps._tcp.example.test",
        0,
        0,
        993,
        "imap.example.test",
    )];
    let server = truncating_dns(records.clone(), true).await;
    let d = Discovery {
        nameserver: Some(server),
        offline: true,
        ..Discovery::default()
    };
    let (found, notes) = discover::from_dns(&email(), &d).await;
    assert_eq!(found.len(), 1, "{notes:?}");
    assert_eq!(found[0].host, "imap.example.test");

    let server = truncating_dns(records, false).await;
    let d = Discovery {
        nameserver: Some(server),
        offline: true,
        ..Discovery::default()
    };
    let (found, notes) = discover::from_dns(&email(), &d).await;
    assert!(found.is_empty());
    assert!(
        notes
            .iter()
            .any(|n| n.contains("_imaps._tcp.example.test SRV was truncated and TCP failed")),
        "{notes:?}"
    );
}
