//! Autoconfig: the domain's own description of its mail servers, in Thunderbird's
//! `clientConfig` format (version 1.1), fetched over HTTPS only.
//!
//! Two URLs are tried in order: `https://autoconfig.<domain>/mail/config-v1.1.xml?emailaddress=
//! <address>`, then `https://<domain>/.well-known/autoconfig/mail/config-v1.1.xml`. Plain HTTP
//! is never used: a file fetched without TLS could send the password anywhere.

use super::http::percent_encode;
use super::xml::{self, Element};
use super::{Candidate, EmailAddress, Source};
use crate::config::{Protocol, Security};

/// The URLs tried for `email`, in order.
pub fn urls(email: &EmailAddress) -> [String; 2] {
    [
        format!(
            "https://autoconfig.{}/mail/config-v1.1.xml?emailaddress={}",
            email.domain,
            percent_encode(&email.address)
        ),
        format!(
            "https://{}/.well-known/autoconfig/mail/config-v1.1.xml",
            email.domain
        ),
    ]
}

/// Reads a `clientConfig` document into candidates for `email`, tagged with `url`.
///
/// Only `incomingServer` elements of type `imap` or `pop3` are used; other types (exchange,
/// ews) are skipped. The message of an error says what is wrong and where.
pub fn parse(text: &str, email: &EmailAddress, url: &str) -> Result<Vec<Candidate>, String> {
    let root =
        xml::parse(text).map_err(|e| format!("the autoconfig file is not valid XML: {e}"))?;
    if root.local_name() != "clientConfig" {
        return Err(format!(
            "the autoconfig file is not a clientConfig document (its root is <{}>)",
            crate::sanitize::line(&root.name)
        ));
    }
    let mut out = Vec::new();
    for provider in root.children_named("emailProvider") {
        let name = provider
            .child_text("displayName")
            .or_else(|| provider.attr("id").map(str::to_string));
        for server in provider.children_named("incomingServer") {
            if let Some(c) = candidate(server, email, url, name.as_deref())? {
                out.push(c);
            }
        }
    }
    if out.is_empty() {
        return Err("the autoconfig file lists no IMAP or POP3 server".into());
    }
    Ok(out)
}

