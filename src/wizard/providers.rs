//! The bundled provider database (`assets/providers.toml`): settings of well-known providers,
//! looked up by the address's domain, or by the domain's MX host for custom domains.
//!
//! The data is built into the binary, so discovery's first step needs no network. It was
//! written for mailbag from the providers' published settings; the tests below check every
//! entry.

use std::sync::LazyLock;

use serde::Deserialize;

use super::{Candidate, EmailAddress, Source};
use crate::config::{OAuth2Provider, Protocol, Security};

/// The database as shipped.
pub const PROVIDERS_TOML: &str = include_str!("../../assets/providers.toml");

/// The whole database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderDb {
    /// Every provider, in file order.
    #[serde(rename = "provider")]
    pub providers: Vec<Provider>,
}

/// One provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub domains: Vec<String>,
    /// MX host suffixes that identify the provider (for custom domains).
    #[serde(default)]
    pub mx: Vec<String>,
    /// Only OAuth2 sign-in is accepted.
    #[serde(default)]
    pub oauth2: bool,
    /// The OAuth2 preset this provider's sign-in uses, when it offers OAuth2 at all (required
    /// or not); the wizard offers the OAuth2 sign-in for these.
    #[serde(default)]
    pub oauth2_provider: Option<OAuth2Provider>,
    #[serde(default)]
    pub notes: Vec<String>,
    #[serde(rename = "server")]
    pub servers: Vec<Server>,
}

/// One incoming server of a provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    pub protocol: Protocol,
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// With `%EMAILADDRESS%`, `%EMAILLOCALPART%`, `%EMAILDOMAIN%` placeholders.
    pub username: String,
}

impl ProviderDb {
    /// The bundled database.
    pub fn bundled() -> Result<ProviderDb, String> {
        ProviderDb::parse(PROVIDERS_TOML)
    }

    /// Parses a database in the `providers.toml` format.
    pub fn parse(text: &str) -> Result<ProviderDb, String> {
        toml::from_str(text).map_err(|e| format!("the provider database is invalid: {e}"))
    }

    /// The provider serving `domain`, if listed.
    pub fn by_domain(&self, domain: &str) -> Option<&Provider> {
        let domain = domain.to_ascii_lowercase();
        self.providers.iter().find(|p| p.domains.contains(&domain))
    }

    /// The provider whose MX suffix is the longest match for `mx_host` (a hint).
    pub fn by_mx(&self, mx_host: &str) -> Option<&Provider> {
        let host = mx_host.trim_end_matches('.').to_ascii_lowercase();
        self.providers
            .iter()
            .flat_map(|p| p.mx.iter().map(move |s| (p, s)))
            .filter(|(_, suffix)| {
                host == **suffix
                    || host
                        .strip_suffix(suffix.as_str())
                        .is_some_and(|rest| rest.ends_with('.'))
            })
            .max_by_key(|(_, suffix)| suffix.len())
            .map(|(p, _)| p)
    }

    /// The OAuth2 preset for an account on `host` (an incoming server of a listed provider),
    /// if that provider offers OAuth2.
    pub fn oauth2_for_host(&self, host: &str) -> Option<OAuth2Provider> {
        self.providers
            .iter()
            .filter(|p| p.servers.iter().any(|s| s.host.eq_ignore_ascii_case(host)))
            .find_map(|p| p.oauth2_provider)
    }
}

/// [`ProviderDb::oauth2_for_host`] in the bundled database, which is parsed once per process
/// (NOTE: the wizard asks this for every candidate row it draws).
pub fn bundled_oauth2_for_host(host: &str) -> Option<OAuth2Provider> {
    static BUNDLED: LazyLock<Option<ProviderDb>> = LazyLock::new(|| ProviderDb::bundled().ok());
    BUNDLED.as_ref()?.oauth2_for_host(host)
}

