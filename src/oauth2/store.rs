//! Where OAuth2 tokens live, and refreshing access tokens.
//!
//! - The **refresh token** is in the OS keyring, service [`KEYRING_SERVICE`], user
//!   `oauth2-refresh:<username>@<host>` (see [`refresh_user`]): a distinct entry next to the
//!   password one. With `oauth2_token_command` nothing is stored: the command prints an access
//!   token whenever one is needed (an outside broker keeps its own refresh token).
//! - **Access tokens** stay in process memory only, with their expiry; one is refreshed when
//!   it has less than [`REFRESH_MARGIN`] left, and when the server rejects it.
//! - A **rotated refresh token** (Microsoft issues a new one on every refresh) is written to
//!   a second entry (`oauth2-refresh-next:...`) first, then over the main entry, and only then
//!   is the second entry removed. A crash at any point leaves one entry holding the newest
//!   token, and [`load_refresh_token`] prefers the second entry when it exists. All of this
//!   happens before the new access token is handed out, so nothing can use the session before
//!   its refresh token is safe.
//!
//! Refreshes in one process are serialised by a lock: two connections refreshing at once
//! would otherwise both spend the same (single-use) refresh token.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Endpoints, OAuth2Error, token};
use crate::config::Account;
use crate::credentials::{self, CredentialError, KEYRING_SERVICE, Secret};

/// An access token with less than this left is refreshed before use.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(120);

/// How long an access token is assumed to live when the server does not say.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// Access tokens in memory, keyed by [`credentials::keyring_user`].
static CACHE: Mutex<Option<HashMap<String, Cached>>> = Mutex::new(None);

/// Serialises refreshes in this process.
static REFRESH_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// SHA-256 of refresh tokens the server refused (`invalid_grant`): asking again with the same
/// token cannot succeed, so the engine's reconnect attempts fail at once instead of calling
/// the token endpoint every time. A new sign-in stores a different token.
static REFUSED: Mutex<Vec<[u8; 32]>> = Mutex::new(Vec::new());

fn fingerprint(token: &Secret) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.expose().as_bytes()).into()
}

fn was_refused(token: &Secret) -> bool {
    let fp = fingerprint(token);
    REFUSED.lock().is_ok_and(|list| list.contains(&fp))
}

fn mark_refused(token: &Secret) {
    if let Ok(mut list) = REFUSED.lock() {
        list.push(fingerprint(token));
    }
}

struct Cached {
    token: Secret,
    expires: Instant,
}

/// The keyring user of an account's refresh token.
pub fn refresh_user(account: &Account) -> String {
    format!("oauth2-refresh:{}", credentials::keyring_user(account))
}

/// The keyring user of the entry a rotated refresh token is written to first.
fn next_user(account: &Account) -> String {
    format!("oauth2-refresh-next:{}", credentials::keyring_user(account))
}

fn entry(account_name: &str, user: &str) -> Result<keyring::Entry, CredentialError> {
    keyring::Entry::new(KEYRING_SERVICE, user)
        .map_err(|e| credentials::keyring_error(account_name, e))
}

fn get(account_name: &str, user: &str) -> Result<Option<Secret>, CredentialError> {
    match entry(account_name, user)?.get_password() {
        Ok(p) => Ok(Some(Secret::new(p))),
        Err(keyring::Error::NoEntry) => Ok(None),
        Err(e) => Err(credentials::keyring_error(account_name, e)),
    }
}

/// The stored refresh token, `None` if the account has not signed in. Blocking.
pub fn load_refresh_token(
    account_name: &str,
    account: &Account,
) -> Result<Option<Secret>, CredentialError> {
    // NOTE: the "next" entry only exists if a rotation was interrupted; it is the newer one.
    if let Some(next) = get(account_name, &next_user(account))? {
        return Ok(Some(next));
    }
    get(account_name, &refresh_user(account))
}

/// Stores `token` as the account's refresh token, crash-safely (see the module docs).
/// Blocking.
pub fn save_refresh_token(
    account_name: &str,
    account: &Account,
    token: &Secret,
) -> Result<(), CredentialError> {
    let next = entry(account_name, &next_user(account))?;
    next.set_password(token.expose())
        .map_err(|e| credentials::keyring_error(account_name, e))?;
    entry(account_name, &refresh_user(account))?
        .set_password(token.expose())
        .map_err(|e| credentials::keyring_error(account_name, e))?;
    match next.delete_credential() {
        Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
        Err(e) => Err(credentials::keyring_error(account_name, e)),
    }
}

