//! Discovery: from an email address to candidate server settings, each tagged with its source.
//!
//! The sources are tried in this order, each with a short timeout:
//!
//! 1. the bundled provider database ([`super::providers`]), by domain;
//! 2. the domain's autoconfig file over HTTPS ([`super::autoconfig`]);
//! 3. DNS: SRV records per RFC 6186 §3 (`_imaps._tcp`, `_imap._tcp`, `_pop3s._tcp`,
//!    `_pop3._tcp`), and the domain's MX host as a hint that names a known provider;
//! 4. guesses: `imap.`, `pop.`, `pop3.`, `mail.` + domain on the standard ports, probed in
//!    parallel ([`super::probe`]), implicit TLS (RFC 8314) before STARTTLS.
//!
//! By default discovery stops at the first source that finds something, as a source earlier
//! in the list is more trustworthy and faster; [`Discovery::all_sources`] runs them all (for
//! `mailbag setup --discover --all` and for tests). Every source's outcome is kept in a
//! [`SourceReport`], so a user can see why something was not found.
//!
//! [`Discovery`] lets tests point every network step at local servers: a DNS server on a
//! loopback port, an HTTPS server trusted through a CA file, and a host/port map for
//! connections, with `offline` refusing anything not in the map.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use futures::future::join_all;
use tokio::net::TcpStream;

use super::dns::{self, Record};
use super::providers::ProviderDb;
use super::{Candidate, EmailAddress, Source, autoconfig, http, probe};
use crate::config::{Protocol, Security};
use crate::tls::TlsTrust;

/// How discovery runs: timeouts, servers, and what tests redirect.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// The provider database (the bundled one by default).
    pub providers: ProviderDb,
    /// Which sources to ask.
    pub use_bundled: bool,
    pub use_autoconfig: bool,
    pub use_dns: bool,
    pub use_guess: bool,
    /// Ask every source even after one found something.
    pub all_sources: bool,
    /// The DNS server; `None` reads `/etc/resolv.conf`.
    pub nameserver: Option<SocketAddr>,
    /// Per DNS query.
    pub dns_timeout: Duration,
    /// Per autoconfig URL (connect, TLS, request, body).
    pub http_timeout: Duration,
    /// Per guessed host and port.
    pub probe_timeout: Duration,
    /// Extra trust for HTTPS and probes (a test CA).
    pub trust: TlsTrust,
    /// Connect to this address instead of resolving `(host, port)`.
    pub hosts: HashMap<(String, u16), SocketAddr>,
    /// Refuse every connection not listed in `hosts` (tests without a network).
    pub offline: bool,
}

impl Default for Discovery {
    fn default() -> Self {
        Discovery {
            providers: ProviderDb::bundled().unwrap_or(ProviderDb {
                providers: Vec::new(),
            }),
            use_bundled: true,
            use_autoconfig: true,
            use_dns: true,
            use_guess: true,
            all_sources: false,
            nameserver: None,
            dns_timeout: Duration::from_secs(3),
            http_timeout: Duration::from_secs(6),
            probe_timeout: Duration::from_secs(6),
            trust: TlsTrust::default(),
            hosts: HashMap::new(),
            offline: false,
        }
    }
}

impl Discovery {
    /// Opens a TCP connection to `host:port`, honouring [`Discovery::hosts`] and `offline`.
    pub async fn connect(&self, host: &str, port: u16) -> Result<TcpStream, String> {
        let key = (host.to_ascii_lowercase(), port);
        match self.hosts.get(&key) {
            Some(addr) => TcpStream::connect(addr)
                .await
                .map_err(|e| format!("cannot connect to {host}:{port}: {}", io_reason(&e))),
            None if self.offline => Err(format!(
                "cannot connect to {host}:{port}: not reachable in offline mode"
            )),
            None => crate::tls::connect_tcp(host, port)
                .await
                .map_err(|e| e.to_string()),
        }
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        _ => e.to_string(),
    }
}

