//! Configuration: the TOML schema, where files live, and errors that name file, line and key.
//!
//! The config file is `$XDG_CONFIG_HOME/mailbag/config.toml` unless `--config FILE` or
//! `MAILBAG_CONFIG` names another. Data (the cache, mbox files) lives in
//! `$XDG_DATA_HOME/mailbag/`. Every key is documented in `docs/configuration.md`.
//!
//! NOTE: the struct below is the whole schema. Keys are snake_case, unknown keys are
//! rejected, and protocol-specific keys on the wrong protocol are rejected after parsing.

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
    pub password_command: Option<String>,
    pub tls_ca_file: Option<PathBuf>,
    pub tls_cert_sha256: Option<String>,
    /// POP3 only (default true).
    pub leave_on_server: Option<bool>,
    /// POP3 only.
    pub delete_after_days: Option<u32>,
    /// POP3 only.
    pub mbox_path: Option<PathBuf>,
    /// IMAP only (default true).
    pub idle: Option<bool>,
}

/// A configuration problem, naming the file, line and key.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{path}:{line}: {key}: {message}")]
    Invalid {
        path: String,
        line: usize,
        key: String,
        message: String,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
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

/// Load the config file at `path`; a missing file means no accounts.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.display().to_string(),
                source,
            });
        }
    };
    toml::from_str(&text).map_err(|e| ConfigError::Invalid {
        path: path.display().to_string(),
        line: 0,
        key: String::new(),
        message: e.to_string(),
    })
}
