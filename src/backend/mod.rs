//! The backend trait both protocols implement, and the types they share.
//!
//! A backend's one job is to make the [store](crate::store) agree with its server. It never
//! talks to the UI: the engine drives it and forwards [`Progress`] as events. POP3 answers "one
//! folder, local flags, no push" through [`Capabilities`] instead of failing, so the UI adapts.
//!
//! Dispatch is a small enum ([`Backend`]) rather than `dyn`: native `async fn` in traits is not
//! object-safe, and three variants do not justify boxing every future.

pub mod changes;
pub mod imap;
pub mod local;
pub mod pop3;

use pop3::Pop3Backend;

use std::fmt;

use thiserror::Error;

use crate::error::ErrorKind;
use crate::store::cache::Cache;

/// The name of an account, as written in `[accounts.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountName(pub String);

impl fmt::Display for AccountName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A step of opening a connection, reported as it completes (the setup wizard shows them live).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectStep {
    /// The TCP connection is open.
    Connected,
    /// TLS is up: implicit TLS, or after STARTTLS / STLS.
    Secured,
    /// The server's capabilities were read (upper-case names).
    Capabilities(Vec<String>),
    /// The server accepted the login.
    LoggedIn,
}

/// Where a connection gets its password.
#[derive(Debug, Clone, Copy)]
pub enum PasswordSource<'a> {
    /// As configured: `password_command`, else the OS keyring.
    Configured,
    /// This password, already in hand (the setup wizard, before anything is saved).
    Given(&'a crate::credentials::Secret),
}

impl PasswordSource<'_> {
    /// [`Self::resolve`] once `secured` fires: the password command or keyring runs only
    /// when the connection is encrypted (or, with `security = "none"`, connected), never for
    /// a server whose certificate was refused. `None` when `secured` was dropped unfired (the
    /// connection failed first; its error is the one to report).
    pub async fn resolve_when(
        self,
        secured: tokio::sync::oneshot::Receiver<()>,
        name: &str,
        account: &crate::config::Account,
    ) -> Option<Result<crate::credentials::Secret, BackendError>> {
        secured.await.ok()?;
        Some(self.resolve(name, account).await)
    }

    /// The password: the one given, or the configured one looked up off the async threads
    /// (a `password_command` or the keyring may block).
    pub async fn resolve(
        self,
        name: &str,
        account: &crate::config::Account,
    ) -> Result<crate::credentials::Secret, BackendError> {
        if let PasswordSource::Given(secret) = self {
            return Ok(crate::credentials::Secret::new(secret.expose().to_string()));
        }
        let host = account.host.clone();
        let user = account.username().to_string();
        let name = name.to_string();
        let owned = account.clone();
        tokio::task::spawn_blocking(move || crate::credentials::password(&name, &owned))
            .await
            .map_err(|e| BackendError::Protocol {
                host: host.clone(),
                reason: format!("password lookup failed: {e}"),
            })?
            .map_err(|e| BackendError::Auth {
                host,
                user,
                reason: e.to_string(),
            })
    }
}

/// An IMAP UID: unique within one folder for one UIDVALIDITY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uid(pub u32);

/// How the server (or the local file) names one message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RemoteId {
    /// IMAP: UID within the folder.
    Uid(Uid),
    /// POP3: the UIDL string (or a hash of Message-ID/Date/size when the server lacks UIDL).
    Uidl(String),
    /// A message in a local mbox, named by its byte offset.
    Local(u64),
}

/// Message flags, as a small bit set (the same bits are stored in the cache).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Flags(pub u8);

impl Flags {
    pub const SEEN: Flags = Flags(1);
    pub const FLAGGED: Flags = Flags(2);
    pub const ANSWERED: Flags = Flags(4);
    pub const DELETED: Flags = Flags(8);
    pub const DRAFT: Flags = Flags(16);