/// The steps of discovery, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Bundled,
    Autoconfig,
    Dns,
    Guess,
}

impl Step {
    /// A short label for the step.
    pub fn label(self) -> &'static str {
        match self {
            Step::Bundled => "bundled provider list",
            Step::Autoconfig => "autoconfig",
            Step::Dns => "DNS SRV and MX",
            Step::Guess => "guessing host names",
        }
    }
}

/// How one step went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It found this many candidates.
    Found(usize),
    /// It ran and found nothing; the lines say what was tried.
    Nothing(Vec<String>),
    /// It was not run (disabled, or an earlier step already found settings).
    Skipped,
}

/// One step's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceReport {
    pub step: Step,
    pub outcome: Outcome,
}

/// What discovery found.
#[derive(Debug, Clone, Default)]
pub struct Discovered {
    /// The candidates, best first within each source, sources in discovery order.
    pub candidates: Vec<Candidate>,
    /// One report per step, in order.
    pub reports: Vec<SourceReport>,
}

impl Discovered {
    /// The first candidate for `protocol` that is not OAuth2-only, if any.
    pub fn best(&self, protocol: Protocol) -> Option<&Candidate> {
        self.candidates
            .iter()
            .find(|c| c.protocol == protocol && !c.oauth2)
    }

    /// Whether IMAP is among the candidates (the wizard then recommends it).
    pub fn has(&self, protocol: Protocol) -> bool {
        self.candidates.iter().any(|c| c.protocol == protocol)
    }
}

/// Runs discovery for `email`.
pub async fn discover(email: &EmailAddress, d: &Discovery) -> Discovered {
    let mut found = Discovered::default();
    for step in [Step::Bundled, Step::Autoconfig, Step::Dns, Step::Guess] {
        let enabled = match step {
            Step::Bundled => d.use_bundled,
            Step::Autoconfig => d.use_autoconfig,
            Step::Dns => d.use_dns,
            Step::Guess => d.use_guess,
        };
        if !enabled || (!d.all_sources && !found.candidates.is_empty()) {
            found.reports.push(SourceReport {
                step,
                outcome: Outcome::Skipped,
            });
            continue;
        }
        let (mut candidates, notes) = match step {
            Step::Bundled => bundled(email, d),
            Step::Autoconfig => from_autoconfig(email, d).await,
            Step::Dns => from_dns(email, d).await,
            Step::Guess => guess(email, d).await,
        };
        order(&mut candidates);
        found.reports.push(SourceReport {
            step,
            outcome: if candidates.is_empty() {
                Outcome::Nothing(notes)
            } else {
                Outcome::Found(candidates.len())
            },
        });
        found.candidates.extend(candidates);
    }
    found
}

/// IMAP first (the wizard recommends it), then encrypted before unencrypted; otherwise the
/// source's own order is kept (the sort is stable).
fn order(c: &mut [Candidate]) {
    c.sort_by_key(|c| (c.protocol == Protocol::Pop3, c.security == Security::None));
}

/// Step 1: the bundled database, by domain.
pub fn bundled(email: &EmailAddress, d: &Discovery) -> (Vec<Candidate>, Vec<String>) {
    match d.providers.by_domain(&email.domain) {
        Some(p) => (p.candidates(email, &Source::Bundled), Vec::new()),
        None => (
            Vec::new(),
            vec![format!("{} is not in the bundled list", email.domain)],
        ),
    }
}

/// Step 2: the two autoconfig URLs, in order; the first that gives servers wins.
pub async fn from_autoconfig(email: &EmailAddress, d: &Discovery) -> (Vec<Candidate>, Vec<String>) {
    let mut notes = Vec::new();
    for url in autoconfig::urls(email) {
        match http::get(d, &url, d.http_timeout).await {
            Ok(body) => match autoconfig::parse(&body, email, &url) {
                Ok(c) => return (c, notes),
                Err(e) => notes.push(format!("{url}: {e}")),
            },
            Err(e) => notes.push(format!("{url}: {e}")),
        }
    }
    (Vec::new(), notes)
}

