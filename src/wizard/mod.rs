//! The account setup wizard's logic: from an email address to a tested, saved account.
//!
//! The flow, which the non-interactive `mailbag setup` and the TUI screens both drive:
//!
//! 1. [`discover::discover`] turns an address into [`Candidate`]s, each tagged with its
//!    [`Source`]: the bundled provider database ([`providers`]), the domain's autoconfig file
//!    ([`autoconfig`] over [`http`]), DNS SRV records per RFC 6186 and the MX host as a hint
//!    ([`dns`]), and finally guessed host names probed in parallel ([`probe`]).
//! 2. The user (or a script) picks a candidate; [`Candidate::to_account`] makes the
//!    [`Account`](crate::config::Account) every field of which stays editable.
//! 3. [`check::test_login`] runs the login live (resolve, connect, TLS, capabilities, login,
//!    list folders / STAT), reporting each step as a [`check::CheckEvent`], and on failure says
//!    in one line what to do ([`check::CheckFailure::hint`]).
//! 4. [`save::save_account`] stores the password in the OS keyring (or keeps a
//!    `password_command`) and adds the account to `config.toml`, keeping what is there.
//!
//! Nothing here draws on a screen or reads a terminal; [`scripted`] is the command line's use
//! of it.

pub mod autoconfig;
pub mod check;
pub mod der;
pub mod discover;
pub mod dns;
pub mod http;
pub mod probe;
pub mod providers;
pub mod save;
pub mod scripted;
pub mod xml;

use std::fmt;

use crate::config::{Account, Protocol, Security};

/// Where a [`Candidate`] came from, shown next to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The bundled provider database, matched by the address's domain.
    Bundled,
    /// The autoconfig file at this URL.
    Autoconfig { url: String },
    /// A DNS SRV record (RFC 6186), e.g. `_imaps._tcp.example.com`.
    Srv { record: String },
    /// The domain's MX host, which belongs to a provider in the bundled database.
    Mx { host: String },
    /// A guessed host name that answered like a mail server.
    Guess,
    /// Typed in by the user.
    Manual,
}

impl Source {
    /// A short label: `bundled`, `autoconfig`, `dns-srv`, `dns-mx`, `guess`, `manual`.
    pub fn label(&self) -> &'static str {
        match self {
            Source::Bundled => "bundled",
            Source::Autoconfig { .. } => "autoconfig",
            Source::Srv { .. } => "dns-srv",
            Source::Mx { .. } => "dns-mx",
            Source::Guess => "guess",
            Source::Manual => "manual",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Bundled => f.write_str("bundled provider list"),
            Source::Autoconfig { url } => write!(f, "autoconfig {url}"),
            Source::Srv { record } => write!(f, "DNS SRV {record}"),
            Source::Mx { host } => write!(f, "DNS MX {host}"),
            Source::Guess => f.write_str("guess"),
            Source::Manual => f.write_str("manual"),
        }
    }
}

/// One set of incoming-server settings that may work for the address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Where these settings came from.
    pub source: Source,
    /// The provider's display name, when known.
    pub provider: Option<String>,
    pub protocol: Protocol,
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// The login name for this address (placeholders already filled in).
    pub username: String,
    /// The provider accepts only OAuth2 (no password); see [`crate::oauth2`].
    pub oauth2: bool,
    /// Plain sentences to show with the settings (app passwords, enabling POP3, ...).
    pub notes: Vec<String>,
}

impl Candidate {
    /// The account these settings make for `email`; optional keys are left unset.
    pub fn to_account(&self, email: &str, display_name: Option<&str>) -> Account {
        let default_port = Account {
            port: None,
            ..blank_account(email, self.protocol, &self.host, self.security)
        }
        .port();
        Account {
            display_name: display_name.map(str::to_string),
            port: (self.port != default_port).then_some(self.port),
            username: (self.username != email).then(|| self.username.clone()),
            ..blank_account(email, self.protocol, &self.host, self.security)
        }
    }

    /// One line: `imap imap.example.com:993 tls (user me@example.com)`.
    pub fn summary(&self) -> String {
        format!(
            "{} {}:{} {} (user {})",
            self.protocol.as_str(),
            self.host,
            self.port,
            security_name(self.security),
            self.username
        )
    }
}

