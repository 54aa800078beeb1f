//! Configuration: the TOML schema, where files live, and errors that name file, line and key.
//!
//! The config file is `$XDG_CONFIG_HOME/mailbag/config.toml` unless `--config FILE` or
//! `MAILBAG_CONFIG` names another. Data (the cache, mbox files) lives in
//! `$XDG_DATA_HOME/mailbag/`. Every key is documented in `docs/configuration.md`.
//!
//! NOTE: the struct below is the whole schema. Keys are snake_case, unknown keys are
//! rejected, and protocol-specific keys on the wrong protocol are rejected after parsing.
//!
//! [`parse`] reads the text twice: `toml_edit` keeps every key's byte span, so each error can
//! name `file:line: dotted.key`; `serde` (through `serde_path_to_error`, which records the key
//! path of a type error) builds the typed [`Config`]. The file holds no secrets; a `password`
//! key gets a message pointing to the keyring or `password_command` and is never echoed.
//! Default ports: 993 and 995 for implicit TLS (RFC 8314), 143 (RFC 3501 §2.1) and 110
//! (RFC 1939 §3) otherwise.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Accounts keyed by their name (the `work` in `[accounts.work]`).
    #[serde(default)]
    pub accounts: BTreeMap<String, Account>,
    /// How the TUI looks and behaves (`[ui]`).
    #[serde(default)]
    pub ui: UiConfig,
    /// Key bindings (`[keys]`): action name → key, or several keys separated by spaces.
    ///
    /// Validated by [`parse`] against [`crate::ui::keymap`]; unknown actions and unreadable
    /// keys are errors with line and key.
    #[serde(default)]
    pub keys: BTreeMap<String, String>,
}

/// Where the reader shows a message.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ReaderLayout {
    /// Below the message list, which stays visible. The default.
    #[default]
    Split,
    /// In place of the list and sidebar.
    Full,
}

/// The `[ui]` table.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UiConfig {
    /// Mouse wheel scrolls, a click selects (default true).
    #[serde(default = "yes")]
    pub mouse: bool,
    /// Split (default) or full-screen reader.
    #[serde(default)]
    pub reader: ReaderLayout,
    /// How long an unread message must stay open before it is marked read (default 0).
    #[serde(default)]
    pub mark_read_delay_ms: u64,
    /// Start with conversations grouped (default false; `t` toggles).
    #[serde(default)]
    pub threads: bool,
}

fn yes() -> bool {
    true
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            mouse: true,
            reader: ReaderLayout::Split,
            mark_read_delay_ms: 0,
            threads: false,
        }
    }
}

/// Which receiving protocol an account uses.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Imap,
    Pop3,
}

/// How the connection is secured.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Implicit TLS from the first byte (IMAP 993, POP3 995). The default.
    #[default]
    Tls,
    /// Plain connect, then STARTTLS / STLS; refuse to continue if the server does not offer it.
    Starttls,
    /// No encryption at all. Only when the user writes it explicitly.
    None,
}

/// How mailbag proves who the user is.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Auth {
    /// The password, over TLS (IMAP `AUTHENTICATE PLAIN`/`LOGIN`, POP3 `AUTH PLAIN`/`USER`).
    #[default]
    Password,
    /// POP3 APOP (RFC 1939 §7): an MD5 digest instead of the password, for old servers.
    Apop,
    /// OAuth2 (RFC 6749) access tokens over SASL OAUTHBEARER (RFC 7628) or XOAUTH2.
    #[serde(rename = "oauth2")]
    OAuth2,
}

/// Which OAuth2 authorization server an account signs in with.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OAuth2Provider {
    /// Google (Gmail): endpoints and scope preset.
    Google,
    /// Microsoft (Outlook.com, Hotmail, Microsoft 365): endpoints and scopes preset.
    Microsoft,
    /// Any other server: `oauth2_token_url` and `oauth2_auth_url` / `oauth2_device_url` given.
    Custom,
}

/// Which SASL mechanism carries the OAuth2 access token.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OAuth2Mechanism {
    /// RFC 7628 OAUTHBEARER.
    Oauthbearer,
    /// Google's XOAUTH2 (also offered by Microsoft and Dovecot).
    Xoauth2,
}

/// A config value that must never be printed (`oauth2_client_secret`): `Debug` shows `***`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Hidden(pub String);

impl std::fmt::Debug for Hidden {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// One account, as written in `[accounts.NAME]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub email: String,
    pub display_name: Option<String>,
    pub protocol: Protocol,
    pub host: String,
    pub port: Option<u16>,
    #[serde(default)]
    pub security: Security,
    pub username: Option<String>,
    /// "password" (default), "oauth2" or, POP3 only, "apop".
    pub auth: Option<Auth>,
    pub password_command: Option<String>,
    /// With `auth = "oauth2"`: google, microsoft or custom.
    pub oauth2_provider: Option<OAuth2Provider>,
    /// With `auth = "oauth2"`: the client id of the app registration.
    pub oauth2_client_id: Option<String>,
    /// With `auth = "oauth2"`: the client secret, when the registration has one.
    pub oauth2_client_secret: Option<Hidden>,
    /// With `auth = "oauth2"`: the authorization endpoint (preset for google and microsoft).
    pub oauth2_auth_url: Option<String>,
    /// With `auth = "oauth2"`: the token endpoint (preset for google and microsoft).
    pub oauth2_token_url: Option<String>,
    /// With `auth = "oauth2"`: the device authorization endpoint (RFC 8628).
    pub oauth2_device_url: Option<String>,
    /// With `auth = "oauth2"`: the scopes to ask for (preset for google and microsoft).
    pub oauth2_scopes: Option<Vec<String>>,
    /// With `auth = "oauth2"`: a command that prints an access token (an outside token broker).
    pub oauth2_token_command: Option<String>,
    /// With `auth = "oauth2"`: force one SASL mechanism instead of choosing from capabilities.
    pub oauth2_mechanism: Option<OAuth2Mechanism>,
    /// With `auth = "oauth2"`: one more CA (PEM) to trust for the token endpoints.
    pub oauth2_ca_file: Option<PathBuf>,
    pub tls_ca_file: Option<PathBuf>,
    pub tls_cert_sha256: Option<String>,
    /// POP3 only (default true).
    pub leave_on_server: Option<bool>,
    /// POP3 only.
    pub delete_after_days: Option<u32>,
    /// POP3 only.
    pub mbox_path: Option<PathBuf>,
    /// POP3 only (default false): a message deleted here is deleted on the server too.
    pub delete_on_server_when_deleted_locally: Option<bool>,
    /// IMAP only (default true).
    pub idle: Option<bool>,
    /// IMAP only (default 100): how many of the newest INBOX bodies to keep for offline reading.
    pub prefetch: Option<u32>,
}

/// A configuration problem, naming the file, line and key.
///
/// Messages never contain a secret: the config holds none by design, and a `password` key is
/// reported without its value.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file is not valid TOML. `key` is the key on that line, when it can be told.
    #[error(
        "{path}:{line}: {}syntax error: {message}",
        .key.as_deref().map(|k| format!("{k}: ")).unwrap_or_default()
    )]
    Syntax {
        path: String,
        line: usize,
        key: Option<String>,
        message: String,
    },
    /// The TOML is valid but a key is unknown, missing, of the wrong type or out of range.
    #[error("{path}:{line}: {key}: {message}")]
    Invalid {
        path: String,
        line: usize,
        key: String,
        message: String,
    },
    /// The file exists but could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl ConfigError {
    /// The 1-based line the problem is on, when it is about the file's contents.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Syntax { line, .. } | ConfigError::Invalid { line, .. } => Some(*line),
            ConfigError::Read { .. } => None,
        }
    }

    /// The dotted key (`accounts.work.port`) the problem is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            ConfigError::Syntax { key, .. } => key.as_deref(),
            ConfigError::Read { .. } => None,
        }
    }
}