/// Removes the stored refresh token (and forgets the access token); `Ok(false)` if there was
/// none. Blocking.
pub fn delete_refresh_token(
    account_name: &str,
    account: &Account,
) -> Result<bool, CredentialError> {
    forget(account);
    let mut found = false;
    for user in [next_user(account), refresh_user(account)] {
        match entry(account_name, &user)?.delete_credential() {
            Ok(()) => found = true,
            Err(keyring::Error::NoEntry) => {}
            Err(e) => return Err(credentials::keyring_error(account_name, e)),
        }
    }
    Ok(found)
}

/// Removes the refresh tokens that sign-ins stored for `signed_in` when no OAuth2 account in
/// `config_file` uses them: a setup that signed in and then was cancelled, failed, or saved
/// another server's account leaves no live credential behind. A config that cannot be read
/// keeps them (what uses them cannot be told). Returns how many were removed. Blocking.
pub fn forget_unsaved(
    config_file: &std::path::Path,
    signed_in: &[Account],
) -> Result<usize, CredentialError> {
    if signed_in.is_empty() {
        return Ok(0);
    }
    let Ok(config) = crate::config::load(config_file) else {
        return Ok(0);
    };
    let used: std::collections::HashSet<String> = config
        .accounts
        .values()
        .filter(|a| a.uses_oauth2())
        .map(refresh_user)
        .collect();
    let mut removed = 0;
    let mut seen = std::collections::HashSet::new();
    for account in signed_in {
        let user = refresh_user(account);
        if used.contains(&user) || !seen.insert(user) {
            continue;
        }
        if delete_refresh_token("the new account", account)? {
            removed += 1;
        }
    }
    Ok(removed)
}

/// Forgets the in-memory access token of `account`.
pub fn forget(account: &Account) {
    if let Ok(mut guard) = CACHE.lock()
        && let Some(map) = guard.as_mut()
    {
        map.remove(&credentials::keyring_user(account));
    }
}

/// Remembers a fresh access token for `account`.
pub(crate) fn remember(account: &Account, token: &Secret, expires_in: Option<u64>) {
    let life = expires_in.map_or(DEFAULT_LIFETIME, Duration::from_secs);
    if let Ok(mut guard) = CACHE.lock() {
        guard.get_or_insert_with(HashMap::new).insert(
            credentials::keyring_user(account),
            Cached {
                token: Secret::new(token.expose().to_string()),
                expires: Instant::now() + life,
            },
        );
    }
}

fn cached(account: &Account) -> Option<Secret> {
    let guard = CACHE.lock().ok()?;
    let c = guard.as_ref()?.get(&credentials::keyring_user(account))?;
    (c.expires > Instant::now() + REFRESH_MARGIN).then(|| Secret::new(c.token.expose().into()))
}

/// An access token for `account`: the one in memory while it has time left, else a new one
/// from the refresh token (or from `oauth2_token_command`).
pub async fn access_token(account_name: &str, account: &Account) -> Result<Secret, OAuth2Error> {
    if let Some(command) = &account.oauth2_token_command {
        return run_token_command(account_name, command).await;
    }
    if let Some(token) = cached(account) {
        return Ok(token);
    }
    refresh_now(account_name, account, None).await
}

/// A new access token after the server refused `rejected`: the cached one is dropped and the
/// refresh token spent (or `oauth2_token_command` run again).
pub async fn renew_access_token(
    account_name: &str,
    account: &Account,
    rejected: &Secret,
) -> Result<Secret, OAuth2Error> {
    if let Some(command) = &account.oauth2_token_command {
        return run_token_command(account_name, command).await;
    }
    refresh_now(account_name, account, Some(rejected)).await
}

async fn run_token_command(account_name: &str, command: &str) -> Result<Secret, OAuth2Error> {
    let command = command.to_string();
    blocking(account_name, move |name| {
        credentials::run_password_command(name, &command, credentials::PASSWORD_COMMAND_TIMEOUT)
    })
    .await
}

/// Runs the keyring or command call `f` (given the account name) on the blocking pool.
async fn blocking<T: Send + 'static>(
    account_name: &str,
    f: impl FnOnce(&str) -> Result<T, CredentialError> + Send + 'static,
) -> Result<T, OAuth2Error> {
    let name = account_name.to_string();
    tokio::task::spawn_blocking(move || f(&name))
        .await
        .map_err(|_| OAuth2Error::Cancelled)?
        .map_err(|e| in_oauth2_terms(account_name, e))
}

