//! Requests to the token endpoint (RFC 6749 §4.1.3, §6; RFC 8628 §3.4) and the device
//! authorization endpoint (RFC 8628 §3.1), and reading their JSON replies (RFC 6749 §5).
//!
//! Every request is an HTTPS POST with a form body ([`crate::wizard::http::post_form`]).
//! Token values are moved into [`Secret`]s as soon as they are parsed; error messages carry
//! only the `error` code and a cleaned, shortened `error_description`.

use std::time::Duration;

use super::{Endpoints, OAuth2Error};
use crate::credentials::Secret;
use crate::sanitize;

/// How long one request to an endpoint may take.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// The grant type of a device code token request (RFC 8628 §3.4).
pub const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// A successful token response (RFC 6749 §5.1).
pub struct Tokens {
    pub access_token: Secret,
    /// A new refresh token, when the server issued (or rotated) one.
    pub refresh_token: Option<Secret>,
    /// Seconds the access token lives, if the server said.
    pub expires_in: Option<u64>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("access_token", &"***")
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "***"))
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// A device authorization response (RFC 8628 §3.2).
pub struct DeviceAuthorization {
    pub device_code: Secret,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: Option<String>,
    pub expires_in: u64,
    /// Seconds to wait between polls (default 5, RFC 8628 §3.2).
    pub interval: u64,
}

/// Exchanges an authorization code for tokens (RFC 6749 §4.1.3, RFC 7636 §4.5).
pub async fn exchange_code(
    ep: &Endpoints,
    code: &Secret,
    verifier: &Secret,
    redirect_uri: &str,
) -> Result<Tokens, OAuth2Error> {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code.expose()),
        ("redirect_uri", redirect_uri),
        ("client_id", &ep.client_id),
        ("code_verifier", verifier.expose()),
    ];
    if let Some(s) = &ep.client_secret {
        form.push(("client_secret", s));
    }
    tokens(ep, &post(ep, &ep.token_url, &form).await?)
}

/// Asks for a new access token with a refresh token (RFC 6749 §6).
pub async fn refresh(ep: &Endpoints, refresh_token: &Secret) -> Result<Tokens, OAuth2Error> {
    let scope = ep.scope();
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token.expose()),
        ("client_id", &ep.client_id),
    ];
    if ep.provider == crate::config::OAuth2Provider::Microsoft {
        // NOTE: the Microsoft identity platform documents `scope` as required here (RFC 6749
        // §6 makes it optional); the same scopes as the sign-in are asked for.
        form.push(("scope", &scope));
    }
    if let Some(s) = &ep.client_secret {
        form.push(("client_secret", s));
    }
    tokens(ep, &post(ep, &ep.token_url, &form).await?)
}

/// Starts a device authorization (RFC 8628 §3.1).
pub async fn start_device(ep: &Endpoints) -> Result<DeviceAuthorization, OAuth2Error> {
    let Some(url) = &ep.device_url else {
        return Err(OAuth2Error::Redirect(
            "this provider has no device authorization endpoint: set oauth2_device_url or use \
             the browser sign-in"
                .into(),
        ));
    };
    let scope = ep.scope();
    let mut form = vec![("client_id", ep.client_id.as_str()), ("scope", &scope)];
    if let Some(s) = &ep.client_secret {
        form.push(("client_secret", s));
    }
    let (status, json) = post(ep, url, &form).await?;
    if status != 200 {
        return Err(error_of(&ep.token_host(url), status, &json));
    }
    let text = |k: &str| json.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let bad = |what: &str| OAuth2Error::Http {
        host: ep.token_host(url),
        reason: format!("the device authorization reply has no {what}"),
    };
    Ok(DeviceAuthorization {
        device_code: Secret::new(text("device_code").ok_or_else(|| bad("device_code"))?),
        user_code: sanitize::line(&text("user_code").ok_or_else(|| bad("user_code"))?).into_owned(),
        // NOTE: Google spells it `verification_url`.
        verification_uri: sanitize::line(
            &text("verification_uri")
                .or_else(|| text("verification_url"))
                .ok_or_else(|| bad("verification_uri"))?,
        )
        .into_owned(),
        verification_uri_complete: text("verification_uri_complete")
            .map(|u| sanitize::line(&u).into_owned()),
        expires_in: number(&json, "expires_in").unwrap_or(600),
        interval: number(&json, "interval").unwrap_or(5).max(1),
    })
}

/// Polls the token endpoint once for a device code (RFC 8628 §3.4). The pending and slow-down
/// answers come back as [`OAuth2Error::Refused`] with `error` set to `authorization_pending`
/// or `slow_down`.
pub async fn poll_device(ep: &Endpoints, device_code: &Secret) -> Result<Tokens, OAuth2Error> {
    let mut form = vec![
        ("grant_type", DEVICE_GRANT),
        ("device_code", device_code.expose()),
        ("client_id", &ep.client_id),
    ];
    if let Some(s) = &ep.client_secret {
        form.push(("client_secret", s));
    }
    tokens(ep, &post(ep, &ep.token_url, &form).await?)
}

