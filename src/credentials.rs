//! Credentials: the OS keyring first, `password_command` when configured.
//!
//! Nothing secret is ever stored in the config file, logged, or put into an error message.

use thiserror::Error;

/// Why no password could be had.
#[derive(Debug, Error)]
pub enum CredentialError {
    #[error("no password found for {account}")]
    NotFound { account: String },
}
