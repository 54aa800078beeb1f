//! Saving a new account: the password into the OS keyring (or a `password_command`), the
//! account into `config.toml`.
//!
//! The config is edited with `toml_edit`, so the accounts already there, their order, and every
//! comment and blank line stay as they were; the new `[accounts.NAME]` table is appended. The
//! result is validated with [`crate::config::parse`] before it is written, and written to a
//! temporary file that is renamed over the old one, so a crash leaves the old file or the new
//! one, never half of it. The password is never written to the config.

use std::io::Write;
use std::path::{Path, PathBuf};

use thiserror::Error;
use toml_edit::{DocumentMut, Item, Table, value};

use super::security_name;
use crate::config::{self, Account, ConfigError};
use crate::credentials::{self, CredentialError, CredentialKind, Secret};

/// Where the new account's password will come from.
#[derive(Debug)]
pub enum PasswordChoice<'a> {
    /// Store this password in the OS keyring.
    Keyring(&'a Secret),
    /// Keep `password_command` (already set on the account); nothing is stored.
    Command,
    /// An OAuth2 account: its refresh token was stored by the sign-in; no password.
    OAuth2,
}

/// Why the account could not be saved. Nothing is written when this is returned.
#[derive(Debug, Error)]
pub enum SaveError {
    #[error("an account named {name} already exists in {path}: pick another --name")]
    Exists { name: String, path: String },
    #[error("the existing config cannot be extended: {0}")]
    Config(#[from] ConfigError),
    #[error("the new account would not be valid: {0}")]
    Invalid(String),
    #[error(
        "no OS keyring service is reachable (no D-Bus session / Secret Service): use \
         --password-command (password_command) instead"
    )]
    NoKeyring,
    #[error("cannot store the password: {0}")]
    Keyring(CredentialError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// What was saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    pub config_file: PathBuf,
    /// The password went to the keyring (else a password command is used).
    pub in_keyring: bool,
}

/// Adds `account` as `[accounts.NAME]` to the config text `existing`, keeping everything else.
///
/// `path` is only used in messages. The result has been validated.
pub fn add_account_text(
    existing: &str,
    path: &Path,
    name: &str,
    account: &Account,
) -> Result<String, SaveError> {
    let current = config::parse(existing, path)?;
    if current.accounts.contains_key(name) {
        return Err(SaveError::Exists {
            name: name.to_string(),
            path: path.display().to_string(),
        });
    }
    let mut doc: DocumentMut = existing
        .parse()
        .map_err(|e: toml_edit::TomlError| SaveError::Invalid(e.to_string()))?;
    if !doc.contains_key("accounts") {
        let mut t = Table::new();
        t.set_implicit(true);
        doc.insert("accounts", Item::Table(t));
    }
    let Some(accounts) = doc.get_mut("accounts").and_then(Item::as_table_mut) else {
        return Err(SaveError::Invalid("accounts is not a table".into()));
    };
    accounts.insert(name, Item::Table(account_table(account)));
    let mut text = doc.to_string();
    if !existing.is_empty() && !existing.ends_with('\n') {
        // NOTE: toml_edit keeps the old last line as it was; make sure the new table starts
        // on a line of its own (it does), and the file ends with a newline.
        text.push('\n');
    }
    let parsed = config::parse(&text, path).map_err(|e| SaveError::Invalid(e.to_string()))?;
    if parsed.accounts.get(name) != Some(account) {
        return Err(SaveError::Invalid(
            "the written account does not read back the same".into(),
        ));
    }
    Ok(text)
}

