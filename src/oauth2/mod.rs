//! OAuth2 sign-in for IMAP and POP3 (RFC 6749), so Gmail and Microsoft 365 work without an
//! outside token script.
//!
//! - [`sasl`] builds the OAUTHBEARER (RFC 7628) and XOAUTH2 messages that carry an access
//!   token to the server; the backends pick one from the server's capabilities.
//! - [`flow`] gets the first tokens: the authorization code grant with PKCE (RFC 7636, S256)
//!   and a loopback redirect on 127.0.0.1 (RFC 8252 §7.3), or the device authorization grant
//!   (RFC 8628) on a box without a browser. [`sign_in`] is the entry point the CLI
//!   (`mailbag login`) and the setup wizard call.
//! - [`token`] talks to the token and device endpoints (HTTPS form POST, JSON replies).
//! - [`store`] keeps the refresh token in the OS keyring (or asks `oauth2_token_command`),
//!   keeps access tokens in memory and refreshes them before they expire. A rotated refresh
//!   token is saved before anything else happens, so a crash never signs the user out.
//!
//! Tokens live in [`Secret`](crate::credentials::Secret)s: they never reach the config, an
//! error message or `Debug` output.

pub mod flow;
pub mod sasl;
pub mod store;
pub mod token;

use std::path::PathBuf;

use thiserror::Error;

use crate::config::{Account, OAuth2Provider};
use crate::credentials::CredentialError;

pub use flow::{Method, Prompt, sign_in};
pub use store::{access_token, renew_access_token};

/// Google's endpoints (<https://developers.google.com/identity/protocols/oauth2/native-app>).
pub const GOOGLE_AUTH_URL: &str = "https://accounts.google.com/o/oauth2/v2/auth";
/// Google's token endpoint.
pub const GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
/// Google's device authorization endpoint.
pub const GOOGLE_DEVICE_URL: &str = "https://oauth2.googleapis.com/device/code";
/// The one scope that gives IMAP and POP3 access to Gmail.
pub const GOOGLE_SCOPES: &[&str] = &["https://mail.google.com/"];
/// Microsoft identity platform endpoints (the `common` tenant: work, school and personal).
pub const MICROSOFT_AUTH_URL: &str =
    "https://login.microsoftonline.com/common/oauth2/v2.0/authorize";
/// Microsoft's token endpoint.
pub const MICROSOFT_TOKEN_URL: &str = "https://login.microsoftonline.com/common/oauth2/v2.0/token";
/// Microsoft's device authorization endpoint.
pub const MICROSOFT_DEVICE_URL: &str =
    "https://login.microsoftonline.com/common/oauth2/v2.0/devicecode";
/// IMAP and POP3 access to Exchange Online, plus a refresh token.
pub const MICROSOFT_SCOPES: &[&str] = &[
    "https://outlook.office.com/IMAP.AccessAsUser.All",
    "https://outlook.office.com/POP.AccessAsUser.All",
    "offline_access",
];

/// Everything needed to talk to one account's authorization server.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub provider: OAuth2Provider,
    pub client_id: String,
    /// NOTE: for installed apps this is not really secret (RFC 8252 §8.5), but it is never
    /// printed all the same.
    pub client_secret: Option<String>,
    pub auth_url: Option<String>,
    pub token_url: String,
    pub device_url: Option<String>,
    pub scopes: Vec<String>,
    /// One more CA to trust for the endpoints (`oauth2_ca_file`).
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoints")
            .field("provider", &self.provider)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "***"))
            .field("auth_url", &self.auth_url)
            .field("token_url", &self.token_url)
            .field("device_url", &self.device_url)
            .field("scopes", &self.scopes)
            .finish()
    }
}

