//! The two SASL mechanisms that carry an OAuth2 bearer token to IMAP and POP3.
//!
//! - OAUTHBEARER (RFC 7628 §3.1): a GS2 header `n,a=<user>,` followed by `^A`-separated
//!   `host=`, `port=` and `auth=Bearer <token>` pairs, ended by `^A^A`.
//! - XOAUTH2 (Google's older flavour, also spoken by Microsoft and Dovecot):
//!   `user=<user>^Aauth=Bearer <token>^A^A`.
//!
//! Both are one round trip. When the server rejects the token it first sends a challenge
//! holding a JSON error (RFC 7628 §3.2.2); the client must answer it (`^A` for OAUTHBEARER,
//! an empty response for XOAUTH2, RFC 7628 §3.2.3) before the final failure arrives.
//!
//! The messages hold the token, so they are built straight into a [`Secret`].

use crate::config::OAuth2Mechanism;
use crate::credentials::Secret;

/// What a client answers to a server's error challenge.
pub fn error_answer(mechanism: OAuth2Mechanism) -> &'static [u8] {
    match mechanism {
        OAuth2Mechanism::Oauthbearer => b"\x01",
        OAuth2Mechanism::Xoauth2 => b"",
    }
}

/// The SASL mechanism name (`OAUTHBEARER`, `XOAUTH2`).
pub fn name(mechanism: OAuth2Mechanism) -> &'static str {
    match mechanism {
        OAuth2Mechanism::Oauthbearer => "OAUTHBEARER",
        OAuth2Mechanism::Xoauth2 => "XOAUTH2",
    }
}

/// Picks the mechanism: `forced` if the server offers it, else OAUTHBEARER (the standard),
/// else XOAUTH2. `offered` are the server's mechanism names in any case. `None` if the server
/// offers neither (or not the forced one).
pub fn choose<'a>(
    offered: impl IntoIterator<Item = &'a str>,
    forced: Option<OAuth2Mechanism>,
) -> Option<OAuth2Mechanism> {
    let offered: Vec<String> = offered.into_iter().map(str::to_ascii_uppercase).collect();
    let has = |m: OAuth2Mechanism| offered.iter().any(|o| o == name(m));
    match forced {
        Some(m) => has(m).then_some(m),
        None => [OAuth2Mechanism::Oauthbearer, OAuth2Mechanism::Xoauth2]
            .into_iter()
            .find(|m| has(*m)),
    }
}

/// The client's first (and only) message for `mechanism`, unencoded (the protocol layer
/// base64-encodes it).
pub fn initial_response(
    mechanism: OAuth2Mechanism,
    user: &str,
    host: &str,
    port: u16,
    token: &Secret,
) -> Secret {
    let message = match mechanism {
        OAuth2Mechanism::Oauthbearer => format!(
            "n,a={},\x01host={host}\x01port={port}\x01auth=Bearer {}\x01\x01",
            saslname(user),
            token.expose()
        ),
        OAuth2Mechanism::Xoauth2 => {
            format!("user={user}\x01auth=Bearer {}\x01\x01", token.expose())
        }
    };
    Secret::new(message)
}

/// RFC 5801 §4 `saslname`: `,` and `=` escaped as `=2C` and `=3D`.
fn saslname(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

/// The `status` of a server's JSON error challenge (RFC 7628 §3.2.2), e.g. `invalid_token`,
/// shortened and cleaned for a message; `None` if the challenge is not such JSON.
pub fn challenge_status(challenge: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(challenge).ok()?;
    let status = value.get("status")?.as_str()?;
    let short: String = status.chars().take(60).collect();
    Some(crate::sanitize::line(&short).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauthbearer_follows_rfc7628_example() {
        // RFC 7628 §4.1, with the user added to the GS2 header.
        let token = Secret::new("vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==".into());
        let msg = initial_response(
            OAuth2Mechanism::Oauthbearer,
            "user@example.com",
            "server.example.com",
            143,
            &token,
        );
        assert_eq!(
            msg.expose(),
            "n,a=user@example.com,\x01host=server.example.com\x01port=143\x01\
             auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"
        );
        assert_eq!(format!("{msg:?}"), "***");
    }

    #[test]
    fn xoauth2_matches_googles_format() {
        let token = Secret::new("ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg".into());
        let msg = initial_response(
            OAuth2Mechanism::Xoauth2,
            "someuser@example.com",
            "imap.gmail.com",
            993,
            &token,
        );
        assert_eq!(
            msg.expose(),
            "user=someuser@example.com\x01auth=Bearer \
             ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01"
        );
    }

    #[test]
    fn user_names_are_escaped_in_the_gs2_header() {
        assert_eq!(saslname("a,b=c"), "a=2Cb=3Dc");
    }

    #[test]
    fn oauthbearer_is_preferred_and_forcing_is_honoured() {
        use OAuth2Mechanism::*;
        assert_eq!(
            choose(["PLAIN", "xoauth2", "OAUTHBEARER"], None),
            Some(Oauthbearer)
        );
        assert_eq!(choose(["PLAIN", "XOAUTH2"], None), Some(Xoauth2));
        assert_eq!(choose(["PLAIN", "LOGIN"], None), None);
        assert_eq!(
            choose(["XOAUTH2", "OAUTHBEARER"], Some(Xoauth2)),
            Some(Xoauth2)
        );
        assert_eq!(choose(["OAUTHBEARER"], Some(Xoauth2)), None);
    }

    #[test]
    fn error_challenges_are_read_and_answered() {
        let json = br#"{"status":"invalid_token","schemes":"bearer","scope":"mail"}"#;
        assert_eq!(challenge_status(json).as_deref(), Some("invalid_token"));
        assert_eq!(challenge_status(b"not json"), None);
        assert_eq!(error_answer(OAuth2Mechanism::Oauthbearer), b"\x01");
        assert_eq!(error_answer(OAuth2Mechanism::Xoauth2), b"");
    }
}
