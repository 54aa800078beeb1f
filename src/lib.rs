//! mailbag — a terminal email client for IMAP and POP3 with one shared, offline cache.
//!
//! # A tour of the crate
//!
//! ```text
//!             keys                                events (progress, changed, error)
//!   terminal ───────► ui ◄──────────────────────────────────────────────┐
//!                      │ commands                                        │
//!                      ▼                                                 │
//!                    engine ── one task per account ──► backend::Backend ┘
//!                      │                                ├── backend::local (an mbox, read-only)
//!                      ▼                                ├── backend::imap
//!                    store ◄──── every backend writes ──└── backend::pop3 (+ pop3:: codec)
//!                    ├── store::cache  SQLite: folders, messages, flags, sync state, queue, search
//!                    └── store::mbox   mboxrd files holding POP3 and local mail
//! ```
//!
//! - [`config`] reads `config.toml` (XDG paths, unknown keys rejected, errors name line and key).
//! - [`credentials`] finds a password in the OS keyring or runs `password_command`.
//! - [`oauth2`] signs in with OAuth2 (XOAUTH2 / OAUTHBEARER) and keeps the tokens fresh.
//! - [`store`] is the single source of truth for everything the user sees.
//! - [`backend`] is the trait both protocols implement and the types they share.
//! - [`pop3`] is a POP3 protocol layer without sockets (commands out, replies in).
//! - [`render`] turns MIME into sanitised, displayable text.
//! - [`engine`] runs one task per account behind a command channel; the UI never waits on it.
//! - [`ui`] is the full-screen TUI (ratatui): it reads the cache and sends commands.
//! - [`cli`] implements the scripting commands (`list`, `read`, `folders`, `setup`, ...).
//! - [`wizard`] finds server settings for an address, tests the login and saves the account.
//!
//! `docs/architecture.md` explains the data flow and the decisions behind it.

pub mod backend;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod engine;
pub mod error;
pub mod oauth2;
pub mod pop3;
pub mod render;
pub mod sanitize;
pub mod store;
pub mod tls;
pub mod ui;
pub mod wizard;

pub use error::{Error, ErrorKind};