/// Keys allowed at the top level of the file.
pub const TOP_LEVEL_KEYS: &[&str] = &["accounts", "ui", "keys"];

/// Keys allowed in the `[ui]` table.
pub const UI_KEYS: &[&str] = &["mouse", "reader", "mark_read_delay_ms", "threads"];

/// Keys allowed in an `[accounts.NAME]` table, in the order the docs list them.
pub const ACCOUNT_KEYS: &[&str] = &[
    "email",
    "display_name",
    "protocol",
    "host",
    "port",
    "security",
    "username",
    "auth",
    "password_command",
    "oauth2_provider",
    "oauth2_client_id",
    "oauth2_client_secret",
    "oauth2_auth_url",
    "oauth2_token_url",
    "oauth2_device_url",
    "oauth2_scopes",
    "oauth2_token_command",
    "oauth2_mechanism",
    "oauth2_ca_file",
    "tls_ca_file",
    "tls_cert_sha256",
    "leave_on_server",
    "delete_after_days",
    "mbox_path",
    "delete_on_server_when_deleted_locally",
    "idle",
    "prefetch",
];

/// Keys every account must have.
const REQUIRED_ACCOUNT_KEYS: &[&str] = &["email", "protocol", "host"];

/// Keys that only make sense for POP3 accounts.
pub const POP3_ONLY_KEYS: &[&str] = &[
    "leave_on_server",
    "delete_after_days",
    "mbox_path",
    "delete_on_server_when_deleted_locally",
];

/// Keys that only make sense for IMAP accounts.
pub const IMAP_ONLY_KEYS: &[&str] = &["idle", "prefetch"];

/// Keys that only make sense with `auth = "oauth2"`.
pub const OAUTH2_ONLY_KEYS: &[&str] = &[
    "oauth2_provider",
    "oauth2_client_id",
    "oauth2_client_secret",
    "oauth2_auth_url",
    "oauth2_token_url",
    "oauth2_device_url",
    "oauth2_scopes",
    "oauth2_token_command",
    "oauth2_mechanism",
    "oauth2_ca_file",
];

/// What the message says when someone puts a password into the config.
const PASSWORD_KEY_MESSAGE: &str = "passwords are not stored in config.toml: use the OS keyring \
     (mailbag setup) or password_command";

impl Config {
    /// The account called `name`, if the config has one.
    pub fn account(&self, name: &str) -> Option<&Account> {
        self.accounts.get(name)
    }
}

impl Protocol {
    /// The name as written in the config (`imap`, `pop3`).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Imap => "imap",
            Protocol::Pop3 => "pop3",
        }
    }
}

impl Account {
    /// The port to connect to: `port` if set, else the well-known port for protocol and security.
    ///
    /// IMAP: 993 with implicit TLS (RFC 8314), 143 otherwise (RFC 3501 §2.1).
    /// POP3: 995 with implicit TLS (RFC 8314), 110 otherwise (RFC 1939 §3).
    pub fn port(&self) -> u16 {
        if let Some(port) = self.port {
            return port;
        }
        match (self.protocol, self.security) {
            (Protocol::Imap, Security::Tls) => 993,
            (Protocol::Imap, Security::Starttls | Security::None) => 143,
            (Protocol::Pop3, Security::Tls) => 995,
            (Protocol::Pop3, Security::Starttls | Security::None) => 110,
        }
    }

    /// The login name: `username` if set, else the email address.
    pub fn username(&self) -> &str {
        self.username.as_deref().unwrap_or(&self.email)
    }

    /// Whether POP3 leaves fetched mail on the server (default true).
    pub fn leave_on_server(&self) -> bool {
        self.leave_on_server.unwrap_or(true)
    }

    /// Whether a message deleted locally is deleted on the POP3 server too (default false).
    pub fn delete_on_server_when_deleted_locally(&self) -> bool {
        self.delete_on_server_when_deleted_locally.unwrap_or(false)
    }

    /// How many of the newest INBOX bodies IMAP keeps for offline reading (default 100).
    pub fn prefetch(&self) -> u64 {
        u64::from(self.prefetch.unwrap_or(100))
    }

    /// Whether IMAP waits for new mail with IDLE (default true).
    pub fn idle(&self) -> bool {
        self.idle.unwrap_or(true)
    }

    /// The mbox file POP3 mail is appended to.
    ///
    /// `mbox_path` if set (a leading `~/` is the home directory, a relative path is relative to
    /// the data directory), else `data_dir/mail/<account_name>.mbox`.
    pub fn mbox_path(&self, data_dir: &Path, account_name: &str) -> PathBuf {
        match &self.mbox_path {
            Some(p) => {
                let p = expand_home(p);
                if p.is_absolute() { p } else { data_dir.join(p) }
            }
            None => data_dir.join("mail").join(format!("{account_name}.mbox")),
        }
    }

    /// `tls_ca_file` with a leading `~/` expanded to the home directory.
    pub fn tls_ca_file(&self) -> Option<PathBuf> {
        self.tls_ca_file.as_deref().map(expand_home)
    }

    /// `oauth2_ca_file` with a leading `~/` expanded to the home directory.
    pub fn oauth2_ca_file(&self) -> Option<PathBuf> {
        self.oauth2_ca_file.as_deref().map(expand_home)
    }

    /// Whether this account signs in with OAuth2 (`auth = "oauth2"`).
    pub fn uses_oauth2(&self) -> bool {
        self.auth == Some(Auth::OAuth2)
    }

    /// The pinned certificate fingerprint as 32 bytes, if `tls_cert_sha256` is set.
    ///
    /// After [`parse`] the field holds 64 lower-case hex digits, so this is `Some` whenever the
    /// key was given.
    pub fn tls_cert_sha256_bytes(&self) -> Option<[u8; 32]> {
        self.tls_cert_sha256.as_deref().and_then(parse_fingerprint)
    }
}

/// `~/x` → `$HOME/x`; anything else unchanged.
fn expand_home(p: &Path) -> PathBuf {
    if let Ok(rest) = p.strip_prefix("~")
        && let Some(home) = directories::BaseDirs::new().map(|b| b.home_dir().to_path_buf())
    {
        return home.join(rest);
    }
    p.to_path_buf()
}