/// The SRV services of RFC 6186 §3.1 and §3.2, in the order they are offered.
const SERVICES: [(&str, Protocol, Security); 4] = [
    ("_imaps._tcp", Protocol::Imap, Security::Tls),
    ("_imap._tcp", Protocol::Imap, Security::Starttls),
    ("_pop3s._tcp", Protocol::Pop3, Security::Tls),
    ("_pop3._tcp", Protocol::Pop3, Security::Starttls),
];

/// Step 3: SRV records, then the MX host as a hint.
pub async fn from_dns(email: &EmailAddress, d: &Discovery) -> (Vec<Candidate>, Vec<String>) {
    let server = match d.nameserver {
        Some(s) => s,
        None => match dns::system_nameserver() {
            Ok(s) => s,
            Err(e) => return (Vec::new(), vec![e]),
        },
    };
    let mut notes = Vec::new();
    let srv_names: Vec<String> = SERVICES
        .iter()
        .map(|(svc, _, _)| format!("{svc}.{}", email.domain))
        .collect();
    let srv_queries = srv_names
        .iter()
        .map(|name| dns::query(server, name, dns::TYPE_SRV, d.dns_timeout));
    let mx_query = dns::query(server, &email.domain, dns::TYPE_MX, d.dns_timeout);
    let (srv_answers, mx_answer) = futures::join!(join_all(srv_queries), mx_query);

    let mut candidates = Vec::new();
    for ((name, answer), (_, protocol, security)) in srv_names.iter().zip(srv_answers).zip(SERVICES)
    {
        let mut records: Vec<dns::Srv> = match answer {
            Ok(records) => records
                .into_iter()
                .filter_map(|r| match r {
                    Record::Srv(s) => Some(s),
                    Record::Mx(_) => None,
                })
                .collect(),
            Err(e) => {
                notes.push(e);
                continue;
            }
        };
        // RFC 2782: lowest priority first; within a priority the heavier first.
        // NOTE: RFC 2782 picks by weighted chance; a fixed order gives the same preference and
        // shows the user the same list every time.
        records.sort_by_key(|r| (r.priority, std::cmp::Reverse(r.weight)));
        if records.is_empty() {
            notes.push(format!("{name}: no SRV record"));
        }
        for r in records {
            // RFC 6186 §3.4 / RFC 2782: target "." means the service is not offered.
            if r.target.is_empty() || r.port == 0 {
                notes.push(format!(
                    "{name}: the domain says this service is not offered"
                ));
                continue;
            }
            candidates.push(Candidate {
                source: Source::Srv {
                    record: name.clone(),
                },
                provider: None,
                protocol,
                host: r.target.to_ascii_lowercase(),
                port: r.port,
                security,
                username: email.address.clone(),
                oauth2: false,
                notes: Vec::new(),
            });
        }
    }
    if !candidates.is_empty() {
        return (candidates, notes);
    }
    match mx_answer {
        Ok(records) => {
            let mut mx: Vec<dns::Mx> = records
                .into_iter()
                .filter_map(|r| match r {
                    Record::Mx(m) => Some(m),
                    Record::Srv(_) => None,
                })
                .collect();
            mx.sort_by_key(|m| m.preference);
            match mx.iter().find_map(|m| {
                d.providers
                    .by_mx(&m.exchange)
                    .map(|p| (p, m.exchange.clone()))
            }) {
                Some((provider, host)) => {
                    return (provider.candidates(email, &Source::Mx { host }), notes);
                }
                None if mx.is_empty() => notes.push(format!("{}: no MX record", email.domain)),
                None => notes.push(format!(
                    "{}: the MX host {} is not a known provider",
                    email.domain,
                    mx.first().map(|m| m.exchange.as_str()).unwrap_or("")
                )),
            }
        }
        Err(e) => notes.push(e),
    }
    (Vec::new(), notes)
}