impl Provider {
    /// This provider's servers as candidates for `email`, tagged with `source`.
    pub fn candidates(&self, email: &EmailAddress, source: &Source) -> Vec<Candidate> {
        self.servers
            .iter()
            .map(|s| Candidate {
                source: source.clone(),
                provider: Some(self.name.clone()),
                protocol: s.protocol,
                host: email.fill(&s.host),
                port: s.port,
                security: s.security,
                username: email.fill(&s.username),
                oauth2: self.oauth2,
                notes: self.notes.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn db() -> ProviderDb {
        ProviderDb::bundled().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn google_and_microsoft_offer_oauth2() {
        let db = db();
        let preset = |id: &str| {
            db.providers
                .iter()
                .find(|p| p.id == id)
                .and_then(|p| p.oauth2_provider)
        };
        assert_eq!(preset("gmail"), Some(OAuth2Provider::Google));
        assert_eq!(preset("outlook"), Some(OAuth2Provider::Microsoft));
        assert_eq!(preset("microsoft365"), Some(OAuth2Provider::Microsoft));
        assert_eq!(preset("fastmail"), None);
        for p in &db.providers {
            assert!(
                !p.oauth2 || p.oauth2_provider.is_some(),
                "{} requires OAuth2 but names no preset",
                p.id
            );
        }
        assert_eq!(
            db.oauth2_for_host("IMAP.gmail.com"),
            Some(OAuth2Provider::Google)
        );
        assert_eq!(
            db.oauth2_for_host("outlook.office365.com"),
            Some(OAuth2Provider::Microsoft)
        );
        assert_eq!(db.oauth2_for_host("imap.example.org"), None);
        assert_eq!(
            bundled_oauth2_for_host("imap.gmail.com"),
            Some(OAuth2Provider::Google)
        );
        assert_eq!(bundled_oauth2_for_host("imap.example.org"), None);
    }

    #[test]
    fn every_entry_is_valid() {
        let db = db();
        let mut ids = HashMap::new();
        let mut domains: HashMap<&str, &str> = HashMap::new();
        for p in &db.providers {
            assert!(
                ids.insert(p.id.as_str(), ()).is_none(),
                "duplicate id {}",
                p.id
            );
            assert!(!p.name.trim().is_empty(), "{}: empty name", p.id);
            assert!(
                !p.domains.is_empty() || !p.mx.is_empty(),
                "{}: neither domains nor mx",
                p.id
            );
            assert!(!p.servers.is_empty(), "{}: no servers", p.id);
            for d in p.domains.iter().chain(&p.mx) {
                assert_eq!(*d, d.to_ascii_lowercase(), "{}: {d} not lower case", p.id);
                assert!(
                    EmailAddress::parse(&format!("x@{d}")).is_ok(),
                    "{}: {d} is not a domain",
                    p.id
                );
            }
            for d in &p.domains {
                if let Some(other) = domains.insert(d, &p.id) {
                    panic!("domain {d} is listed by both {other} and {}", p.id);
                }
            }
            for s in &p.servers {
                assert!(!s.host.trim().is_empty(), "{}: empty host", p.id);
                assert!(!s.host.contains(char::is_whitespace), "{}: host", p.id);
                assert_ne!(s.port, 0, "{}: port 0", p.id);
                assert_ne!(s.security, Security::None, "{}: unencrypted server", p.id);
                assert!(s.username.contains('%'), "{}: username form", p.id);
            }
            for n in &p.notes {
                assert!(n.ends_with('.'), "{}: note is not a sentence: {n}", p.id);
            }
        }
    }

    #[test]
    fn required_providers_are_present() {
        let db = db();
        for domain in [
            "gmail.com",
            "outlook.com",
            "hotmail.com",
            "live.com",
            "yahoo.com",
            "aol.com",
            "icloud.com",
            "fastmail.com",
            "proton.me",
            "gmx.net",
            "web.de",
            "mail.ru",
            "yandex.ru",
            "zoho.com",
            "posteo.de",
            "mailbox.org",
            "mailfence.com",
            "runbox.com",
            "disroot.org",
        ] {
            assert!(db.by_domain(domain).is_some(), "no provider for {domain}");
        }
        let m365 = db
            .by_mx("contoso-com.mail.protection.outlook.com")
            .expect("m365 by mx");
        assert_eq!(m365.id, "microsoft365");
        assert!(m365.oauth2);
    }

    #[test]
    fn proton_bridge_is_local_starttls() {
        let db = db();
        let p = db.by_domain("proton.me").expect("proton");
        let s = p.servers.first().expect("server");
        assert_eq!(
            (s.host.as_str(), s.port, s.security, s.protocol),
            ("127.0.0.1", 1143, Security::Starttls, Protocol::Imap)
        );
        assert!(p.notes.iter().any(|n| n.contains("Bridge")));
    }

    #[test]
    fn mx_hints_pick_the_longest_suffix() {
        let db = db();
        let id = |mx: &str| db.by_mx(mx).map(|p| p.id.as_str());
        assert_eq!(id("alt1.aspmx.l.google.com."), Some("gmail"));
        assert_eq!(
            id("hotmail-com.olc.protection.outlook.com"),
            Some("outlook")
        );
        assert_eq!(id("mx-aol.mail.gm0.yahoodns.net"), Some("aol"));
        assert_eq!(id("mta7.am0.yahoodns.net"), Some("yahoo"));
        assert_eq!(id("mx01.mail.icloud.com"), Some("icloud"));
        assert_eq!(id("in1-smtp.messagingengine.com"), Some("fastmail"));
        assert_eq!(id("notgoogle.com"), None);
        assert_eq!(id("mx.example.org"), None);
    }

    #[test]
    fn candidates_fill_the_username() {
        let db = db();
        let email = EmailAddress::parse("jane@icloud.com").expect("address");
        let c = db
            .by_domain("icloud.com")
            .expect("icloud")
            .candidates(&email, &Source::Bundled);
        let first = c.first().expect("one");
        assert_eq!(first.username, "jane");
        assert_eq!(first.provider.as_deref(), Some("iCloud Mail"));
        assert_eq!(first.source, Source::Bundled);
    }

    #[test]
    fn broken_databases_are_rejected_with_a_reason() {
        let err = ProviderDb::parse("[[provider]]\nid = \"x\"\n").expect_err("missing keys");
        assert!(err.contains("provider database is invalid"), "{err}");
        let err = ProviderDb::parse(
            "[[provider]]\nid='x'\nname='X'\ndomains=['x.org']\n[[provider.server]]\n\
             protocol='smtp'\nhost='h'\nport=1\nsecurity='tls'\nusername='%EMAILADDRESS%'\n",
        )
        .expect_err("bad protocol");
        assert!(err.contains("smtp") || err.contains("variant"), "{err}");
    }
}