/// Parses a SHA-256 fingerprint: 64 hex digits, optionally with a colon between each byte.
fn parse_fingerprint(text: &str) -> Option<[u8; 32]> {
    let digits: Vec<u8> = text.bytes().filter(|b| *b != b':').collect();
    if digits.len() != 64 {
        return None;
    }
    // NOTE: colons, when present, must sit between every pair of digits (the `openssl x509
    // -fingerprint` form); a stray colon is more likely a paste error than a format.
    if text.contains(':') {
        let groups: Vec<&str> = text.split(':').collect();
        if groups.len() != 32 || groups.iter().any(|g| g.len() != 2) {
            return None;
        }
    }
    let mut out = [0u8; 32];
    for (slot, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let hi = hex_value(*pair.first()?)?;
        let lo = hex_value(*pair.get(1)?)?;
        *slot = hi << 4 | lo;
    }
    Some(out)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Reads and validates the config file at `path`.
///
/// A file that does not exist is not an error: it gives an empty [`Config`] (no accounts), so
/// a first run can start the setup wizard.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
        Err(source) => Err(ConfigError::Read {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// Parses and validates config `text`; `path` is only used in error messages.
///
/// Checks run in the order a user would fix them: TOML syntax, then the shape (unknown,
/// misplaced and missing keys, account names), then types and enum values, then values
/// (empty strings, port 0, fingerprints, keys for the other protocol).
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let src = Source { text, path };
    let doc = toml_edit::Document::parse(text)
        .map_err(|e| src.syntax(e.span().map_or(0, |s| s.start), e.message()))?;
    check_shape(&src, doc.as_item())?;

    let de = toml::Deserializer::parse(text)
        .map_err(|e| src.syntax(e.span().map_or(0, |s| s.start), e.message()))?;
    let mut config: Config =
        serde_path_to_error::deserialize(de).map_err(|e| type_error(&src, doc.as_item(), &e))?;

    for (name, account) in &mut config.accounts {
        check_account(&src, doc.as_item(), name, account)?;
    }
    if let Err(e) = crate::ui::keymap::Keymap::from_config(&config.keys) {
        return Err(src.invalid_at(doc.as_item(), &["keys", e.action.as_str()], e.message));
    }
    Ok(config)
}

/// The text being parsed and its file name, for turning offsets into `file:line`.
struct Source<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Source<'_> {
    fn path_string(&self) -> String {
        self.path.display().to_string()
    }

    /// The 1-based line holding byte `offset`.
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text
            .as_bytes()
            .get(..end)
            .map_or(0, |b| b.iter().filter(|c| **c == b'\n').count())
            + 1
    }

    /// The line of the key at `segments` (or of its nearest ancestor that has a position).
    fn line_of_key(&self, root: &toml_edit::Item, segments: &[&str]) -> usize {
        self.line_of(key_offset(root, segments).unwrap_or(0))
    }

    /// A syntax error at byte `offset`.
    ///
    /// NOTE: the message never quotes the offending text: with `password = hunter2` (unquoted)
    /// that text would be the password.
    fn syntax(&self, offset: usize, message: &str) -> ConfigError {
        let line = self.line_of(offset);
        ConfigError::Syntax {
            path: self.path_string(),
            line,
            key: syntax_key(self.text, line),
            message: one_line(message),
        }
    }

    fn invalid(&self, line: usize, segments: &[&str], message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path_string(),
            line,
            key: dotted(segments),
            message: message.into(),
        }
    }

    /// An error about the key at `segments`, on that key's line.
    fn invalid_at(
        &self,
        root: &toml_edit::Item,
        segments: &[&str],
        message: impl Into<String>,
    ) -> ConfigError {
        self.invalid(self.line_of_key(root, segments), segments, message)
    }
}

/// The dotted key assigned on 1-based `line` of a file that did not parse, if it is plain.
///
/// The table comes from the nearest `[header]` above. This is a best guess for the message
/// only (a header-like line inside a multi-line string would mislead it), so anything that is
/// not made of bare keys gives `None`.
fn syntax_key(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let before = lines.get(..line.checked_sub(1)?)?;
    let here = lines.get(line.checked_sub(1)?)?.trim();
    let (lhs, _) = here.split_once('=')?;
    let key = bare_dotted(lhs)?;
    let header = before
        .iter()
        .rev()
        .map(|l| l.trim())
        .find(|l| l.starts_with('['));
    match header {
        None => Some(key),
        Some(h) => {
            let inner = h.trim_start_matches('[').split(']').next()?;
            Some(format!("{}.{key}", bare_dotted(inner)?))
        }
    }
}

/// `a . b-c` → `a.b-c` when every part is a bare TOML key, else `None`.
fn bare_dotted(text: &str) -> Option<String> {
    let parts: Vec<&str> = text.split('.').map(str::trim).collect();
    let bare = |p: &&str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    parts.iter().all(bare).then(|| parts.join("."))
}

/// The byte offset where the key at `segments` is written, or the nearest ancestor's.
fn key_offset(root: &toml_edit::Item, segments: &[&str]) -> Option<usize> {
    let mut item = root;
    let mut best = None;
    for seg in segments {
        let Some((key, next)) = item.as_table_like().and_then(|t| t.get_key_value(seg)) else {
            break;
        };
        if let Some(span) = key.span().or_else(|| next.span()) {
            best = Some(span.start);
        }
        item = next;
    }
    best
}

/// `accounts.work.port`, quoting segments that are not bare TOML keys.
fn dotted(segments: &[&str]) -> String {
    segments
        .iter()
        .map(|s| {
            let bare = !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if bare {
                (*s).to_string()
            } else {
                format!("{s:?}")
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Joins a possibly multi-line message into one line.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Checks keys before types: unknown keys, `password`, account names, missing required keys.
fn check_shape(src: &Source<'_>, root: &toml_edit::Item) -> Result<(), ConfigError> {
    let Some(top) = root.as_table_like() else {
        return Ok(());
    };
    for (key, _) in top.iter() {
        if !TOP_LEVEL_KEYS.contains(&key) {
            return Err(unknown_key(src, root, &[key], TOP_LEVEL_KEYS));
        }
    }
    if let Some(ui) = top.get("ui") {
        let Some(table) = ui.as_table_like() else {
            return Err(src.invalid_at(
                root,
                &["ui"],
                format!(
                    "invalid type: found {}, expected a table ([ui])",
                    describe(ui)
                ),
            ));
        };
        for (key, _) in table.iter() {
            if !UI_KEYS.contains(&key) {
                return Err(unknown_key(src, root, &["ui", key], UI_KEYS));
            }
        }
    }
    if let Some(keys) = top.get("keys") {
        let Some(table) = keys.as_table_like() else {
            return Err(src.invalid_at(
                root,
                &["keys"],
                format!(
                    "invalid type: found {}, expected a table of key bindings ([keys])",
                    describe(keys)
                ),
            ));
        };
        let actions = crate::ui::keymap::Action::names();
        for (key, _) in table.iter() {
            if !actions.contains(&key) {
                return Err(unknown_key(src, root, &["keys", key], &actions));
            }
        }
    }
    let Some(accounts_item) = top.get("accounts") else {
        return Ok(());
    };
    let Some(accounts) = accounts_item.as_table_like() else {
        return Err(src.invalid_at(
            root,
            &["accounts"],
            format!(
                "invalid type: found {}, expected a table of accounts ([accounts.NAME])",
                describe(accounts_item)
            ),
        ));
    };
    for (name, account_item) in accounts.iter() {
        if let Err(why) = check_account_name(name) {
            return Err(src.invalid_at(root, &["accounts", name], why));
        }
        let Some(account) = account_item.as_table_like() else {
            return Err(src.invalid_at(
                root,
                &["accounts", name],
                format!(
                    "invalid type: found {}, expected a table of account settings ([accounts.{name}])",
                    describe(account_item)
                ),
            ));
        };
        for (key, _) in account.iter() {
            if key == "password" {
                return Err(src.invalid_at(root, &["accounts", name, key], PASSWORD_KEY_MESSAGE));
            }
            if !ACCOUNT_KEYS.contains(&key) {
                return Err(unknown_key(
                    src,
                    root,
                    &["accounts", name, key],
                    ACCOUNT_KEYS,
                ));
            }
        }
        for required in REQUIRED_ACCOUNT_KEYS {
            if !account.contains_key(required) {
                // NOTE: the line of the `[accounts.NAME]` header, where the key belongs.
                return Err(src.invalid(
                    src.line_of_key(root, &["accounts", name]),
                    &["accounts", name, required],
                    format!("missing required key: add `{required} = ...` to [accounts.{name}]"),
                ));
            }
        }
    }
    Ok(())
}

/// Account names become file names (`mail/NAME.mbox`), so they are kept to safe characters.
fn check_account_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("account names must not be empty".to_string());
    }
    if name.starts_with('.') {
        return Err("account names must not start with '.'".to_string());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(
            "account names may only contain letters A-Z a-z, digits 0-9, '_', '.' and '-'"
                .to_string(),
        );
    }
    Ok(())
}

fn unknown_key(
    src: &Source<'_>,
    root: &toml_edit::Item,
    segments: &[&str],
    allowed: &[&str],
) -> ConfigError {
    let key = segments.last().copied().unwrap_or_default();
    let hint = allowed
        .iter()
        .find(|a| edit_distance(a, key) <= 2)
        .map(|a| format!(" (did you mean `{a}`?)"))
        .unwrap_or_default();
    src.invalid_at(
        root,
        segments,
        format!(
            "unknown key{hint}; allowed keys here: {}",
            allowed.join(", ")
        ),
    )
}

/// Levenshtein distance, for "did you mean" hints on short key names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let sub = prev.get(j).copied().unwrap_or(usize::MAX) + usize::from(ca != *cb);
            let del = prev.get(j + 1).copied().unwrap_or(usize::MAX) + 1;
            let ins = cur.last().copied().unwrap_or(usize::MAX) + 1;
            cur.push(sub.min(del).min(ins));
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(usize::MAX)
}

/// What a key accepts, in words for error messages.
fn expected(key: &str) -> Option<&'static str> {
    Some(match key {
        "email" => "an email address (a string)",
        "display_name"
        | "username"
        | "password_command"
        | "oauth2_client_id"
        | "oauth2_client_secret"
        | "oauth2_token_command" => "a string",
        "oauth2_provider" => "\"google\", \"microsoft\" or \"custom\"",
        "oauth2_auth_url" | "oauth2_token_url" | "oauth2_device_url" => "an https:// URL",
        "oauth2_scopes" => "a list of scope strings, e.g. [\"https://mail.google.com/\"]",
        "oauth2_mechanism" => "\"oauthbearer\" or \"xoauth2\"",
        "oauth2_ca_file" => "a file path (a string)",
        "protocol" => "\"imap\" or \"pop3\"",
        "host" => "a host name (a string)",
        "port" => "a port number 1-65535",
        "security" => "\"tls\", \"starttls\" or \"none\"",
        "auth" => "\"password\", \"oauth2\" or \"apop\" (POP3 only)",
        "tls_ca_file" | "mbox_path" => "a file path (a string)",
        "tls_cert_sha256" => "a SHA-256 fingerprint: 32 hex bytes, with or without colons",
        "leave_on_server" | "idle" | "delete_on_server_when_deleted_locally" => "true or false",
        "delete_after_days" => "a whole number of days (0 or more)",
        "prefetch" => "a whole number of messages (0 or more)",
        "mouse" | "threads" => "true or false",
        "reader" => "\"split\" or \"full\"",
        "mark_read_delay_ms" => "a whole number of milliseconds (0 or more)",
        _ => return None,
    })
}