/// The `[accounts.NAME]` table, keys in the documented order, unset keys left out.
fn account_table(a: &Account) -> Table {
    let mut t = Table::new();
    let path = |p: &Path| p.display().to_string();
    t.insert("email", value(&a.email));
    if let Some(v) = &a.display_name {
        t.insert("display_name", value(v));
    }
    t.insert("protocol", value(a.protocol.as_str()));
    t.insert("host", value(&a.host));
    if let Some(p) = a.port {
        t.insert("port", value(i64::from(p)));
    }
    t.insert("security", value(security_name(a.security)));
    if let Some(v) = &a.username {
        t.insert("username", value(v));
    }
    if let Some(v) = a.auth {
        let name = match v {
            crate::config::Auth::Password => "password",
            crate::config::Auth::Apop => "apop",
            crate::config::Auth::OAuth2 => "oauth2",
        };
        t.insert("auth", value(name));
    }
    if let Some(v) = &a.password_command {
        t.insert("password_command", value(v));
    }
    oauth2_keys(&mut t, a);
    if let Some(v) = &a.tls_ca_file {
        t.insert("tls_ca_file", value(path(v)));
    }
    if let Some(v) = &a.tls_cert_sha256 {
        t.insert("tls_cert_sha256", value(v));
    }
    if let Some(v) = a.leave_on_server {
        t.insert("leave_on_server", value(v));
    }
    if let Some(v) = a.delete_after_days {
        t.insert("delete_after_days", value(i64::from(v)));
    }
    if let Some(v) = &a.mbox_path {
        t.insert("mbox_path", value(path(v)));
    }
    if let Some(v) = a.delete_on_server_when_deleted_locally {
        t.insert("delete_on_server_when_deleted_locally", value(v));
    }
    if let Some(v) = a.idle {
        t.insert("idle", value(v));
    }
    if let Some(v) = a.prefetch {
        t.insert("prefetch", value(i64::from(v)));
    }
    t
}

/// The `oauth2_*` keys, in the documented order.
fn oauth2_keys(t: &mut Table, a: &Account) {
    use crate::config::{OAuth2Mechanism, OAuth2Provider};
    if let Some(v) = a.oauth2_provider {
        let name = match v {
            OAuth2Provider::Google => "google",
            OAuth2Provider::Microsoft => "microsoft",
            OAuth2Provider::Custom => "custom",
        };
        t.insert("oauth2_provider", value(name));
    }
    let strings = [
        ("oauth2_client_id", a.oauth2_client_id.as_ref()),
        (
            "oauth2_client_secret",
            a.oauth2_client_secret.as_ref().map(|s| &s.0),
        ),
        ("oauth2_auth_url", a.oauth2_auth_url.as_ref()),
        ("oauth2_token_url", a.oauth2_token_url.as_ref()),
        ("oauth2_device_url", a.oauth2_device_url.as_ref()),
    ];
    for (key, v) in strings {
        if let Some(v) = v {
            t.insert(key, value(v));
        }
    }
    if let Some(scopes) = &a.oauth2_scopes {
        t.insert(
            "oauth2_scopes",
            value(
                scopes
                    .iter()
                    .map(String::as_str)
                    .collect::<toml_edit::Array>(),
            ),
        );
    }
    if let Some(v) = &a.oauth2_token_command {
        t.insert("oauth2_token_command", value(v));
    }
    if let Some(v) = a.oauth2_mechanism {
        let name = match v {
            OAuth2Mechanism::Oauthbearer => "oauthbearer",
            OAuth2Mechanism::Xoauth2 => "xoauth2",
        };
        t.insert("oauth2_mechanism", value(name));
    }
    if let Some(v) = &a.oauth2_ca_file {
        t.insert("oauth2_ca_file", value(v.display().to_string()));
    }
}

/// Saves the account: validates the new config, stores the password (keyring), then writes
/// the config. On error nothing is written (a password stored just before a failed write is
/// removed again).
pub fn save_account(
    config_file: &Path,
    name: &str,
    account: &Account,
    password: PasswordChoice<'_>,
) -> Result<Saved, SaveError> {
    let existing = match std::fs::read_to_string(config_file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(SaveError::Write {
                path: config_file.display().to_string(),
                source,
            });
        }
    };
    let text = add_account_text(&existing, config_file, name, account)?;
    let in_keyring = match password {
        PasswordChoice::Keyring(secret) => {
            if account.password_command.is_some() {
                return Err(SaveError::Invalid(
                    "an account with password_command keeps no password in the keyring".into(),
                ));
            }
            credentials::store_password(name, account, secret).map_err(|e| {
                if e.kind() == CredentialKind::NoService {
                    SaveError::NoKeyring
                } else {
                    SaveError::Keyring(e)
                }
            })?;
            true
        }
        PasswordChoice::Command => {
            if account.password_command.is_none() {
                return Err(SaveError::Invalid(
                    "no password_command is set and no password was given".into(),
                ));
            }
            false
        }
        PasswordChoice::OAuth2 => {
            if !account.uses_oauth2() {
                return Err(SaveError::Invalid(
                    "an account without auth = \"oauth2\" needs a password".into(),
                ));
            }
            false
        }
    };
    if let Err(e) = write_atomically(config_file, &text) {
        if in_keyring {
            let _ = credentials::delete_password(name, account);
        }
        return Err(e);
    }
    Ok(Saved {
        config_file: config_file.to_path_buf(),
        in_keyring,
    })
}