/// A keyring or `oauth2_token_command` failure with advice for an OAuth2 account: the
/// generic messages point to `password_command`, which is a config error with `auth =
/// "oauth2"`.
fn in_oauth2_terms(account_name: &str, e: CredentialError) -> OAuth2Error {
    let reason = match e {
        CredentialError::NoService { .. } => "no OS keyring service is reachable (no D-Bus \
             session / Secret Service) to keep the refresh token: set oauth2_token_command in \
             config.toml instead"
            .to_string(),
        CredentialError::Locked { .. } => "the OS keyring is locked or refused access: unlock \
             it, or set oauth2_token_command in config.toml"
            .to_string(),
        CredentialError::CommandSpawn { source, .. } => {
            format!("cannot run oauth2_token_command: {source}")
        }
        CredentialError::CommandFailed { status, stderr, .. } => {
            format!("oauth2_token_command failed ({status}): {stderr}")
        }
        CredentialError::CommandTimedOut { seconds, .. } => {
            format!("oauth2_token_command did not finish within {seconds} s and was killed")
        }
        CredentialError::CommandEmpty { .. } => {
            "oauth2_token_command printed no access token on stdout".to_string()
        }
        CredentialError::CommandNotUtf8 { .. } => {
            "oauth2_token_command printed bytes that are not UTF-8".to_string()
        }
        other => return OAuth2Error::Credentials(other),
    };
    OAuth2Error::Unavailable {
        account: account_name.to_string(),
        reason,
    }
}

async fn refresh_now(
    account_name: &str,
    account: &Account,
    rejected: Option<&Secret>,
) -> Result<Secret, OAuth2Error> {
    let _guard = REFRESH_LOCK.lock().await;
    // NOTE: another connection may have refreshed while this one waited for the lock.
    if let Some(token) = cached(account)
        && rejected.is_none_or(|r| r.expose() != token.expose())
    {
        return Ok(token);
    }
    forget(account);
    let ep = Endpoints::for_account(account_name, account)?;
    let sign_in_again = || OAuth2Error::SignInAgain {
        account: account_name.to_string(),
        reason: "the refresh token was refused".into(),
    };
    // NOTE: a refused token is read from the keyring once more before giving up: another
    // mailbag process may have spent it and stored its rotated successor in the meantime.
    // Each pass either returns or marks one more token refused, so this ends.
    let tokens = loop {
        let owned = account.clone();
        let stored = blocking(account_name, move |name| load_refresh_token(name, &owned)).await?;
        let Some(refresh_token) = stored else {
            return Err(OAuth2Error::NotSignedIn {
                account: account_name.to_string(),
            });
        };
        if was_refused(&refresh_token) {
            return Err(sign_in_again());
        }
        match token::refresh(&ep, &refresh_token).await {
            Ok(t) => break t,
            Err(OAuth2Error::Refused { error, .. }) if error == "invalid_grant" => {
                mark_refused(&refresh_token);
            }
            Err(e) => return Err(e),
        }
    };
    if let Some(rotated) = tokens.refresh_token {
        let owned = account.clone();
        blocking(account_name, move |name| {
            save_refresh_token(name, &owned, &rotated)
        })
        .await?;
    }
    remember(account, &tokens.access_token, tokens.expires_in);
    Ok(tokens.access_token)
}

/// Stores the tokens a sign-in produced: the refresh token in the keyring (required), the
/// access token in memory.
pub async fn store_sign_in(
    account_name: &str,
    account: &Account,
    tokens: token::Tokens,
) -> Result<(), OAuth2Error> {
    let Some(refresh) = tokens.refresh_token else {
        return Err(OAuth2Error::Refused {
            error: "no refresh token".into(),
            description: Some(
                "the server issued no refresh token; check the scopes (offline_access for \
                 Microsoft)"
                    .into(),
            ),
        });
    };
    let owned = account.clone();
    blocking(account_name, move |name| {
        save_refresh_token(name, &owned, &refresh)
    })
    .await?;
    remember(account, &tokens.access_token, tokens.expires_in);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_failures_point_to_oauth2_token_command() {
        let errors = [
            CredentialError::NoService {
                source: "no bus".into(),
            },
            CredentialError::Locked {
                account: "work".into(),
                source: "locked".into(),
            },
            CredentialError::CommandFailed {
                account: "work".into(),
                status: "exit status: 1".into(),
                stderr: "broker says no".into(),
            },
            CredentialError::CommandEmpty {
                account: "work".into(),
            },
        ];
        for e in errors {
            let msg = in_oauth2_terms("work", e).to_string();
            assert!(msg.contains("oauth2_token_command"), "{msg}");
            assert!(!msg.contains("password_command"), "{msg}");
            assert!(msg.contains("work"), "{msg}");
        }
        let other = CredentialError::Keyring {
            account: "work".into(),
            reason: "odd".into(),
        };
        assert!(matches!(
            in_oauth2_terms("work", other),
            OAuth2Error::Credentials(_)
        ));
    }

    #[test]
    fn refused_refresh_tokens_are_remembered_by_hash_only() {
        let t = Secret::new("rt-refused-once".into());
        assert!(!was_refused(&t));
        mark_refused(&t);
        assert!(was_refused(&t));
        assert!(!was_refused(&Secret::new("rt-another".into())));
    }
}