    /// Every flag with its lower-case name, in display order.
    pub const NAMED: [(Flags, &'static str); 5] = [
        (Flags::SEEN, "seen"),
        (Flags::FLAGGED, "flagged"),
        (Flags::ANSWERED, "answered"),
        (Flags::DELETED, "deleted"),
        (Flags::DRAFT, "draft"),
    ];

    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
    pub fn insert(&mut self, other: Flags) {
        self.0 |= other.0;
    }
    pub fn remove(&mut self, other: Flags) {
        self.0 &= !other.0;
    }
    /// The names of the flags that are set, e.g. `["seen", "flagged"]`.
    pub fn names(self) -> Vec<&'static str> {
        Flags::NAMED
            .iter()
            .filter(|(f, _)| self.contains(*f))
            .map(|(_, n)| *n)
            .collect()
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

/// The role of a special-use folder (RFC 6154).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FolderRole {
    Inbox,
    Sent,
    Trash,
    Drafts,
    Junk,
    Archive,
    All,
    Flagged,
}

impl FolderRole {
    pub fn as_str(self) -> &'static str {
        match self {
            FolderRole::Inbox => "inbox",
            FolderRole::Sent => "sent",
            FolderRole::Trash => "trash",
            FolderRole::Drafts => "drafts",
            FolderRole::Junk => "junk",
            FolderRole::Archive => "archive",
            FolderRole::All => "all",
            FolderRole::Flagged => "flagged",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "inbox" => FolderRole::Inbox,
            "sent" => FolderRole::Sent,
            "trash" => FolderRole::Trash,
            "drafts" => FolderRole::Drafts,
            "junk" => FolderRole::Junk,
            "archive" => FolderRole::Archive,
            "all" => FolderRole::All,
            "flagged" => FolderRole::Flagged,
            _ => return None,
        })
    }
}

/// A folder as the server lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderInfo {
    /// The full name as the server spells it (e.g. `INBOX`, `Archive/2024`).
    pub name: String,
    /// Hierarchy delimiter, if the server has a hierarchy.
    pub delimiter: Option<char>,
    pub role: Option<FolderRole>,
}

/// The one folder of an account that has no folders (POP3, a local mbox).
pub const INBOX: &str = "INBOX";

impl FolderInfo {
    /// The INBOX of an account that has no other folder.
    pub fn inbox() -> FolderInfo {
        FolderInfo {
            name: INBOX.into(),
            delimiter: None,
            role: Some(FolderRole::Inbox),
        }
    }
}

/// Record an account whose mail lives in one mbox file: returns (account id, INBOX id).
pub fn mbox_account(
    cache: &mut Cache,
    name: &str,
    protocol: &str,
    mbox: &std::path::Path,
) -> Result<(i64, i64), BackendError> {
    let account = cache.ensure_account(name, protocol)?;
    let folder = cache.ensure_folder(account, &FolderInfo::inbox())?;
    cache.set_folder_mbox(folder, mbox)?;
    Ok((account, folder))
}

/// The envelope of one message: what the list needs without the body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    pub message_id: Option<String>,
    pub in_reply_to: Option<String>,
    /// Message-IDs from References, in order.
    pub references: Vec<String>,
    /// Unix timestamp (seconds, UTC).
    pub date: Option<i64>,
    pub from: String,
    pub to: String,
    pub cc: String,
    pub subject: String,
    pub size: u64,
    pub has_attachments: bool,
}

impl Envelope {
    /// Parse the envelope out of a message's raw bytes (headers, and MIME for attachments).
    pub fn from_raw(raw: &[u8]) -> Envelope {
        crate::render::envelope_of(raw)
    }
}

/// What a backend can do, so the UI shows only what works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// More than one folder, listed by the server.
    pub folders: bool,
    /// Flags live on the server (IMAP); otherwise they are kept locally (POP3, local mbox).
    pub server_flags: bool,
    /// The server pushes changes (IMAP IDLE).
    pub push: bool,
    /// Messages can be moved between folders.
    pub move_messages: bool,
    /// Mail can be changed at all (a local demo mbox is read-only).
    pub writable: bool,
}

/// Progress of a sync, reported as it goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Messages done so far.
    pub done: u64,
    /// Messages to do in all.
    pub total: u64,
    /// Bytes received so far.
    pub bytes: u64,
}