/// A short description of a TOML value for messages: `string "x"`, `integer 7`, `a table`.
fn describe(item: &toml_edit::Item) -> String {
    use toml_edit::Value;
    match item {
        toml_edit::Item::Value(Value::String(s)) => {
            let v = s.value();
            let short: String = v.chars().take(40).collect();
            let dots = if short.len() < v.len() { "..." } else { "" };
            format!("string {:?}", format!("{short}{dots}"))
        }
        toml_edit::Item::Value(Value::Integer(i)) => format!("integer {}", i.value()),
        toml_edit::Item::Value(Value::Float(f)) => format!("float {}", f.value()),
        toml_edit::Item::Value(Value::Boolean(b)) => format!("boolean {}", b.value()),
        toml_edit::Item::Value(Value::Datetime(_)) => "a date-time".to_string(),
        toml_edit::Item::Value(Value::Array(_)) => "an array".to_string(),
        toml_edit::Item::Value(Value::InlineTable(_)) | toml_edit::Item::Table(_) => {
            "a table".to_string()
        }
        toml_edit::Item::ArrayOfTables(_) => "an array of tables".to_string(),
        toml_edit::Item::None => "nothing".to_string(),
    }
}

/// Turns a serde error at a key path into a message that says what the key accepts.
fn type_error(
    src: &Source<'_>,
    root: &toml_edit::Item,
    err: &serde_path_to_error::Error<toml::de::Error>,
) -> ConfigError {
    let segments: Vec<String> = err
        .path()
        .iter()
        .map(|s| match s {
            serde_path_to_error::Segment::Map { key } => key.clone(),
            serde_path_to_error::Segment::Seq { index } => index.to_string(),
            serde_path_to_error::Segment::Enum { variant } => variant.clone(),
            serde_path_to_error::Segment::Unknown => "?".to_string(),
        })
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let inner = err.inner();
    let line = match key_offset(root, &segments) {
        Some(offset) => src.line_of(offset),
        None => src.line_of(inner.span().map_or(0, |s| s.start)),
    };
    let leaf = segments.last().copied().unwrap_or_default();
    let item = segments.iter().try_fold(root, |item, seg| {
        item.as_table_like().and_then(|t| t.get(seg))
    });
    let want = if segments.first() == Some(&"keys") && segments.len() == 2 {
        Some("a key, or keys separated by spaces (e.g. \"j\" or \"j Down\")")
    } else {
        expected(leaf)
    };
    let message = match (want, item) {
        (Some(want), Some(item)) => {
            let what = if inner.message().starts_with("invalid type") {
                "invalid type"
            } else {
                "invalid value"
            };
            // NOTE: a secret is never echoed, even when it has the wrong type.
            let found = if leaf == "oauth2_client_secret" {
                "a value (not shown)".to_string()
            } else {
                describe(item)
            };
            format!("{what}: {found}, expected {want}")
        }
        _ => one_line(inner.message()),
    };
    src.invalid(line, &segments, message)
}

/// Value checks that serde cannot express; normalises `tls_cert_sha256`.
fn check_account(
    src: &Source<'_>,
    root: &toml_edit::Item,
    name: &str,
    account: &mut Account,
) -> Result<(), ConfigError> {
    let at = |key: &str, message: String| src.invalid_at(root, &["accounts", name, key], message);
    if account.email.trim().is_empty() {
        return Err(at(
            "email",
            "must not be empty: expected an email address".into(),
        ));
    }
    if account.host.trim().is_empty() {
        return Err(at("host", "must not be empty: expected a host name".into()));
    }
    if account.host.chars().any(char::is_whitespace) {
        return Err(at(
            "host",
            "must not contain spaces: expected a host name".into(),
        ));
    }
    if account.port == Some(0) {
        return Err(at(
            "port",
            "invalid value: integer 0, expected a port number 1-65535".into(),
        ));
    }
    if account.username.as_deref().is_some_and(|u| u.is_empty()) {
        return Err(at(
            "username",
            "must not be empty: leave it out to log in with the email address".into(),
        ));
    }
    if account
        .display_name
        .as_deref()
        .is_some_and(|d| d.trim().is_empty())
    {
        return Err(at(
            "display_name",
            "must not be empty: leave it out instead".into(),
        ));
    }
    if account
        .password_command
        .as_deref()
        .is_some_and(|c| c.trim().is_empty())
    {
        return Err(at(
            "password_command",
            "must not be empty: give a shell command that prints the password, or leave it out \
             to use the OS keyring"
                .into(),
        ));
    }
    for (key, path) in [
        ("tls_ca_file", &account.tls_ca_file),
        ("mbox_path", &account.mbox_path),
        ("oauth2_ca_file", &account.oauth2_ca_file),
    ] {
        if path.as_deref().is_some_and(|p| p.as_os_str().is_empty()) {
            return Err(at(key, "must not be empty: expected a file path".into()));
        }
    }
    if let Some(fp) = &account.tls_cert_sha256 {
        match parse_fingerprint(fp.trim()) {
            Some(bytes) => {
                account.tls_cert_sha256 = Some(bytes.iter().map(|b| format!("{b:02x}")).collect());
            }
            None => {
                return Err(at(
                    "tls_cert_sha256",
                    "invalid value: expected a SHA-256 fingerprint: 32 hex bytes (64 hex digits), \
                     with or without a colon between each byte"
                        .into(),
                ));
            }
        }
    }
    if account.auth == Some(Auth::Apop) && account.protocol == Protocol::Imap {
        return Err(at(
            "auth",
            "\"apop\" only applies to POP3 accounts; IMAP accounts use \"password\" or \
             \"oauth2\""
                .into(),
        ));
    }
    check_oauth2(&at, account)?;
    let (wrong, other) = match account.protocol {
        Protocol::Imap => (POP3_ONLY_KEYS, "POP3"),
        Protocol::Pop3 => (IMAP_ONLY_KEYS, "IMAP"),
    };
    let present = |key: &str| match key {
        "leave_on_server" => account.leave_on_server.is_some(),
        "delete_after_days" => account.delete_after_days.is_some(),
        "mbox_path" => account.mbox_path.is_some(),
        "delete_on_server_when_deleted_locally" => {
            account.delete_on_server_when_deleted_locally.is_some()
        }
        "idle" => account.idle.is_some(),
        "prefetch" => account.prefetch.is_some(),
        _ => false,
    };
    if let Some(key) = wrong.iter().copied().find(|k| present(k)) {
        return Err(at(
            key,
            format!(
                "only applies to {other} accounts, but this account has protocol = \"{}\"",
                account.protocol.as_str()
            ),
        ));
    }
    if account.delete_after_days.is_some() && account.leave_on_server == Some(false) {
        return Err(at(
            "delete_after_days",
            "has no effect with leave_on_server = false (mail is deleted from the server right \
             after download): remove one of them"
                .into(),
        ));
    }
    Ok(())
}