/// An account with only the required keys set.
pub fn blank_account(email: &str, protocol: Protocol, host: &str, security: Security) -> Account {
    Account {
        email: email.to_string(),
        display_name: None,
        protocol,
        host: host.to_string(),
        port: None,
        security,
        username: None,
        auth: None,
        password_command: None,
        oauth2_provider: None,
        oauth2_client_id: None,
        oauth2_client_secret: None,
        oauth2_auth_url: None,
        oauth2_token_url: None,
        oauth2_device_url: None,
        oauth2_scopes: None,
        oauth2_token_command: None,
        oauth2_mechanism: None,
        oauth2_ca_file: None,
        tls_ca_file: None,
        tls_cert_sha256: None,
        leave_on_server: None,
        delete_after_days: None,
        mbox_path: None,
        delete_on_server_when_deleted_locally: None,
        idle: None,
        prefetch: None,
    }
}

/// The config spelling of a security mode: `tls`, `starttls`, `none`.
pub fn security_name(s: Security) -> &'static str {
    match s {
        Security::Tls => "tls",
        Security::Starttls => "starttls",
        Security::None => "none",
    }
}

/// One or two plain sentences explaining a protocol, for the choice between them.
pub fn protocol_explained(p: Protocol) -> &'static str {
    match p {
        Protocol::Imap => {
            "IMAP: your mail stays on the server, and every device sees the same inbox and folders."
        }
        Protocol::Pop3 => {
            "POP3: mail is downloaded to this computer; it can be left on the server for a while."
        }
    }
}

/// An email address split at its last `@`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailAddress {
    /// The whole address as typed (trimmed).
    pub address: String,
    /// The part before the `@`.
    pub local: String,
    /// The part after the `@`, lower-cased.
    pub domain: String,
}

impl EmailAddress {
    /// Parses `user@example.com`; the message says what is wrong otherwise.
    pub fn parse(text: &str) -> Result<EmailAddress, String> {
        let address = text.trim();
        let Some((local, domain)) = address.rsplit_once('@') else {
            return Err(format!(
                "{} is not an email address (no @)",
                crate::sanitize::line(address)
            ));
        };
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let valid_domain = !domain.is_empty()
            && domain.len() <= 253
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if local.is_empty() || local.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!(
                "{} is not an email address (the part before @ is empty or has spaces)",
                crate::sanitize::line(address)
            ));
        }
        if !valid_domain {
            return Err(format!(
                "{} is not an email address (the domain is not a host name)",
                crate::sanitize::line(address)
            ));
        }
        Ok(EmailAddress {
            address: address.to_string(),
            local: local.to_string(),
            domain,
        })
    }

    /// Replaces `%EMAILADDRESS%`, `%EMAILLOCALPART%` and `%EMAILDOMAIN%` in `template`.
    pub fn fill(&self, template: &str) -> String {
        template
            .replace("%EMAILADDRESS%", &self.address)
            .replace("%EMAILLOCALPART%", &self.local)
            .replace("%EMAILDOMAIN%", &self.domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_fill_placeholders() {
        let a = EmailAddress::parse(" Me.Name@Example.COM ").expect("valid");
        assert_eq!(a.local, "Me.Name");
        assert_eq!(a.domain, "example.com");
        assert_eq!(
            a.fill("%EMAILLOCALPART%+x@%EMAILDOMAIN% / %EMAILADDRESS%"),
            "Me.Name+x@example.com / Me.Name@Example.COM"
        );
        for bad in [
            "nobody",
            "@example.com",
            "me@",
            "me@exa mple.com",
            "me@a..b",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn to_account_leaves_defaults_unset() {
        let c = Candidate {
            source: Source::Guess,
            provider: None,
            protocol: Protocol::Imap,
            host: "imap.example.com".into(),
            port: 993,
            security: Security::Tls,
            username: "me@example.com".into(),
            oauth2: false,
            notes: vec![],
        };
        let a = c.to_account("me@example.com", None);
        assert_eq!(a.port, None);
        assert_eq!(a.username, None);
        let c = Candidate {
            port: 1143,
            security: Security::Starttls,
            username: "me".into(),
            ..c
        };
        let a = c.to_account("me@example.com", Some("Me"));
        assert_eq!(a.port, Some(1143));
        assert_eq!(a.username.as_deref(), Some("me"));
        assert_eq!(a.display_name.as_deref(), Some("Me"));
        assert_eq!(a.port(), 1143);
    }
}