impl Endpoints {
    /// The endpoints for `account`: the provider's presets, overridden by any URL or scope
    /// the account sets. `account_name` is used in messages.
    pub fn for_account(account_name: &str, account: &Account) -> Result<Endpoints, OAuth2Error> {
        let missing = |what: &str| OAuth2Error::Config {
            account: account_name.to_string(),
            reason: format!("{what} is not set"),
        };
        let provider = account
            .oauth2_provider
            .ok_or_else(|| missing("oauth2_provider"))?;
        let client_id = account
            .oauth2_client_id
            .clone()
            .ok_or_else(|| missing("oauth2_client_id"))?;
        let (auth, token, device, scopes): (Option<&str>, Option<&str>, Option<&str>, &[&str]) =
            match provider {
                OAuth2Provider::Google => (
                    Some(GOOGLE_AUTH_URL),
                    Some(GOOGLE_TOKEN_URL),
                    Some(GOOGLE_DEVICE_URL),
                    GOOGLE_SCOPES,
                ),
                OAuth2Provider::Microsoft => (
                    Some(MICROSOFT_AUTH_URL),
                    Some(MICROSOFT_TOKEN_URL),
                    Some(MICROSOFT_DEVICE_URL),
                    MICROSOFT_SCOPES,
                ),
                OAuth2Provider::Custom => (None, None, None, &[]),
            };
        let token_url = account
            .oauth2_token_url
            .clone()
            .or_else(|| token.map(str::to_string))
            .ok_or_else(|| missing("oauth2_token_url"))?;
        Ok(Endpoints {
            provider,
            client_id,
            client_secret: account.oauth2_client_secret.as_ref().map(|s| s.0.clone()),
            auth_url: account
                .oauth2_auth_url
                .clone()
                .or_else(|| auth.map(str::to_string)),
            token_url,
            device_url: account
                .oauth2_device_url
                .clone()
                .or_else(|| device.map(str::to_string)),
            scopes: account
                .oauth2_scopes
                .clone()
                .unwrap_or_else(|| scopes.iter().map(|s| s.to_string()).collect()),
            ca_file: account.oauth2_ca_file(),
        })
    }

    /// The scopes as one space-separated `scope` parameter (RFC 6749 §3.3).
    pub fn scope(&self) -> String {
        self.scopes.join(" ")
    }

    /// What to trust for the endpoints beyond the system CAs.
    pub fn trust(&self) -> crate::tls::TlsTrust {
        crate::tls::TlsTrust {
            ca_file: self.ca_file.clone(),
            cert_sha256: None,
        }
    }
}

/// Why a sign-in or a token refresh failed. Messages are one line and never hold a token.
#[derive(Debug, Error)]
pub enum OAuth2Error {
    /// The refresh token was refused (revoked, expired) or the server rejected a fresh access
    /// token: only a new interactive sign-in helps.
    #[error(
        "the OAuth2 sign-in for {account} is no longer valid ({reason}): run `mailbag login \
         {account}` to sign in again"
    )]
    SignInAgain { account: String, reason: String },
    /// The access token `oauth2_token_command` printed was refused, also after running it
    /// again.
    #[error(
        "the server refused the access token from oauth2_token_command twice ({reason}): sign \
         in again with your token broker"
    )]
    BrokerTokenRefused { reason: String },
    /// No refresh token is stored yet.
    #[error("{account} is not signed in yet: run `mailbag login {account}`")]
    NotSignedIn { account: String },
    /// The account's OAuth2 settings are incomplete.
    #[error("cannot sign in {account} with OAuth2: {reason}")]
    Config { account: String, reason: String },
    /// The token or device endpoint could not be reached or answered nonsense.
    #[error("the authorization server {host} failed: {reason}")]
    Http { host: String, reason: String },
    /// The authorization server answered with an OAuth2 error (RFC 6749 §5.2).
    #[error("the authorization server refused: {error}{}", .description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        error: String,
        description: Option<String>,
    },
    /// The user said no on the consent page, or the device code was denied.
    #[error("the sign-in was denied at the authorization server")]
    Denied,
    /// The device code expired before the user finished.
    #[error("the device code expired before the sign-in was finished: start again")]
    DeviceExpired,
    /// The redirect did not come back as expected (wrong state, no code, bad URL).
    #[error("the sign-in redirect is not usable: {0}")]
    Redirect(String),
    /// The loopback listener failed.
    #[error("cannot listen for the sign-in redirect on 127.0.0.1: {0}")]
    Listen(#[source] std::io::Error),
    /// The keyring cannot keep the refresh token, or `oauth2_token_command` failed; `reason`
    /// names what to do for an OAuth2 account.
    #[error("OAuth2 for {account}: {reason}")]
    Unavailable { account: String, reason: String },
    /// The keyring failed in another way.
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    /// The sign-in was given up (the prompt was closed, stdin ended).
    #[error("the sign-in was cancelled")]
    Cancelled,
}