/// The guesses, in order of preference: implicit TLS first (RFC 8314 §3), then STARTTLS.
pub fn guesses(domain: &str) -> Vec<(String, u16, Protocol, Security)> {
    let mut out = Vec::new();
    for (prefixes, protocol, tls_port, starttls_port) in [
        (&["imap", "mail"][..], Protocol::Imap, 993, 143),
        (&["pop", "pop3", "mail"][..], Protocol::Pop3, 995, 110),
    ] {
        for (port, security) in [
            (tls_port, Security::Tls),
            (starttls_port, Security::Starttls),
        ] {
            for prefix in prefixes {
                out.push((format!("{prefix}.{domain}"), port, protocol, security));
            }
        }
    }
    out
}

/// Step 4: probe every guess in parallel; keep those that answered, in preference order.
pub async fn guess(email: &EmailAddress, d: &Discovery) -> (Vec<Candidate>, Vec<String>) {
    let list = guesses(&email.domain);
    let probes = list.iter().map(|(host, port, protocol, security)| {
        probe::probe(d, host, *port, *protocol, *security, d.probe_timeout)
    });
    let results = join_all(probes).await;
    let mut out = Vec::new();
    let mut notes = Vec::new();
    for ((host, port, protocol, security), result) in list.into_iter().zip(results) {
        match result {
            Ok(found) => {
                let mut c = Candidate {
                    source: Source::Guess,
                    provider: None,
                    protocol,
                    host,
                    port,
                    security,
                    username: email.address.clone(),
                    oauth2: false,
                    notes: Vec::new(),
                };
                if let Some(why) = found.untrusted {
                    c.notes.push(format!(
                        "The server's certificate is not trusted ({why}); the login test shows it so you can decide."
                    ));
                }
                out.push(c);
            }
            Err(e) => notes.push(format!("{host}:{port}: {e}")),
        }
    }
    (out, notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guesses_prefer_implicit_tls() {
        let g = guesses("example.org");
        let first = g.first().expect("some");
        assert_eq!(
            (first.0.as_str(), first.1, first.3),
            ("imap.example.org", 993, Security::Tls)
        );
        let imap_starttls = g
            .iter()
            .position(|x| x.2 == Protocol::Imap && x.3 == Security::Starttls)
            .expect("starttls");
        let imap_tls_last = g
            .iter()
            .rposition(|x| x.2 == Protocol::Imap && x.3 == Security::Tls)
            .expect("tls");
        assert!(imap_tls_last < imap_starttls);
        for prefix in ["imap.", "pop.", "pop3.", "mail."] {
            assert!(g.iter().any(|x| x.0.starts_with(prefix)), "{prefix}");
        }
        for port in [993, 143, 995, 110] {
            assert!(g.iter().any(|x| x.1 == port), "{port}");
        }
    }

    #[tokio::test]
    async fn bundled_hit_stops_discovery_unless_all_sources() {
        let d = Discovery {
            offline: true,
            ..Discovery::default()
        };
        let email = EmailAddress::parse("someone@gmail.com").expect("address");
        let found = discover(&email, &d).await;
        assert!(found.candidates.iter().all(|c| c.source == Source::Bundled));
        assert_eq!(
            found.best(Protocol::Imap).map(|c| c.host.as_str()),
            Some("imap.gmail.com")
        );
        assert_eq!(found.reports.len(), 4);
        assert!(
            found
                .reports
                .iter()
                .skip(1)
                .all(|r| r.outcome == Outcome::Skipped),
            "{:?}",
            found.reports
        );
    }

    #[tokio::test]
    async fn offline_connections_outside_the_map_are_refused() {
        let d = Discovery {
            offline: true,
            ..Discovery::default()
        };
        let e = d
            .connect("imap.example.org", 993)
            .await
            .expect_err("offline");
        assert!(e.contains("offline"), "{e}");
    }
}
