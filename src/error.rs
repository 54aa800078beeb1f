//! The crate-level error and its coarse kind.
//!
//! Each module has its own `thiserror` enum with a precise message; they all convert into
//! [`Error`](enum@Error), whose [`ErrorKind`] lets a caller decide whether to re-prompt (auth), retry
//! (network), or explain (config, protocol, storage).

use thiserror::Error;

/// What kind of failure this is, so the UI can choose to re-prompt, retry or explain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The configuration is wrong; the message says which file, line and key.
    Config,
    /// The server refused the credentials, or no credentials could be found.
    Auth,
    /// The network failed: refused, unreachable, timed out, dropped.
    Network,
    /// TLS failed: the handshake, or the certificate was not trusted.
    Tls,
    /// The server said something that does not follow the protocol.
    Protocol,
    /// The local cache or an mbox file could not be read or written.
    Storage,
    /// The backend has no such capability (e.g. folders on POP3).
    NotSupported,
    /// Anything else: a bug or an unexpected state.
    Other,
}

/// Every error mailbag reports. The message is one readable line (lower-case, no secrets).
#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Credentials(#[from] crate::credentials::CredentialError),
    #[error(transparent)]
    Cache(#[from] crate::store::cache::CacheError),
    #[error(transparent)]
    Mbox(#[from] crate::store::mbox::MboxError),
    #[error(transparent)]
    Backend(#[from] crate::backend::BackendError),
    #[error(transparent)]
    OAuth2(#[from] crate::oauth2::OAuth2Error),
    #[error("{0}")]
    Usage(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The coarse kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config(_) | Error::Usage(_) => ErrorKind::Config,
            Error::Credentials(_) | Error::OAuth2(_) => ErrorKind::Auth,
            Error::Cache(_) | Error::Mbox(_) | Error::Io { .. } => ErrorKind::Storage,
            Error::Backend(e) => e.kind(),
        }
    }

    /// An I/O error with a short description of what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result with the crate-level [`Error`](enum@Error).
pub type Result<T, E = Error> = std::result::Result<T, E>;