/// The `auth = "oauth2"` rules: OAuth2 keys only with it, and enough of them to sign in.
fn check_oauth2(
    at: &dyn Fn(&str, String) -> ConfigError,
    account: &Account,
) -> Result<(), ConfigError> {
    let present = |key: &str| match key {
        "oauth2_provider" => account.oauth2_provider.is_some(),
        "oauth2_client_id" => account.oauth2_client_id.is_some(),
        "oauth2_client_secret" => account.oauth2_client_secret.is_some(),
        "oauth2_auth_url" => account.oauth2_auth_url.is_some(),
        "oauth2_token_url" => account.oauth2_token_url.is_some(),
        "oauth2_device_url" => account.oauth2_device_url.is_some(),
        "oauth2_scopes" => account.oauth2_scopes.is_some(),
        "oauth2_token_command" => account.oauth2_token_command.is_some(),
        "oauth2_mechanism" => account.oauth2_mechanism.is_some(),
        "oauth2_ca_file" => account.oauth2_ca_file.is_some(),
        _ => false,
    };
    if !account.uses_oauth2() {
        if let Some(key) = OAUTH2_ONLY_KEYS.iter().copied().find(|k| present(k)) {
            return Err(at(
                key,
                "only applies with auth = \"oauth2\": add it to this account or remove the key"
                    .into(),
            ));
        }
        return Ok(());
    }
    if account.password_command.is_some() {
        return Err(at(
            "password_command",
            "does not apply with auth = \"oauth2\": use oauth2_token_command for an outside \
             token broker, or remove it"
                .into(),
        ));
    }
    let empty = |v: &Option<String>| v.as_deref().is_some_and(|s| s.trim().is_empty());
    for (key, value) in [
        ("oauth2_client_id", &account.oauth2_client_id),
        ("oauth2_token_command", &account.oauth2_token_command),
        ("oauth2_auth_url", &account.oauth2_auth_url),
        ("oauth2_token_url", &account.oauth2_token_url),
        ("oauth2_device_url", &account.oauth2_device_url),
    ] {
        if empty(value) {
            return Err(at(
                key,
                "must not be empty: give a value or leave the key out".into(),
            ));
        }
    }
    for (key, value) in [
        ("oauth2_auth_url", &account.oauth2_auth_url),
        ("oauth2_token_url", &account.oauth2_token_url),
        ("oauth2_device_url", &account.oauth2_device_url),
    ] {
        if let Some(url) = value
            && crate::wizard::http::Url::parse(url).is_err()
        {
            return Err(at(
                key,
                "invalid value: expected an https:// URL (tokens never travel over plain http)"
                    .into(),
            ));
        }
    }
    if let Some(scopes) = &account.oauth2_scopes {
        if scopes.is_empty() {
            // NOTE: an empty list would also replace the preset's scopes (and with them
            // Microsoft's offline_access, without which no refresh token is issued).
            return Err(at(
                "oauth2_scopes",
                "must not be empty: give at least one scope, or leave the key out".into(),
            ));
        }
        if scopes
            .iter()
            .any(|s| s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(at(
                "oauth2_scopes",
                "invalid value: each scope must be one non-empty word without spaces".into(),
            ));
        }
    }
    if account.oauth2_token_command.is_some() {
        // NOTE: the broker signs in and refreshes; these keys would be silently ignored.
        let ignored = OAUTH2_ONLY_KEYS
            .iter()
            .copied()
            .filter(|k| !matches!(*k, "oauth2_token_command" | "oauth2_mechanism"))
            .find(|k| present(k));
        if let Some(key) = ignored {
            return Err(at(
                key,
                "does not apply with oauth2_token_command (the token broker signs in): remove \
                 one of them"
                    .into(),
            ));
        }
        return Ok(());
    }
    let Some(provider) = account.oauth2_provider else {
        return Err(at(
            "auth",
            "auth = \"oauth2\" needs oauth2_provider (\"google\", \"microsoft\" or \"custom\") \
             and oauth2_client_id, or oauth2_token_command"
                .into(),
        ));
    };
    if account.oauth2_client_id.is_none() {
        return Err(at(
            "oauth2_provider",
            "needs oauth2_client_id: register mailbag as an app with the provider (see \
             docs/oauth2.md)"
                .into(),
        ));
    }
    if provider == OAuth2Provider::Custom {
        if account.oauth2_token_url.is_none() {
            return Err(at(
                "oauth2_provider",
                "\"custom\" needs oauth2_token_url".into(),
            ));
        }
        if account.oauth2_auth_url.is_none() && account.oauth2_device_url.is_none() {
            return Err(at(
                "oauth2_provider",
                "\"custom\" needs oauth2_auth_url or oauth2_device_url (or both)".into(),
            ));
        }
        if account.oauth2_scopes.is_none() {
            return Err(at(
                "oauth2_provider",
                "\"custom\" needs oauth2_scopes".into(),
            ));
        }
    }
    Ok(())
}

/// Where mailbag keeps its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// The config file in use.
    pub config_file: PathBuf,
    /// The data directory (cache, mbox files).
    pub data_dir: PathBuf,
}