impl Endpoints {
    fn token_host(&self, url: &str) -> String {
        crate::wizard::http::Url::parse(url)
            .map(|u| u.host)
            .unwrap_or_else(|_| "?".into())
    }
}

async fn post(
    ep: &Endpoints,
    url: &str,
    form: &[(&str, &str)],
) -> Result<(u16, serde_json::Value), OAuth2Error> {
    let host = ep.token_host(url);
    let reply = crate::wizard::http::post_form(url, form, &ep.trust(), HTTP_TIMEOUT)
        .await
        .map_err(|reason| OAuth2Error::Http {
            host: host.clone(),
            reason,
        })?;
    let json = serde_json::from_slice(&reply.body).map_err(|_| OAuth2Error::Http {
        host,
        reason: format!("HTTP {} with a body that is not JSON", reply.status),
    })?;
    Ok((reply.status, json))
}

fn tokens(
    ep: &Endpoints,
    (status, json): &(u16, serde_json::Value),
) -> Result<Tokens, OAuth2Error> {
    if *status != 200 || json.get("error").is_some() {
        return Err(error_of(&ep.token_host(&ep.token_url), *status, json));
    }
    let Some(access) = json.get("access_token").and_then(|v| v.as_str()) else {
        return Err(OAuth2Error::Http {
            host: ep.token_host(&ep.token_url),
            reason: "the token reply has no access_token".into(),
        });
    };
    Ok(Tokens {
        access_token: Secret::new(access.to_string()),
        refresh_token: json
            .get("refresh_token")
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(|s| Secret::new(s.to_string())),
        expires_in: number(json, "expires_in"),
    })
}

/// An OAuth2 error reply (RFC 6749 §5.2) as an error; anything else as an HTTP failure.
fn error_of(host: &str, status: u16, json: &serde_json::Value) -> OAuth2Error {
    let clean = |s: &str| {
        let short: String = s.chars().take(200).collect();
        sanitize::line(&short).into_owned()
    };
    match json.get("error").and_then(|v| v.as_str()) {
        Some(error) => OAuth2Error::Refused {
            error: clean(error),
            description: json
                .get("error_description")
                .and_then(|v| v.as_str())
                .map(clean),
        },
        None => OAuth2Error::Http {
            host: host.to_string(),
            reason: format!("HTTP {status}"),
        },
    }
}

/// The longest lifetime or interval taken from a reply, in seconds (a day).
const MAX_SECONDS: u64 = 24 * 3600;

/// A number of seconds that some servers send as a string (`"3600"`), at most
/// [`MAX_SECONDS`].
fn number(json: &serde_json::Value, key: &str) -> Option<u64> {
    let v = json.get(key)?;
    // NOTE: callers add these to `Instant::now()`, which panics on overflow; a server's
    // `"expires_in": 18446744073709551615` must not crash the client.
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .map(|n: u64| n.min(MAX_SECONDS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OAuth2Provider;

    fn ep() -> Endpoints {
        Endpoints {
            provider: OAuth2Provider::Custom,
            client_id: "id".into(),
            client_secret: None,
            auth_url: None,
            token_url: "https://auth.example/token".into(),
            device_url: None,
            scopes: vec!["mail".into()],
            ca_file: None,
        }
    }

    #[test]
    fn token_replies_parse_and_hide_their_tokens() {
        let json = serde_json::json!({
            "access_token": "AT-secret", "refresh_token": "RT-secret",
            "expires_in": "3599", "token_type": "Bearer"
        });
        let t = tokens(&ep(), &(200, json)).expect("tokens");
        assert_eq!(t.access_token.expose(), "AT-secret");
        assert_eq!(
            t.refresh_token.as_ref().map(|r| r.expose()),
            Some("RT-secret")
        );
        assert_eq!(t.expires_in, Some(3599));
        let huge = serde_json::json!({"access_token": "a", "expires_in": u64::MAX});
        let h = tokens(&ep(), &(200, huge)).expect("tokens");
        assert_eq!(h.expires_in, Some(MAX_SECONDS));
        let debug = format!("{t:?}");
        assert!(!debug.contains("secret"), "{debug}");
    }

    #[test]
    fn error_replies_name_the_error_without_control_characters() {
        let json = serde_json::json!({
            "error": "invalid_grant", "error_description": "Token has been\x1b[31m revoked."
        });
        let e = tokens(&ep(), &(400, json)).expect_err("error");
        assert!(matches!(&e, OAuth2Error::Refused { error, .. } if error == "invalid_grant"));
        let msg = e.to_string();
        assert!(msg.contains("invalid_grant"), "{msg}");
        assert!(!msg.contains('\x1b'), "{msg}");
        let e = tokens(&ep(), &(500, serde_json::json!({}))).expect_err("error");
        assert_eq!(
            e.to_string(),
            "the authorization server auth.example failed: HTTP 500"
        );
    }
}