/// Makes `account` an OAuth2 account with `provider`'s presets: the setup wizard's step before
/// [`sign_in`]. Password settings are cleared; URLs and scopes stay unset (the presets apply).
pub fn configure(
    account: &mut Account,
    provider: OAuth2Provider,
    client_id: &str,
    client_secret: Option<&str>,
) {
    account.auth = Some(crate::config::Auth::OAuth2);
    account.password_command = None;
    account.oauth2_provider = Some(provider);
    account.oauth2_client_id = Some(client_id.to_string());
    account.oauth2_client_secret = client_secret.map(|s| crate::config::Hidden(s.to_string()));
}

/// The error for a server that refused a freshly obtained access token too: `why` is the
/// server's (cleaned) reason. The in-memory token is dropped; no third attempt is made.
pub fn refused_twice(account_name: &str, account: &Account, why: &str) -> OAuth2Error {
    store::forget(account);
    let reason = format!("the server refused a fresh access token: {why}");
    if account.oauth2_token_command.is_some() {
        OAuth2Error::BrokerTokenRefused { reason }
    } else {
        OAuth2Error::SignInAgain {
            account: account_name.to_string(),
            reason,
        }
    }
}

/// Reads `n` random bytes from the kernel (for PKCE verifiers and `state`).
pub(crate) fn random_bytes(n: usize) -> Result<Vec<u8>, OAuth2Error> {
    use std::io::Read;
    let mut out = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut out))
        .map_err(|e| OAuth2Error::Redirect(format!("no random numbers from /dev/urandom: {e}")))?;
    Ok(out)
}

/// base64url without padding (RFC 4648 §5), as PKCE uses (RFC 7636 Appendix A): the
/// standard alphabet's `+` and `/` swapped for `-` and `_`, the `=` padding dropped.
pub(crate) fn base64url(data: &[u8]) -> String {
    crate::pop3::command::base64_encode(data)
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Protocol, Security};

    #[test]
    fn configured_accounts_get_the_presets_and_pass_the_config_checks() {
        let mut a = crate::wizard::blank_account(
            "me@gmail.com",
            Protocol::Imap,
            "imap.gmail.com",
            Security::Tls,
        );
        a.password_command = Some("pass gmail".into());
        configure(&mut a, OAuth2Provider::Google, "id.apps", Some("GOCSPX-x"));
        let ep = Endpoints::for_account("gmail", &a).expect("endpoints");
        assert_eq!(ep.token_url, GOOGLE_TOKEN_URL);
        assert_eq!(ep.auth_url.as_deref(), Some(GOOGLE_AUTH_URL));
        assert_eq!(ep.scope(), "https://mail.google.com/");
        assert!(!format!("{ep:?}").contains("GOCSPX"));
        // What the wizard saves reads back as the same, valid account.
        let text =
            crate::wizard::save::add_account_text("", std::path::Path::new("c.toml"), "gmail", &a)
                .expect("saved text validates");
        assert!(text.contains("auth = \"oauth2\""), "{text}");
        let parsed = crate::config::parse(&text, std::path::Path::new("c.toml")).expect("valid");
        assert_eq!(parsed.account("gmail"), Some(&a));

        let mut m = crate::wizard::blank_account(
            "me@outlook.com",
            Protocol::Pop3,
            "outlook.office365.com",
            Security::Tls,
        );
        configure(&mut m, OAuth2Provider::Microsoft, "guid", None);
        let ep = Endpoints::for_account("o", &m).expect("endpoints");
        assert_eq!(ep.device_url.as_deref(), Some(MICROSOFT_DEVICE_URL));
        assert!(ep.scopes.iter().any(|s| s == "offline_access"));
        m.oauth2_token_url = Some("https://login.microsoftonline.com/t/oauth2/v2.0/token".into());
        let ep = Endpoints::for_account("o", &m).expect("endpoints");
        assert!(
            ep.token_url.contains("/t/"),
            "an explicit URL wins over the preset"
        );
    }

    #[test]
    fn base64url_matches_rfc4648_vectors() {
        let cases: [(&[u8], &str); 7] = [
            (b"", ""),
            (b"f", "Zg"),
            (b"fo", "Zm8"),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg"),
            (b"fooba", "Zm9vYmE"),
            (&[0xfb, 0xff, 0xfe], "-__-"),
        ];
        for (input, want) in cases {
            assert_eq!(base64url(input), want);
        }
    }

    #[test]
    fn random_bytes_differ() {
        let a = random_bytes(32).expect("urandom");
        let b = random_bytes(32).expect("urandom");
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