impl Paths {
    /// The paths for a config file given on the command line or in `MAILBAG_CONFIG`, else XDG.
    pub fn resolve(config_override: Option<&Path>) -> Paths {
        let dirs = directories::ProjectDirs::from("", "", "mailbag");
        let config_file = config_override
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("MAILBAG_CONFIG").map(PathBuf::from))
            .or_else(|| dirs.as_ref().map(|d| d.config_dir().join("config.toml")))
            .unwrap_or_else(|| PathBuf::from("mailbag.toml"));
        let data_dir = dirs
            .as_ref()
            .map(|d| d.data_dir().to_path_buf())
            .unwrap_or_else(|| PathBuf::from(".mailbag"));
        Paths {
            config_file,
            data_dir,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "/home/u/.config/mailbag/config.toml";

    fn parse_ok(text: &str) -> Config {
        match parse(text, Path::new(FILE)) {
            Ok(c) => c,
            Err(e) => panic!("expected a valid config, got: {e}"),
        }
    }

    /// Parses `text`, expects an error at `line` about `key`, and returns the message.
    fn expect_err(text: &str, line: usize, key: &str) -> String {
        let err = match parse(text, Path::new(FILE)) {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e,
        };
        let msg = err.to_string();
        let prefix = format!("{FILE}:{line}: {key}: ");
        assert!(
            msg.starts_with(&prefix),
            "expected prefix {prefix:?} in {msg:?}"
        );
        assert_eq!(err.line(), Some(line), "{msg}");
        assert_eq!(err.key(), Some(key), "{msg}");
        assert!(!msg.contains('\n'), "message must be one line: {msg:?}");
        msg
    }

    const IMAP: &str = r#"
[accounts.work]
email = "me@example.com"
protocol = "imap"
host = "imap.example.com"
"#;

    const POP3: &str = r#"
[accounts.home]
email = "me@example.org"
protocol = "pop3"
host = "pop.example.org"
"#;

    #[test]
    fn minimal_accounts_parse_with_defaults() {
        let c = parse_ok(&format!("{IMAP}{POP3}"));
        let work = c.account("work").expect("work");
        assert_eq!(work.protocol, Protocol::Imap);
        assert_eq!(work.security, Security::Tls);
        assert_eq!(work.port(), 993);
        assert_eq!(work.username(), "me@example.com");
        assert!(work.idle());
        let home = c.account("home").expect("home");
        assert_eq!(home.port(), 995);
        assert!(home.leave_on_server());
        assert_eq!(
            home.mbox_path(Path::new("/data"), "home"),
            PathBuf::from("/data/mail/home.mbox")
        );
        assert!(c.account("nope").is_none());
    }

    #[test]
    fn default_ports_follow_protocol_and_security() {
        let mut a = parse_ok(IMAP).accounts.remove("work").expect("work");
        let cases = [
            (Protocol::Imap, Security::Tls, 993),
            (Protocol::Imap, Security::Starttls, 143),
            (Protocol::Imap, Security::None, 143),
            (Protocol::Pop3, Security::Tls, 995),
            (Protocol::Pop3, Security::Starttls, 110),
            (Protocol::Pop3, Security::None, 110),
        ];
        for (protocol, security, port) in cases {
            a.protocol = protocol;
            a.security = security;
            assert_eq!(a.port(), port, "{protocol:?} {security:?}");
        }
        a.port = Some(1143);
        assert_eq!(a.port(), 1143);
    }

    #[test]
    fn all_keys_parse() {
        let c = parse_ok(
            r#"
[accounts.work]
email = "me@example.com"
display_name = "Me"
protocol = "imap"
host = "imap.example.com"
port = 1993
security = "starttls"
username = "me"
password_command = "pass show mail/work"
tls_ca_file = "/etc/ssl/my-ca.pem"
tls_cert_sha256 = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89"
idle = false

[accounts.pop]
email = "me@example.org"
protocol = "pop3"
host = "pop.example.org"
security = "none"
leave_on_server = true
delete_after_days = 14
mbox_path = "pop.mbox"
"#,
        );
        let w = c.account("work").expect("work");
        assert_eq!(w.port(), 1993);
        assert_eq!(w.username(), "me");
        assert!(!w.idle());
        assert_eq!(w.display_name.as_deref(), Some("Me"));
        assert_eq!(
            w.tls_cert_sha256.as_deref(),
            Some("abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789")
        );
        let bytes = w.tls_cert_sha256_bytes().expect("fingerprint");
        assert_eq!(bytes[0], 0xab);
        assert_eq!(bytes[31], 0x89);
        let p = c.account("pop").expect("pop");
        assert_eq!(p.port(), 110);
        assert_eq!(p.delete_after_days, Some(14));
        assert_eq!(
            p.mbox_path(Path::new("/data"), "pop"),
            PathBuf::from("/data/pop.mbox")
        );
    }

    #[test]
    fn fingerprint_without_colons_in_any_case_is_normalised() {
        let fp = "ABCDEF0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789";
        let c = parse_ok(&format!("{IMAP}tls_cert_sha256 = \"{fp}\"\n"));
        assert_eq!(
            c.account("work").and_then(|a| a.tls_cert_sha256.clone()),
            Some(fp.to_ascii_lowercase())
        );
    }

    #[test]
    fn absolute_mbox_path_is_kept() {
        let c = parse_ok(&format!("{POP3}mbox_path = \"/var/mail/me\"\n"));
        let a = c.account("home").expect("home");
        assert_eq!(
            a.mbox_path(Path::new("/data"), "home"),
            PathBuf::from("/var/mail/me")
        );
    }

    #[test]
    fn empty_file_has_no_accounts() {
        assert_eq!(parse_ok(""), Config::default());
        assert_eq!(parse_ok("# only a comment\n"), Config::default());
    }

    #[test]
    fn syntax_error_names_file_and_line() {
        let text = "[accounts.work]\nemail = \"a@b\"\nport = \nhost = \"x\"\n";
        let err = parse(text, Path::new(FILE)).expect_err("syntax error");
        let msg = err.to_string();
        assert!(matches!(err, ConfigError::Syntax { line: 3, .. }), "{msg}");
        assert!(
            msg.starts_with(&format!("{FILE}:3: accounts.work.port: syntax error: ")),
            "{msg}"
        );
        assert_eq!(err.key(), Some("accounts.work.port"));
        assert!(!msg.contains('\n'), "{msg:?}");
    }

    #[test]
    fn syntax_error_never_quotes_the_offending_value() {
        let text = format!("{IMAP}password = hunter2\n");
        let err = parse(&text, Path::new(FILE)).expect_err("unquoted");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("{FILE}:6: accounts.work.password: syntax error: ")),
            "{msg}"
        );
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    #[test]
    fn syntax_error_key_is_only_named_when_plain() {
        assert_eq!(syntax_key("a = [1,\n", 1).as_deref(), Some("a"));
        assert_eq!(
            syntax_key("[x . y]\nb.c = \n", 2).as_deref(),
            Some("x.y.b.c")
        );
        assert_eq!(syntax_key("[\"a b\"]\nk = \n", 2), None);
        assert_eq!(syntax_key("no equals sign\n", 1), None);
        assert_eq!(syntax_key("", 1), None);
        assert_eq!(syntax_key("k = 1", 0), None);
    }

    #[test]
    fn duplicate_key_is_a_syntax_error_on_its_line() {
        let text = format!("{IMAP}host = \"again\"\n");
        let err = parse(&text, Path::new(FILE)).expect_err("duplicate");
        assert_eq!(err.line(), Some(6), "{err}");
        assert_eq!(err.key(), Some("accounts.work.host"), "{err}");
        assert!(err.to_string().contains("duplicate key"), "{err}");
    }

    #[test]
    fn unknown_top_level_key_lists_allowed_keys() {
        let msg = expect_err(&format!("theme = \"dark\"\n{IMAP}"), 1, "theme");
        assert!(msg.contains("unknown key"), "{msg}");
        assert!(msg.contains("allowed keys here: accounts"), "{msg}");
    }

    #[test]
    fn unknown_account_key_lists_allowed_keys_and_suggests() {
        let msg = expect_err(&format!("{IMAP}hots = \"x\"\n"), 6, "accounts.work.hots");
        assert!(msg.contains("did you mean `host`?"), "{msg}");
        assert!(
            msg.contains("allowed keys here: email, display_name, protocol, host, port"),
            "{msg}"
        );
        assert!(msg.contains("idle"), "{msg}");
    }

    #[test]
    fn password_key_gets_a_special_message_without_the_value() {
        let msg = expect_err(
            &format!("{IMAP}password = \"hunter2-secret\"\n"),
            6,
            "accounts.work.password",
        );
        assert!(
            msg.contains(
                "passwords are not stored in config.toml: use the OS keyring (mailbag setup) \
                 or password_command"
            ),
            "{msg}"
        );
        assert!(!msg.contains("hunter2"), "secret echoed: {msg}");
    }