/// Writes `text` to a temporary file beside `path`, syncs it, and renames it over `path`.
fn write_atomically(path: &Path, text: &str) -> Result<(), SaveError> {
    let err = |source| SaveError::Write {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".mailbag-new");
    let tmp = PathBuf::from(tmp_name);
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        // NOTE: a new config may hold oauth2_client_secret; only its owner reads it. An
        // existing file keeps its own mode (below).
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&tmp)?;
        if let Ok(meta) = std::fs::metadata(path) {
            let _ = f.set_permissions(meta.permissions());
        }
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Protocol, Security};
    use crate::wizard::blank_account;

    const EXISTING: &str = r#"# mailbag config — hand written
# with two accounts

[accounts.work]   # the office
email = "me@work.example"
protocol = "imap"
host = "imap.work.example"
# a comment inside
prefetch = 20

[accounts.home]
email = "me@home.example"
protocol = "pop3"
host = "pop.home.example"
leave_on_server = true   # keep it
"#;

    fn new_account() -> Account {
        let mut a = blank_account(
            "new@example.org",
            Protocol::Pop3,
            "pop.example.org",
            Security::Starttls,
        );
        a.port = Some(1110);
        a.username = Some("new".into());
        a.password_command = Some("pass show \"mail/new\"".into());
        a.leave_on_server = Some(true);
        a.delete_after_days = Some(14);
        a.tls_cert_sha256 = Some("ab".repeat(32));
        a
    }

    #[test]
    fn keeps_comments_order_and_existing_accounts() {
        let path = Path::new("/tmp/config.toml");
        let text = add_account_text(EXISTING, path, "new", &new_account()).expect("saved");
        assert!(
            text.starts_with(EXISTING),
            "the old text is kept verbatim:\n{text}"
        );
        let added = text.get(EXISTING.len()..).unwrap_or("");
        assert!(added.contains("[accounts.new]"), "{added}");
        let config = config::parse(&text, path).expect("valid");
        let names: Vec<&String> = config.accounts.keys().collect();
        assert_eq!(names, ["home", "new", "work"]);
        assert_eq!(config.account("new"), Some(&new_account()));
        // The keys come in the documented order.
        let email = added.find("email").expect("email");
        let host = added.find("host").expect("host");
        let leave = added.find("leave_on_server").expect("leave");
        assert!(email < host && host < leave, "{added}");
    }

    #[test]
    fn creates_a_config_from_nothing() {
        let path = Path::new("/tmp/config.toml");
        let a = blank_account(
            "me@example.org",
            Protocol::Imap,
            "imap.example.org",
            Security::Tls,
        );
        let text = add_account_text("", path, "me", &a).expect("saved");
        assert_eq!(
            text,
            "[accounts.me]\nemail = \"me@example.org\"\nprotocol = \"imap\"\nhost = \"imap.example.org\"\nsecurity = \"tls\"\n"
        );
    }

    #[test]
    fn refuses_duplicates_broken_files_and_bad_names() {
        let path = Path::new("/tmp/config.toml");
        let a = new_account();
        let e = add_account_text(EXISTING, path, "work", &a).expect_err("dup");
        assert!(matches!(e, SaveError::Exists { .. }), "{e}");
        assert!(e.to_string().contains("already exists"), "{e}");
        let e = add_account_text("[accounts.x\n", path, "new", &a).expect_err("broken");
        assert!(matches!(e, SaveError::Config(_)), "{e}");
        let e = add_account_text("", path, "", &a).expect_err("empty name");
        assert!(matches!(e, SaveError::Invalid(_)), "{e}");
    }

    #[test]
    fn save_writes_the_file_and_keeps_no_password() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("sub/config.toml");
        let a = new_account();
        let saved = save_account(&path, "new", &a, PasswordChoice::Command).expect("saved");
        assert!(!saved.in_keyring);
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains("password_command"), "{text}");
        assert!(!text.contains("password ="), "{text}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o077, 0, "a new config is private: {mode:o}");
        }
        let mut b = a.clone();
        b.password_command = None;
        let e = save_account(&path, "other", &b, PasswordChoice::Command).expect_err("no pw");
        assert!(matches!(e, SaveError::Invalid(_)), "{e}");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            text,
            "unchanged"
        );
    }
}