/// Lets through at most ten [`Progress`] reports a second, and always the first and the
/// last: a report per message (10,000 in a large download) would keep a terminal or the
/// UI's event queue busier than the download itself.
#[derive(Debug, Default)]
pub struct ProgressPacer {
    last: Option<std::time::Instant>,
}

impl ProgressPacer {
    /// The least time between two reports let through (but the last).
    pub const INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

    /// Whether `p` is to be shown.
    pub fn due(&mut self, p: &Progress) -> bool {
        let due = p.done == p.total || self.last.is_none_or(|t| t.elapsed() >= Self::INTERVAL);
        if due {
            self.last = Some(std::time::Instant::now());
        }
        due
    }
}

/// What one sync pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub new_messages: u64,
    pub removed_messages: u64,
    pub flag_changes: u64,
    pub bytes: u64,
}

/// A failure in a backend, with enough detail for one readable line.
#[derive(Debug, Error)]
pub enum BackendError {
    #[error("cannot connect to {host}:{port}: {reason}")]
    Connect {
        host: String,
        port: u16,
        reason: String,
    },
    #[error("{host}:{port} did not answer within {secs} s")]
    Timeout { host: String, port: u16, secs: u64 },
    #[error("tls with {host} failed: {reason}")]
    Tls { host: String, reason: String },
    #[error("{host} refused the login for {user}: {reason}")]
    Auth {
        host: String,
        user: String,
        reason: String,
    },
    #[error("{host} does not offer {what}; refusing to continue without encryption")]
    NoStartTls { host: String, what: &'static str },
    #[error("protocol error from {host}: {reason}")]
    Protocol { host: String, reason: String },
    #[error("{host} closed the connection {during}")]
    Dropped { host: String, during: String },
    #[error("{host} is busy: {reason}; mailbag will try again later")]
    Temporary { host: String, reason: String },
    #[error("{0} is not supported by this account")]
    NotSupported(&'static str),
    #[error("no such folder: {0}")]
    NoSuchFolder(String),
    #[error(transparent)]
    Cache(#[from] crate::store::cache::CacheError),
    #[error(transparent)]
    Mbox(#[from] crate::store::mbox::MboxError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl BackendError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            BackendError::Connect { .. }
            | BackendError::Timeout { .. }
            | BackendError::Dropped { .. }
            | BackendError::Temporary { .. } => ErrorKind::Network,
            BackendError::Tls { .. } | BackendError::NoStartTls { .. } => ErrorKind::Tls,
            BackendError::Auth { .. } => ErrorKind::Auth,
            BackendError::Protocol { .. } => ErrorKind::Protocol,
            BackendError::NotSupported(_) => ErrorKind::NotSupported,
            BackendError::NoSuchFolder(_) => ErrorKind::Other,
            BackendError::Cache(_) | BackendError::Mbox(_) | BackendError::Io { .. } => {
                ErrorKind::Storage
            }
        }
    }
}

/// The operations every backend offers. Optional ones default to `NotSupported`.
#[allow(async_fn_in_trait)]
pub trait MailBackend {
    /// What this backend can do.
    fn capabilities(&self) -> Capabilities;

    /// Connect and authenticate (a no-op for local mail).
    async fn connect(&mut self) -> Result<(), BackendError>;

    /// The folders on the server (POP3 and local mail answer with one, `INBOX`).
    async fn list_folders(&mut self) -> Result<Vec<FolderInfo>, BackendError>;

    /// Bring one folder's state into the cache, reporting progress as it goes.
    async fn sync_folder(
        &mut self,
        cache: &mut Cache,
        folder: &str,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<SyncReport, BackendError>;

    /// The exact raw bytes of one message (from the cache if held, else from the server).
    async fn fetch_raw(&mut self, cache: &mut Cache, id: i64) -> Result<Vec<u8>, BackendError>;

    /// Push the account's queued operations to the server; returns how many were applied.
    async fn apply_pending(&mut self, _cache: &mut Cache) -> Result<u64, BackendError> {
        Err(BackendError::NotSupported("changing mail on the server"))
    }

    /// Wait a while for the server to report a change in `folder` (IMAP IDLE): `true` as soon
    /// as it does, `false` if the wait ended without one (the caller simply waits again).
    async fn wait_for_changes(&mut self, _folder: &str) -> Result<bool, BackendError> {
        Err(BackendError::NotSupported("push notifications"))
    }

    /// Warnings gathered since the last call, for the engine to show (none by default).
    fn take_warnings(&mut self) -> Vec<String> {
        Vec::new()
    }
}

/// The backends, dispatched by enum.
pub enum Backend {
    Local(local::LocalBackend),
    Pop3(Box<pop3::Pop3Backend>),
    Imap(Box<imap::ImapBackend>),
}

impl MailBackend for Backend {
    fn capabilities(&self) -> Capabilities {
        match self {
            Backend::Local(b) => b.capabilities(),
            Backend::Pop3(b) => b.capabilities(),
            Backend::Imap(b) => b.capabilities(),
        }
    }
    async fn connect(&mut self) -> Result<(), BackendError> {
        match self {
            Backend::Local(b) => b.connect().await,
            Backend::Pop3(b) => b.connect().await,
            Backend::Imap(b) => b.connect().await,
        }
    }
    async fn list_folders(&mut self) -> Result<Vec<FolderInfo>, BackendError> {
        match self {
            Backend::Local(b) => b.list_folders().await,
            Backend::Pop3(b) => b.list_folders().await,
            Backend::Imap(b) => b.list_folders().await,
        }
    }
    async fn sync_folder(
        &mut self,
        cache: &mut Cache,
        folder: &str,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<SyncReport, BackendError> {
        match self {
            Backend::Local(b) => b.sync_folder(cache, folder, progress).await,
            Backend::Pop3(b) => b.sync_folder(cache, folder, progress).await,
            Backend::Imap(b) => b.sync_folder(cache, folder, progress).await,
        }
    }
    async fn fetch_raw(&mut self, cache: &mut Cache, id: i64) -> Result<Vec<u8>, BackendError> {
        match self {
            Backend::Local(b) => b.fetch_raw(cache, id).await,
            Backend::Pop3(b) => b.fetch_raw(cache, id).await,
            Backend::Imap(b) => b.fetch_raw(cache, id).await,
        }
    }
    async fn apply_pending(&mut self, cache: &mut Cache) -> Result<u64, BackendError> {
        match self {
            Backend::Local(b) => b.apply_pending(cache).await,
            Backend::Pop3(b) => b.apply_pending(cache).await,
            Backend::Imap(b) => b.apply_pending(cache).await,
        }
    }
    async fn wait_for_changes(&mut self, folder: &str) -> Result<bool, BackendError> {
        match self {
            Backend::Local(b) => b.wait_for_changes(folder).await,
            Backend::Pop3(b) => b.wait_for_changes(folder).await,
            Backend::Imap(b) => b.wait_for_changes(folder).await,
        }
    }
    fn take_warnings(&mut self) -> Vec<String> {
        match self {
            Backend::Local(b) => MailBackend::take_warnings(b),
            Backend::Pop3(b) => Pop3Backend::take_warnings(b),
            Backend::Imap(b) => imap::ImapBackend::take_warnings(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pacer_lets_through_the_first_and_last_reports_and_few_between() {
        let mut pacer = ProgressPacer::default();
        let at = |done| Progress {
            done,
            total: 10_000,
            ..Progress::default()
        };
        // NOTE: 10,000 reports in a row take far less than the interval, so only the first
        // and the last may pass; a report the interval after the last passed also passes.
        let passed: Vec<u64> = (0..=10_000)
            .map(at)
            .filter(|p| pacer.due(p))
            .map(|p| p.done)
            .collect();
        assert_eq!(passed.first(), Some(&0));
        assert_eq!(passed.last(), Some(&10_000));
        assert!(passed.len() < 100, "{} reports passed", passed.len());
        std::thread::sleep(ProgressPacer::INTERVAL);
        assert!(pacer.due(&at(5)));
        assert!(!pacer.due(&at(6)));
    }
}