    #[test]
    fn wrong_type_for_port_says_what_is_allowed() {
        let msg = expect_err(&format!("{IMAP}port = \"x\"\n"), 6, "accounts.work.port");
        assert!(
            msg.ends_with("invalid type: string \"x\", expected a port number 1-65535"),
            "{msg}"
        );
    }

    #[test]
    fn port_out_of_range_and_zero_are_rejected() {
        let msg = expect_err(&format!("{IMAP}port = 70000\n"), 6, "accounts.work.port");
        assert!(
            msg.contains("integer 70000, expected a port number 1-65535"),
            "{msg}"
        );
        let msg = expect_err(&format!("{IMAP}port = 0\n"), 6, "accounts.work.port");
        assert!(msg.contains("expected a port number 1-65535"), "{msg}");
    }

    #[test]
    fn invalid_protocol_lists_the_choices() {
        let text =
            "[accounts.work]\nemail = \"me@example.com\"\nprotocol = \"smtp\"\nhost = \"h\"\n";
        let msg = expect_err(text, 3, "accounts.work.protocol");
        assert!(msg.contains("string \"smtp\""), "{msg}");
        assert!(msg.contains("expected \"imap\" or \"pop3\""), "{msg}");
    }

    #[test]
    fn invalid_security_lists_the_choices() {
        let msg = expect_err(
            &format!("{IMAP}security = \"ssl\"\n"),
            6,
            "accounts.work.security",
        );
        assert!(
            msg.contains("expected \"tls\", \"starttls\" or \"none\""),
            "{msg}"
        );
    }

    #[test]
    fn wrong_type_for_bool_and_days() {
        let msg = expect_err(&format!("{IMAP}idle = \"yes\"\n"), 6, "accounts.work.idle");
        assert!(msg.contains("expected true or false"), "{msg}");
        let msg = expect_err(
            &format!("{POP3}delete_after_days = -1\n"),
            6,
            "accounts.home.delete_after_days",
        );
        assert!(msg.contains("expected a whole number of days"), "{msg}");
    }

    #[test]
    fn missing_required_keys_point_at_the_account_header() {
        let text = "# mail\n\n[accounts.work]\nprotocol = \"imap\"\nhost = \"h\"\n";
        let msg = expect_err(text, 3, "accounts.work.email");
        assert!(msg.contains("missing required key"), "{msg}");
        let text = "\n[accounts.work]\nemail = \"a@b\"\nhost = \"h\"\n";
        expect_err(text, 2, "accounts.work.protocol");
        let text = format!("{IMAP}\n[accounts.x]\nemail = \"a@b\"\nprotocol = \"pop3\"\n");
        expect_err(&text, 7, "accounts.x.host");
    }

    #[test]
    fn pop3_keys_on_an_imap_account_are_rejected() {
        for (key, value) in [
            ("leave_on_server", "false"),
            ("delete_after_days", "3"),
            ("mbox_path", "\"x.mbox\""),
        ] {
            let text = format!("{IMAP}port = 993\n{key} = {value}\n");
            let msg = expect_err(&text, 7, &format!("accounts.work.{key}"));
            assert!(msg.contains("only applies to POP3 accounts"), "{msg}");
            assert!(msg.contains("protocol = \"imap\""), "{msg}");
        }
    }

    #[test]
    fn idle_on_a_pop3_account_is_rejected() {
        let msg = expect_err(&format!("{POP3}idle = true\n"), 6, "accounts.home.idle");
        assert!(msg.contains("only applies to IMAP accounts"), "{msg}");
    }

    #[test]
    fn empty_host_and_email_are_rejected() {
        let text = "[accounts.work]\nemail = \"\"\nprotocol = \"imap\"\nhost = \"h\"\n";
        let msg = expect_err(text, 2, "accounts.work.email");
        assert!(msg.contains("must not be empty"), "{msg}");
        let text = "[accounts.work]\nemail = \"a@b\"\nprotocol = \"imap\"\nhost = \"  \"\n";
        let msg = expect_err(text, 4, "accounts.work.host");
        assert!(msg.contains("must not be empty"), "{msg}");
    }

    #[test]
    fn bad_fingerprints_are_rejected() {
        let good = "ab".repeat(32);
        for bad in [
            "abcd".to_string(),
            "zz".repeat(32),
            format!("{good}ab"),
            format!("a:{}", &good[1..]),
        ] {
            let msg = expect_err(
                &format!("{IMAP}tls_cert_sha256 = \"{bad}\"\n"),
                6,
                "accounts.work.tls_cert_sha256",
            );
            assert!(msg.contains("32 hex bytes"), "{msg}");
        }
    }

    #[test]
    fn empty_password_command_is_rejected() {
        let msg = expect_err(
            &format!("{IMAP}password_command = \"\"\n"),
            6,
            "accounts.work.password_command",
        );
        assert!(msg.contains("must not be empty"), "{msg}");
    }

    #[test]
    fn delete_after_days_needs_leave_on_server() {
        let text = format!("{POP3}leave_on_server = false\ndelete_after_days = 7\n");
        let msg = expect_err(&text, 7, "accounts.home.delete_after_days");
        assert!(msg.contains("leave_on_server = false"), "{msg}");
    }

    #[test]
    fn unsafe_account_names_are_rejected() {
        let body = "email = \"a@b\"\nprotocol = \"imap\"\nhost = \"h\"\n";
        let msg = expect_err(
            &format!("\n[accounts.\"my work\"]\n{body}"),
            2,
            "accounts.\"my work\"",
        );
        assert!(msg.contains("may only contain"), "{msg}");
        let msg = expect_err(
            &format!("[accounts.\".hidden\"]\n{body}"),
            1,
            "accounts.\".hidden\"",
        );
        assert!(msg.contains("must not start with '.'"), "{msg}");
        let msg = expect_err(&format!("[accounts.\"\"]\n{body}"), 1, "accounts.\"\"");
        assert!(msg.contains("must not be empty"), "{msg}");
        let msg = expect_err(
            &format!("[accounts.\"a/b\"]\n{body}"),
            1,
            "accounts.\"a/b\"",
        );
        assert!(msg.contains("may only contain"), "{msg}");
        // Dots are fine inside a name, as long as it does not start with one.
        let c = parse_ok(&format!("[accounts.\"me.work-2_x\"]\n{body}"));
        assert!(c.account("me.work-2_x").is_some());
    }

    #[test]
    fn accounts_of_the_wrong_shape_are_rejected() {
        let msg = expect_err("\naccounts = 5\n", 2, "accounts");
        assert!(msg.contains("expected a table of accounts"), "{msg}");
        let msg = expect_err("[accounts]\nwork = \"x\"\n", 2, "accounts.work");
        assert!(
            msg.contains("expected a table of account settings"),
            "{msg}"
        );
    }

    #[test]
    fn errors_in_a_later_account_name_its_line() {
        let text = format!("{IMAP}{POP3}port = \"995\"\n");
        expect_err(&text, 11, "accounts.home.port");
    }

    #[test]
    fn inline_and_dotted_accounts_get_lines_too() {
        let text = "\naccounts.work = { email = \"a@b\", protocol = \"imap\", host = \"h\", port = \"x\" }\n";
        expect_err(text, 2, "accounts.work.port");
        let text = "accounts.work.email = \"a@b\"\naccounts.work.protocol = \"imap\"\n\
                    accounts.work.host = \"h\"\naccounts.work.idle = 1\n";
        expect_err(text, 4, "accounts.work.idle");
    }