fn candidate(
    server: &Element,
    email: &EmailAddress,
    url: &str,
    provider: Option<&str>,
) -> Result<Option<Candidate>, String> {
    let protocol = match server.attr("type") {
        Some("imap") => Protocol::Imap,
        Some("pop3") => Protocol::Pop3,
        _ => return Ok(None),
    };
    let missing = |what: &str| format!("an incomingServer in the autoconfig file has no {what}");
    let host = email.fill(
        &server
            .child_text("hostname")
            .ok_or_else(|| missing("hostname"))?,
    );
    if host.contains(|c: char| c.is_whitespace() || c.is_control() || c == '/') {
        return Err(format!(
            "the autoconfig file names an invalid host {}",
            crate::sanitize::line(&host)
        ));
    }
    let port_text = server.child_text("port").ok_or_else(|| missing("port"))?;
    let port = port_text
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| {
            format!(
                "the autoconfig file gives an invalid port {}",
                crate::sanitize::line(&port_text)
            )
        })?;
    let security = match server.child_text("socketType").as_deref() {
        Some("SSL") => Security::Tls,
        Some("STARTTLS") => Security::Starttls,
        Some("plain") => Security::None,
        other => {
            return Err(format!(
                "the autoconfig file gives an unknown socketType {}",
                crate::sanitize::line(other.unwrap_or("(none)"))
            ));
        }
    };
    let username = server
        .child_text("username")
        .map(|u| email.fill(&u))
        .unwrap_or_else(|| email.address.clone());
    let auths: Vec<String> = server
        .children_named("authentication")
        .map(Element::text)
        .collect();
    let oauth2 = !auths.is_empty() && auths.iter().all(|a| a == "OAuth2");
    let mut notes = Vec::new();
    if security == Security::None {
        notes.push(
            "This server is offered without encryption; the password would be sent in the clear."
                .into(),
        );
    }
    Ok(Some(Candidate {
        source: Source::Autoconfig {
            url: url.to_string(),
        },
        provider: provider.map(str::to_string),
        protocol,
        host,
        port,
        security,
        username,
        oauth2,
        notes,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email() -> EmailAddress {
        EmailAddress::parse("jane.doe@example.org").expect("address")
    }

    const SAMPLE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1">
  <emailProvider id="example.org">
    <domain>example.org</domain>
    <displayName>Example Mail</displayName>
    <incomingServer type="imap">
      <hostname>imap.%EMAILDOMAIN%</hostname>
      <port>993</port>
      <socketType>SSL</socketType>
      <username>%EMAILLOCALPART%</username>
      <authentication>password-cleartext</authentication>
    </incomingServer>
    <incomingServer type="pop3">
      <hostname>pop.example.org</hostname>
      <port>110</port>
      <socketType>STARTTLS</socketType>
      <username>%EMAILADDRESS%</username>
    </incomingServer>
    <incomingServer type="exchange"><hostname>ews.example.org</hostname></incomingServer>
    <outgoingServer type="smtp"><hostname>smtp.example.org</hostname></outgoingServer>
  </emailProvider>
</clientConfig>"#;

    #[test]
    fn reads_imap_and_pop3_servers() {
        let c = parse(SAMPLE, &email(), "https://x").expect("valid");
        assert_eq!(c.len(), 2);
        let imap = c.first().expect("imap");
        assert_eq!(
            (imap.protocol, imap.host.as_str(), imap.port, imap.security),
            (Protocol::Imap, "imap.example.org", 993, Security::Tls)
        );
        assert_eq!(imap.username, "jane.doe");
        assert_eq!(imap.provider.as_deref(), Some("Example Mail"));
        let pop = c.get(1).expect("pop3");
        assert_eq!(
            (pop.protocol, pop.port, pop.security),
            (Protocol::Pop3, 110, Security::Starttls)
        );
        assert_eq!(pop.username, "jane.doe@example.org");
    }

    #[test]
    fn bad_files_get_clear_messages() {
        let e = parse("<clientConfig><emailProvider>", &email(), "u").expect_err("cut");
        assert!(
            e.starts_with("the autoconfig file is not valid XML: line 1:"),
            "{e}"
        );
        let e = parse("<html><body>404</body></html>", &email(), "u").expect_err("html");
        assert!(e.contains("not a clientConfig document"), "{e}");
        let e = parse(
            &SAMPLE.replace("<port>993</port>", "<port>99999</port>"),
            &email(),
            "u",
        )
        .expect_err("port");
        assert!(e.contains("invalid port 99999"), "{e}");
        let e = parse(&SAMPLE.replace(">SSL<", ">TLS-ish<"), &email(), "u").expect_err("socket");
        assert!(e.contains("unknown socketType TLS-ish"), "{e}");
        let e = parse(
            "<clientConfig><emailProvider/></clientConfig>",
            &email(),
            "u",
        )
        .expect_err("empty");
        assert!(e.contains("no IMAP or POP3 server"), "{e}");
    }

    #[test]
    fn oauth2_only_servers_are_marked() {
        let text = SAMPLE.replace("password-cleartext", "OAuth2");
        let c = parse(&text, &email(), "u").expect("valid");
        assert!(c.first().is_some_and(|c| c.oauth2));
    }

    #[test]
    fn urls_are_https_and_encode_the_address() {
        let e = EmailAddress::parse("a+b@example.org").expect("address");
        let [first, second] = urls(&e);
        assert_eq!(
            first,
            "https://autoconfig.example.org/mail/config-v1.1.xml?emailaddress=a%2Bb%40example.org"
        );
        assert_eq!(
            second,
            "https://example.org/.well-known/autoconfig/mail/config-v1.1.xml"
        );
    }
}