    #[test]
    fn load_of_a_missing_file_gives_no_accounts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = load(&dir.path().join("config.toml")).expect("missing file is fine");
        assert!(c.accounts.is_empty());
    }

    #[test]
    fn load_reads_the_file_and_names_it_in_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.toml");
        std::fs::write(&path, IMAP).expect("write");
        assert!(load(&path).expect("valid").account("work").is_some());
        std::fs::write(&path, format!("{IMAP}port = \"x\"\n")).expect("write");
        let msg = load(&path).expect_err("invalid").to_string();
        assert!(
            msg.starts_with(&format!("{}:6: accounts.work.port: ", path.display())),
            "{msg}"
        );
        // A directory where the file should be is a read error, not "no config".
        let err = load(dir.path()).expect_err("directory");
        assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    }

    #[test]
    fn fixtures_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config");
        let valid = load(&dir.join("valid.toml")).expect("valid fixture");
        assert_eq!(valid.accounts.len(), 2);
        let err = load(&dir.join("pop3-key-on-imap.toml")).expect_err("invalid fixture");
        assert_eq!(err.key(), Some("accounts.work.leave_on_server"), "{err}");
    }

    #[test]
    fn documented_examples_parse_and_every_key_is_documented() {
        let doc = include_str!("../docs/configuration.md");
        let mut examples = 0;
        for block in doc.split("```toml").skip(1) {
            let text = block.split("```").next().unwrap_or_default();
            if text.contains("# invalid") {
                continue;
            }
            parse_ok(text);
            examples += 1;
        }
        assert!(
            examples >= 2,
            "expected example configs in docs/configuration.md"
        );
        for key in ACCOUNT_KEYS.iter().chain(UI_KEYS) {
            assert!(doc.contains(&format!("`{key}`")), "{key} is not documented");
        }
    }

    #[test]
    fn ui_and_keys_tables_parse_and_default() {
        let c = parse_ok(IMAP);
        assert_eq!(c.ui, UiConfig::default());
        assert!(c.ui.mouse);
        let c = parse_ok(
            "[ui]\nmouse = false\nreader = \"full\"\nmark_read_delay_ms = 500\nthreads = true\n\n\
             [keys]\ndown = \"n Down\"\nquit = \"C-q\"\n",
        );
        assert!(!c.ui.mouse);
        assert_eq!(c.ui.reader, ReaderLayout::Full);
        assert_eq!(c.ui.mark_read_delay_ms, 500);
        assert_eq!(c.keys.get("down").map(String::as_str), Some("n Down"));
    }

    #[test]
    fn unknown_ui_key_and_bad_values_name_their_line() {
        let msg = expect_err("[ui]\nmouse = true\nmosue = 1\n", 3, "ui.mosue");
        assert!(msg.contains("did you mean `mouse`?"), "{msg}");
        let msg = expect_err("[ui]\nreader = \"half\"\n", 2, "ui.reader");
        assert!(msg.contains("expected \"split\" or \"full\""), "{msg}");
    }

    #[test]
    fn unknown_actions_and_unreadable_keys_are_errors_with_line_and_key() {
        let msg = expect_err(
            "\n[keys]\ndown = \"j\"\nflyaway = \"x\"\n",
            4,
            "keys.flyaway",
        );
        assert!(msg.contains("unknown key"), "{msg}");
        assert!(msg.contains("allowed keys here: down, up"), "{msg}");
        let msg = expect_err("[keys]\n\nup = \"Hyper-k\"\n", 3, "keys.up");
        assert!(msg.contains("Hyper-k"), "{msg}");
        let msg = expect_err("[keys]\nup = 5\n", 2, "keys.up");
        assert!(msg.contains("expected a key"), "{msg}");
        let msg = expect_err("[keys]\nup = \"x\"\ndown = \"x\"\n", 2, "keys.up");
        assert!(msg.contains("also bound to"), "{msg}");
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("host", "host"), 0);
        assert_eq!(edit_distance("hots", "host"), 2);
        assert_eq!(edit_distance("prot", "port"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn oauth2_accounts_parse_with_presets_or_a_token_command() {
        let c = parse_ok(&format!(
            "{IMAP}auth = \"oauth2\"\noauth2_provider = \"google\"\n\
             oauth2_client_id = \"123.apps.googleusercontent.com\"\n\
             oauth2_client_secret = \"GOCSPX-shh\"\noauth2_mechanism = \"xoauth2\"\n"
        ));
        let w = c.account("work").expect("work");
        assert!(w.uses_oauth2());
        assert_eq!(w.oauth2_provider, Some(OAuth2Provider::Google));
        assert_eq!(w.oauth2_mechanism, Some(OAuth2Mechanism::Xoauth2));
        assert!(!format!("{w:?}").contains("GOCSPX"), "secret in Debug");
        let c = parse_ok(&format!(
            "{POP3}auth = \"oauth2\"\noauth2_token_command = \"oama access me@example.org\"\n"
        ));
        assert!(c.account("home").expect("home").uses_oauth2());
        let c = parse_ok(&format!(
            "{IMAP}auth = \"oauth2\"\noauth2_provider = \"custom\"\noauth2_client_id = \"x\"\n\
             oauth2_token_url = \"https://id.example/token\"\n\
             oauth2_device_url = \"https://id.example/device\"\noauth2_scopes = [\"mail\"]\n\
             oauth2_ca_file = \"/etc/ca.pem\"\n"
        ));
        assert_eq!(
            c.account("work").and_then(|a| a.oauth2_scopes.clone()),
            Some(vec!["mail".to_string()])
        );
    }

    #[test]
    fn oauth2_mistakes_name_their_key() {
        // (keys after the account's first five lines, error line, key, words in the message)
        let cases = [
            (
                "oauth2_client_id = \"x\"\n",
                6,
                "oauth2_client_id",
                "only applies with auth = \"oauth2\"",
            ),
            ("auth = \"oauth2\"\n", 6, "auth", "needs oauth2_provider"),
            (
                "auth = \"oauth2\"\noauth2_provider = \"microsoft\"\n",
                7,
                "oauth2_provider",
                "needs oauth2_client_id",
            ),
            (
                "auth = \"oauth2\"\noauth2_provider = \"custom\"\noauth2_client_id = \"x\"\n",
                7,
                "oauth2_provider",
                "needs oauth2_token_url",
            ),
            (
                "auth = \"oauth2\"\noauth2_provider = \"google\"\noauth2_client_id = \"x\"\n\
                 oauth2_token_url = \"http://id.example/token\"\n",
                9,
                "oauth2_token_url",
                "https://",
            ),
            (
                "auth = \"oauth2\"\noauth2_token_command = \"x\"\npassword_command = \"y\"\n",
                8,
                "password_command",
                "oauth2_token_command",
            ),
            (
                "auth = \"oauth2\"\noauth2_token_command = \"x\"\n\
                 oauth2_mechanism = \"xoauth2\"\noauth2_client_id = \"y\"\n",
                9,
                "oauth2_client_id",
                "does not apply with oauth2_token_command",
            ),
            (
                "auth = \"oauth2\"\noauth2_provider = \"yahoo\"\n",
                7,
                "oauth2_provider",
                "\"google\", \"microsoft\" or \"custom\"",
            ),
            (
                "auth = \"oauth2\"\noauth2_provider = \"microsoft\"\n\
                 oauth2_client_id = \"x\"\noauth2_scopes = []\n",
                9,
                "oauth2_scopes",
                "at least one scope",
            ),
            (
                "auth = \"oauth2\"\noauth2_provider = \"google\"\n\
                 oauth2_client_id = \"x\"\noauth2_client_secret = 98765432123\n",
                9,
                "oauth2_client_secret",
                "expected a string",
            ),
            (
                "oauth2_clientid = \"x\"\n",
                6,
                "oauth2_clientid",
                "did you mean `oauth2_client_id`",
            ),
        ];
        for (keys, line, key, words) in cases {
            let msg = expect_err(
                &format!("{IMAP}{keys}"),
                line,
                &format!("accounts.work.{key}"),
            );
            assert!(msg.contains(words), "{msg}");
            assert!(!msg.contains("98765432123"), "the secret is echoed: {msg}");
        }
    }
}
