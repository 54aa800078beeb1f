//! A POP3 account: mail is downloaded into a local mbox, and never lost or duplicated.
//!
//! The protocol itself lives in [`crate::pop3`] (no sockets); this is the thin tokio loop
//! around it and the sync rules:
//!
//! - **Security** (RFC 8314, RFC 2595): implicit TLS by default; `starttls` sends STLS and stops
//!   if the server does not offer it; clear text only with `security = "none"`. Bytes the
//!   server sent before the TLS handshake are discarded by the codec.
//! - **What is new** is decided by UIDL (RFC 1939 §7): a UIDL in the account's history is never
//!   downloaded again. Servers without UIDL get a stand-in made from a hash of Message-ID, Date
//!   and size, with a warning.
//! - **Fast**: RETRs are pipelined (RFC 2449 §6.6) when the server offers PIPELINING, sent in
//!   bursts, and a message larger than [`STREAM_THRESHOLD`] is streamed to the mbox, never held
//!   whole. Messages are parsed, appended and committed on a second thread (its own cache
//!   connection) while the next ones arrive.
//! - **Durable, in this order** (group commit): append a batch to the mbox → fsync → one cache
//!   transaction records the messages *and* their UIDLs → only then DELE → QUIT commits the
//!   deletions (RFC 1939 §6). Before the first append, the cache durably records the file's
//!   length (the append mark); each batch's transaction moves the mark to the batch's end, and
//!   the last one clears it. After a crash, anything past the mark is an uncommitted append of
//!   ours and is cut off — the server still holds those messages, since nothing is deleted
//!   before the commit.
//! - **Leave on server** (default): server copies stay; `delete_after_days` removes them N
//!   days after download; `delete_on_server_when_deleted_locally` removes those the user
//!   deleted here. UIDL history is pruned when the server no longer lists a UIDL.
//! - **Local state**: flags are kept in the cache. Messages marked deleted are expunged from
//!   the mbox at the next sync by a crash-safe rewrite (new file, fsync, cache records the new
//!   offsets and the pending rename, rename, fsync the directory).

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{
    BackendError, Capabilities, ConnectStep, Envelope, Flags, FolderInfo, MailBackend,
    PasswordSource, Progress, RemoteId, SyncReport,
};
use crate::config::{Account, Security};
use crate::pop3::{Capability, Client, Command, CommandKind, Event, ResponseCode};
use crate::render;
use crate::sanitize;
use crate::store::cache::{BodyText, Cache, NewMessage};
use crate::store::mbox::{self, Appender, Mbox, Span};
use crate::tls::{self, TlsTrust, Transport};

/// The one folder a POP3 account has.
pub use super::INBOX;

/// How long any single read from the server may take before the link is declared dead.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// How many RETR commands may be outstanding at once when the server pipelines.
const PIPELINE_DEPTH: usize = 64;

/// A batch is committed (fsync + one transaction) after this many messages ...
const BATCH_MESSAGES: usize = 5000;
/// ... or this many bytes ...
const BATCH_BYTES: u64 = 32 * 1024 * 1024;
/// ... or this long after it began, whichever comes first, so that a slow link that keeps
/// dropping still makes progress.
const BATCH_TIME: Duration = Duration::from_secs(1);
/// Near the end of a download each batch is at most as large as what is still to come, but
/// not smaller than this: the last transaction, the one nothing overlaps with, stays small.
const TAIL_BATCH: u64 = 64;

/// Messages larger than this are streamed to the mbox instead of being held in memory.
pub const STREAM_THRESHOLD: usize = 4 * 1024 * 1024;

/// A POP3 account.
pub struct Pop3Backend {
    name: String,
    account: Account,
    mbox_path: PathBuf,
    session: Option<Session>,
    warnings: Vec<String>,
}

impl Pop3Backend {
    /// The account `name` as configured, keeping its mail under `data_dir` unless `mbox_path`
    /// says otherwise.
    pub fn new(name: impl Into<String>, account: Account, data_dir: &Path) -> Self {
        let name = name.into();
        let mbox_path = account.mbox_path(data_dir, &name);
        Pop3Backend {
            name,
            account,
            mbox_path,
            session: None,
            warnings: Vec::new(),
        }
    }

    /// The mbox this account downloads into.
    pub fn mbox_path(&self) -> &Path {
        &self.mbox_path
    }

    /// Warnings gathered since the last call (no UIDL support, skipped messages, ...).
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    fn warn(&mut self, text: String) {
        if !self.warnings.contains(&text) {
            self.warnings.push(text);
        }
    }

    async fn session(&mut self) -> Result<&mut Session, BackendError> {
        if self.session.is_none() {
            if self.account.security == Security::None {
                self.warn(format!(
                    "{}: security = \"none\": the password and mail cross the network unencrypted",
                    self.name
                ));
            }
            let session = Session::open(&self.name, &self.account).await?;
            self.session = Some(session);
        }
        self.session
            .as_mut()
            .ok_or(BackendError::NotSupported("pop3"))
    }

    fn folder(&self, cache: &mut Cache) -> Result<(i64, i64), BackendError> {
        super::mbox_account(cache, &self.name, "pop3", &self.mbox_path)
    }

    /// Bring the mbox and the cache back into agreement after a crash or outside changes.
    fn recover(
        &mut self,
        cache: &mut Cache,
        folder: i64,
        mbox: &mut Mbox,
    ) -> Result<(), BackendError> {
        let state = cache.folder(folder)?.map(|f| f.mbox).unwrap_or_default();
        if let Some(new_file) = &state.rewrite {
            // An expunge was recorded but its rename may not have happened.
            if new_file.exists() {
                install_rewrite(new_file, &self.mbox_path)?;
                *mbox = Mbox::open(&self.mbox_path)?;
            }
            cache.finish_mbox_rewrite(folder)?;
        }
        if let Some(mark) = state.append_from {
            if mbox.len() > mark {
                // NOTE: an append of ours that was never committed: the server still has
                // every message in it (no DELE happens before the commit).
                mbox.truncate_to(mark)?;
            }
            cache.set_mbox_append_from(folder, None)?;
        }
        let committed = cache.mbox_committed_end(folder)?;
        if !state.scanned || mbox.len() < committed {
            if state.scanned {
                self.warn(format!(
                    "{} changed outside mailbag (it is shorter than mailbag recorded); it was re-read",
                    self.mbox_path.display()
                ));
                cache.forget_mbox_messages(folder)?;
            }
            import_mbox(cache, folder, &self.mbox_path, 0)?;
        } else if mbox.len() > committed {
            // Mail appended by another program since we last looked: index it, never cut it.
            import_mbox(cache, folder, &self.mbox_path, committed)?;
        }
        Ok(())
    }

    /// Rewrite the mbox without the messages marked deleted, crash-safely.
    fn expunge(
        &mut self,
        cache: &mut Cache,
        folder: i64,
        mbox: &mut Mbox,
    ) -> Result<u64, BackendError> {
        let messages = cache.mbox_messages(folder)?;
        let removed: Vec<i64> = messages
            .iter()
            .filter(|(_, _, flags)| flags.contains(Flags::DELETED))
            .map(|(id, _, _)| *id)
            .collect();
        if removed.is_empty() {
            return Ok(0);
        }
        let new_file = rewrite_path(&self.mbox_path);
        let moved = write_without(&self.mbox_path, &new_file, &messages)?;
        cache.begin_mbox_rewrite(folder, &removed, &moved, &new_file)?;
        install_rewrite(&new_file, &self.mbox_path)?;
        *mbox = Mbox::open(&self.mbox_path)?;
        cache.finish_mbox_rewrite(folder)?;
        Ok(removed.len() as u64)
    }
}

impl MailBackend for Pop3Backend {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            folders: false,
            server_flags: false,
            push: false,
            move_messages: false,
            writable: true,
        }
    }

    async fn connect(&mut self) -> Result<(), BackendError> {
        self.session().await.map(|_| ())
    }

    async fn list_folders(&mut self) -> Result<Vec<FolderInfo>, BackendError> {
        Ok(vec![FolderInfo::inbox()])
    }

    async fn sync_folder(
        &mut self,
        cache: &mut Cache,
        folder_name: &str,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<SyncReport, BackendError> {
        if folder_name != INBOX {
            return Err(BackendError::NoSuchFolder(folder_name.to_string()));
        }
        let (account, folder) = self.folder(cache)?;
        let mut mbox = Mbox::open(&self.mbox_path)?;
        self.recover(cache, folder, &mut mbox)?;
        let mut report = SyncReport {
            removed_messages: self.expunge(cache, folder, &mut mbox)?,
            ..SyncReport::default()
        };

        let result = self
            .download_and_clean(cache, account, folder, mbox, &mut report, progress)
            .await;
        if result.is_err() {
            // NOTE: a failed session is not reused: its state is unknown. Nothing is deleted
            // on the server without a clean QUIT, so dropping it is safe.
            self.session = None;
        }
        result.map(|()| report)
    }

    async fn fetch_raw(&mut self, cache: &mut Cache, id: i64) -> Result<Vec<u8>, BackendError> {
        super::local::read_local(cache, id)
    }

    async fn apply_pending(&mut self, _cache: &mut Cache) -> Result<u64, BackendError> {
        // NOTE: POP3 keeps flags locally; deletions reach the server during sync.
        Ok(0)
    }
}

/// One entry of the server's listing.
#[derive(Debug, Clone)]
struct Listed {
    msg: u32,
    uidl: String,
}

impl Pop3Backend {
    async fn download_and_clean(
        &mut self,
        cache: &mut Cache,
        account: i64,
        folder: i64,
        mbox: Mbox,
        report: &mut SyncReport,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<(), BackendError> {
        let session = self.session().await?;
        let (listing, fallback) = session.listing().await?;
        if fallback {
            self.warn(format!(
                "{}: the server does not support UIDL; messages are told apart by a hash of \
                 Message-ID, Date and size",
                self.name
            ));
        }
        let history: HashMap<String, i64> = cache.uidl_history(account)?.into_iter().collect();
        let in_cache: HashSet<String> = cache.uidls(folder)?.into_iter().collect();
        let mut seen = HashSet::new();
        let to_fetch: Vec<Listed> = listing
            .iter()
            .filter(|l| !history.contains_key(&l.uidl) && !in_cache.contains(&l.uidl))
            .filter(|l| seen.insert(l.uidl.clone()))
            .cloned()
            .collect();

        let session = self.session().await?;
        let downloaded = session
            .download(cache, account, folder, mbox, &to_fetch, progress)
            .await?;
        report.new_messages = downloaded.count;
        report.bytes = downloaded.bytes;
        for w in downloaded.warnings {
            self.warn(w);
        }

        // Which server copies go now.
        let now = now_unix();
        let leave = self.account.leave_on_server();
        let days = self.account.delete_after_days;
        let when_deleted = self.account.delete_on_server_when_deleted_locally();
        // NOTE: when nothing is deleted, the history read before the download serves: what
        // it adds is all listed, so it changes none of the UIDLs to forget below.
        let history = if leave && days.is_none() && !when_deleted {
            history
        } else {
            cache.uidl_history(account)?.into_iter().collect()
        };
        let kept_locally: HashSet<String> = if when_deleted {
            cache.live_uidls(folder)?.into_iter().collect()
        } else {
            HashSet::new()
        };
        // NOTE: a UIDL the server lists twice (against RFC 1939 §7) names two messages of
        // which at most one was downloaded; neither is deleted, or the other would be lost.
        let mut listed_times: HashMap<&str, usize> = HashMap::new();
        for l in &listing {
            *listed_times.entry(l.uidl.as_str()).or_default() += 1;
        }
        let to_delete: Vec<u32> = listing
            .iter()
            .filter(|l| listed_times.get(l.uidl.as_str()) == Some(&1))
            .filter(|l| match history.get(&l.uidl) {
                // NOTE: only mail recorded as downloaded (durable in the mbox) is ever deleted.
                None => false,
                Some(&at) => {
                    !leave
                        || days.is_some_and(|d| now - at >= i64::from(d) * 86_400)
                        || (when_deleted && !kept_locally.contains(&l.uidl))
                }
            })
            .map(|l| l.msg)
            .collect();
        let session = self.session().await?;
        session.delete(&to_delete).await?;

        // Forget UIDLs the server no longer lists (after this session's deletions commit).
        let listed: HashSet<&str> = listing.iter().map(|l| l.uidl.as_str()).collect();
        let deleted: HashSet<u32> = to_delete.iter().copied().collect();
        let gone: Vec<String> = history
            .keys()
            .filter(|u| !listed.contains(u.as_str()))
            .cloned()
            .chain(
                listing
                    .iter()
                    .filter(|l| deleted.contains(&l.msg))
                    .map(|l| l.uidl.clone()),
            )
            .collect();
        session.quit().await?;
        self.session = None;
        // NOTE: pruned only after QUIT succeeded, i.e. the deletions are committed on the
        // server; pruning earlier could bring a message back as new if QUIT failed.
        cache.forget_uidls(account, &gone)?;
        Ok(())
    }
}

/// Log in as `account` with `password`, reporting each step, then STAT and QUIT: the setup
/// wizard's login test. Returns the message count and total size; changes nothing.
pub async fn check_login(
    account: &Account,
    password: PasswordSource<'_>,
    step: &mut (dyn FnMut(ConnectStep) + Send),
) -> Result<(u32, u64), BackendError> {
    let mut session = Session::open_reporting("setup", account, password, step).await?;
    let stat = session.stat().await?;
    // NOTE: nothing was marked deleted, so QUIT commits nothing; its failure would not matter.
    let _ = session.quit().await;
    Ok(stat)
}

/// A CAPA entry's name as the server spells it (upper case).
fn capability_name(cap: &Capability) -> String {
    match cap {
        Capability::Top => "TOP".into(),
        Capability::User => "USER".into(),
        Capability::Sasl(m) => format!("SASL {}", m.join(" ")),
        Capability::RespCodes => "RESP-CODES".into(),
        Capability::LoginDelay { .. } => "LOGIN-DELAY".into(),
        Capability::Pipelining => "PIPELINING".into(),
        Capability::Expire { .. } => "EXPIRE".into(),
        Capability::Uidl => "UIDL".into(),
        Capability::Implementation(_) => "IMPLEMENTATION".into(),
        Capability::Stls => "STLS".into(),
        Capability::Other { name, .. } => name.to_uppercase(),
    }
}

/// What a download pass did.
struct Downloaded {
    count: u64,
    bytes: u64,
    warnings: Vec<String>,
}

/// A message whose RETR reply is arriving.
struct Incoming {
    msg: u32,
    /// The message so far, until it outgrows [`STREAM_THRESHOLD`].
    head: Vec<u8>,
    /// Set once the message outgrew [`STREAM_THRESHOLD`] and is handed on as it comes.
    streaming: bool,
    bytes: u64,
}

/// A whole message, received and not yet stored.
struct Received {
    uidl: String,
    raw: Vec<u8>,
}

/// What the download loop hands to the [`Committer`], in the order the server sent it.
enum Job {
    /// Whole messages.
    Messages(Vec<Received>),
    /// The first [`STREAM_THRESHOLD`] bytes of a message too large to hold.
    LargeStart { uidl: String, head: Vec<u8> },
    /// The next piece of that message.
    LargeData(Vec<u8>),
    /// That message is complete.
    LargeEnd,
    /// The download failed: commit nothing more (see [`Committer::abandon`]).
    Abandon,
}

/// A large message being appended as it arrives.
struct Large {
    uidl: String,
    /// Its first part, for the envelope.
    head: Vec<u8>,
    appender: Appender,
    bytes: u64,
}

/// Stores downloaded messages with the group commit: append to the mbox, then every
/// [`BATCH_MESSAGES`] (or [`BATCH_BYTES`], or [`BATCH_TIME`]) fsync the mbox and record the
/// batch and its UIDLs in one cache transaction.
///
/// The append mark (see [`Pop3Backend::recover`]) is set once, durably, before the first
/// append; each commit moves it to the end of what it recorded, and the last one clears it.
/// The first failure stops it; later jobs are ignored and [`Committer::finish`] reports it.
struct Committer<'c> {
    cache: &'c mut Cache,
    account: i64,
    folder: i64,
    mbox: Mbox,
    /// How many messages the download announced (see [`TAIL_BATCH`]).
    expected: u64,
    batch: Vec<NewMessage>,
    batch_bytes: u64,
    batch_started: std::time::Instant,
    /// Whether the cache holds an append mark of ours.
    marked: bool,
    large: Option<Large>,
    committed: u64,
    failed: Option<BackendError>,
}

impl<'c> Committer<'c> {
    fn new(cache: &'c mut Cache, account: i64, folder: i64, mbox: Mbox, expected: u64) -> Self {
        Committer {
            cache,
            account,
            folder,
            mbox,
            expected,
            batch: Vec::new(),
            batch_bytes: 0,
            batch_started: std::time::Instant::now(),
            marked: false,
            large: None,
            committed: 0,
            failed: None,
        }
    }

    /// Store what `job` carries; `false` once a failure has stopped this committer.
    fn take(&mut self, job: Job) -> bool {
        if self.failed.is_none()
            && let Err(e) = self.store(job)
        {
            self.failed = Some(e);
        }
        self.failed.is_none()
    }

    fn store(&mut self, job: Job) -> Result<(), BackendError> {
        match job {
            Job::Messages(list) => {
                for m in list {
                    self.before_append()?;
                    // NOTE: the header only: the body's words are read back from the mbox
                    // when the cache indexes them, off the download's critical path.
                    let head = render::parse_head(&m.raw);
                    let span = self.mbox.append(&m.raw, &head.sender, now_unix())?;
                    self.add(m.uidl, head.envelope, span)?;
                }
            }
            Job::LargeStart { uidl, mut head } => {
                // NOTE: a large message may take long to arrive; the messages received before
                // it are recorded first, so that a link dropping during it does not cost them.
                self.commit(false)?;
                self.before_append()?;
                let sender = render::envelope_sender(&head);
                let mut appender = self.mbox.begin(&sender, now_unix())?;
                appender.write(&mut self.mbox, &head)?;
                let bytes = head.len() as u64;
                head.truncate(256 * 1024);
                self.large = Some(Large {
                    uidl,
                    head,
                    appender,
                    bytes,
                });
            }
            Job::LargeData(chunk) => {
                let Some(large) = self.large.as_mut() else {
                    return Err(internal("a message piece came without its start"));
                };
                large.appender.write(&mut self.mbox, &chunk)?;
                large.bytes += chunk.len() as u64;
            }
            Job::LargeEnd => {
                if let Some(large) = self.large.take() {
                    let span = large.appender.finish(&mut self.mbox)?;
                    let envelope = render::envelope_of_head(&large.head, large.bytes);
                    self.add(large.uidl, envelope, span)?;
                }
            }
            Job::Abandon => {}
        }
        Ok(())
    }

    /// Make sure the cache knows where our uncommitted appends begin.
    fn before_append(&mut self) -> Result<(), BackendError> {
        if !self.marked {
            self.cache
                .set_mbox_append_from(self.folder, Some(self.mbox.len()))?;
            self.marked = true;
        }
        if self.batch.is_empty() {
            self.batch_started = std::time::Instant::now();
        }
        Ok(())
    }

    fn add(&mut self, uidl: String, envelope: Envelope, span: Span) -> Result<(), BackendError> {
        self.batch_bytes += envelope.size;
        self.batch.push(NewMessage {
            remote: RemoteId::Uidl(uidl),
            envelope,
            flags: Flags::default(),
            modseq: None,
            mbox: Some(span),
            body_text: BodyText::InMbox,
        });
        let held = self.batch.len() as u64;
        let to_come = self.expected.saturating_sub(self.committed + held);
        if held >= (BATCH_MESSAGES as u64).min(to_come.max(TAIL_BATCH))
            || self.batch_bytes >= BATCH_BYTES
            || self.batch_started.elapsed() >= BATCH_TIME
        {
            self.commit(false)?;
        }
        Ok(())
    }

    /// Make the batch durable and record it: fsync the mbox, then one cache transaction.
    fn commit(&mut self, last: bool) -> Result<(), BackendError> {
        if self.batch.is_empty() {
            if last && self.marked {
                self.cache.set_mbox_append_from(self.folder, None)?;
                self.marked = false;
            }
            return Ok(());
        }
        self.mbox.sync()?;
        let mark = (!last).then(|| self.mbox.len());
        self.cache
            .commit_downloads(self.account, self.folder, &self.batch, now_unix(), mark)?;
        self.marked = !last;
        self.committed += self.batch.len() as u64;
        self.batch.clear();
        self.batch_bytes = 0;
        Ok(())
    }

    /// Commit what is left; how many messages were recorded in all, or the first failure.
    fn finish(mut self) -> Result<u64, BackendError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        self.commit(true)?;
        Ok(self.committed)
    }

    /// The download failed: leave the open batch uncommitted (as a crash would), so that the
    /// next sync's repair cuts it off and downloads it again. How many messages were recorded
    /// before, or the first failure.
    fn abandon(mut self) -> Result<u64, BackendError> {
        match self.failed.take() {
            Some(e) => Err(e),
            None => Ok(self.committed),
        }
    }
}

/// Where the download loop sends its jobs: a [`Committer`] on its own thread with its own
/// cache connection, or (for a cache that cannot be opened twice) one on this thread.
enum Sink<'c> {
    Thread {
        jobs: std::sync::mpsc::SyncSender<Job>,
        worker: std::thread::JoinHandle<Result<u64, BackendError>>,
        /// Jobs sent and not yet taken by the committer.
        waiting: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    },
    Inline(Box<Committer<'c>>),
}

/// An error that only a bug in this module could cause.
fn internal(what: &str) -> BackendError {
    BackendError::Io {
        context: format!("pop3 download: {what}"),
        source: std::io::Error::other("internal error"),
    }
}

/// How many jobs may wait for the committer thread.
const SINK_DEPTH: usize = 32;
/// Roughly how many whole messages (and bytes) may wait for the committer in all, in its
/// queue and in the download loop's hands, before the loop waits for it.
const HOLD_MESSAGES: usize = 4096;
const HOLD_BYTES: usize = 16 * 1024 * 1024;
/// A job's worth of whole messages (and bytes): what the download loop gathers while the
/// committer has work queued.
///
/// NOTE: the queue is bounded in jobs, not bytes; were a held batch of up to [`HOLD_BYTES`]
/// sent as one job, a slow disk would let [`SINK_DEPTH`] of them pile up (512 MiB). With
/// jobs of about this share each (a job is sent once it reaches it, so it also holds what
/// one read brought, or one message up to [`STREAM_THRESHOLD`]) the queue stays near
/// [`HOLD_BYTES`] unless single messages are larger than a share.
const JOB_MESSAGES: usize = HOLD_MESSAGES / SINK_DEPTH;
const JOB_BYTES: usize = HOLD_BYTES / SINK_DEPTH;

impl<'c> Sink<'c> {
    fn start(cache: &'c mut Cache, account: i64, folder: i64, mbox: Mbox, expected: u64) -> Self {
        // NOTE: the fsync and the cache transaction of one batch take as long as receiving
        // the next; on a thread of their own they overlap with it instead of stalling the
        // pipeline. The bounded queue keeps memory flat if the disk is the slower side.
        match cache.open_another() {
            Ok(mut other) => {
                let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(SINK_DEPTH);
                let waiting = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
                let taken = waiting.clone();
                let worker = std::thread::spawn(move || {
                    let mut committer = Committer::new(&mut other, account, folder, mbox, expected);
                    for job in queue {
                        taken.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
                        if matches!(job, Job::Abandon) {
                            return committer.abandon();
                        }
                        if !committer.take(job) {
                            break;
                        }
                    }
                    committer.finish()
                });
                Sink::Thread {
                    jobs,
                    worker,
                    waiting,
                }
            }
            Err(_) => Sink::Inline(Box::new(Committer::new(
                cache, account, folder, mbox, expected,
            ))),
        }
    }

    /// Hand `job` on; `false` once the committer has stopped (its error comes from `finish`).
    fn send(&mut self, job: Job) -> bool {
        match self {
            Sink::Thread { jobs, waiting, .. } => {
                waiting.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                jobs.send(job).is_ok()
            }
            Sink::Inline(committer) => committer.take(job),
        }
    }

    /// Hand over whole messages: at once to an idle committer; while it has work queued
    /// they stay in `pending` until they make a job's worth ([`JOB_MESSAGES`] /
    /// [`JOB_BYTES`]), which then waits for room in the queue. `false` once the committer
    /// has stopped.
    fn offer(&mut self, pending: &mut Vec<Received>) -> bool {
        if pending.is_empty() {
            return true;
        }
        let bytes: usize = pending.iter().map(|m| m.raw.len()).sum();
        match self {
            Sink::Thread { jobs, waiting, .. }
                if pending.len() < JOB_MESSAGES && bytes < JOB_BYTES =>
            {
                // NOTE: while the committer has work queued, gather a whole job's worth:
                // a queue of many small jobs would make the loop wait long before the hold
                // is reached. An idle committer gets what there is at once.
                if waiting.load(std::sync::atomic::Ordering::Acquire) > 0 {
                    return true;
                }
                waiting.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                match jobs.try_send(Job::Messages(std::mem::take(pending))) {
                    Ok(()) => true,
                    Err(std::sync::mpsc::TrySendError::Full(Job::Messages(back))) => {
                        waiting.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
                        *pending = back;
                        true
                    }
                    Err(_) => false,
                }
            }
            _ => self.send(Job::Messages(std::mem::take(pending))),
        }
    }

    /// Wait for the committer: with `complete`, commit what is left; without, abandon it
    /// (the download failed). How many messages were recorded.
    fn finish(self, complete: bool) -> Result<u64, BackendError> {
        match self {
            Sink::Thread { jobs, worker, .. } => {
                if !complete {
                    // A closed queue means the committer already stopped; join tells why.
                    let _ = jobs.send(Job::Abandon);
                }
                drop(jobs);
                worker
                    .join()
                    .unwrap_or_else(|_| Err(internal("the cache writer stopped unexpectedly")))
            }
            Sink::Inline(committer) if complete => committer.finish(),
            Sink::Inline(committer) => committer.abandon(),
        }
    }
}

/// A connected, authenticated POP3 session.
struct Session {
    io: Transport,
    client: Client,
    caps: Vec<Capability>,
    host: String,
    port: u16,
    user: String,
    buf: Vec<u8>,
}

impl Session {
    async fn open(name: &str, account: &Account) -> Result<Session, BackendError> {
        Session::open_reporting(name, account, PasswordSource::Configured, &mut |_| {}).await
    }

    /// [`Session::open`], reporting each step to `step` and taking the password from
    /// `password`.
    async fn open_reporting(
        name: &str,
        account: &Account,
        password: PasswordSource<'_>,
        step: &mut (dyn FnMut(ConnectStep) + Send),
    ) -> Result<Session, BackendError> {
        let host = account.host.clone();
        let port = account.port();
        let trust = TlsTrust {
            ca_file: account.tls_ca_file(),
            cert_sha256: account.tls_cert_sha256_bytes(),
        };
        let tcp = tls::connect_tcp(&host, port).await?;
        step(ConnectStep::Connected);
        // NOTE: as for IMAP, the password command or keyring runs while the greeting and CAPA
        // go on, once the connection is secured (never for an unreachable server or a refused
        // certificate).
        let (secured, when_secured) = tokio::sync::oneshot::channel();
        let secure = async {
            // NOTE: dropped unfired if securing fails, which ends the wait for the password.
            let mut secured = Some(secured);
            let mut fire = || {
                if let Some(s) = secured.take() {
                    let _ = s.send(());
                }
            };
            let io = match account.security {
                Security::Tls => {
                    let tls = tls::handshake(tcp, &host, &trust).await?;
                    step(ConnectStep::Secured);
                    fire();
                    Transport::Tls(Box::new(tls))
                }
                Security::None => {
                    fire();
                    Transport::Plain(tcp)
                }
                Security::Starttls => Transport::Plain(tcp),
            };
            let mut session = Session {
                io,
                client: Client::new(),
                caps: Vec::new(),
                host: host.clone(),
                port,
                user: account.username().to_string(),
                buf: vec![0; 256 * 1024],
            };
            let apop_timestamp = match session.event().await? {
                Event::GreetingReceived { apop_timestamp, .. } => apop_timestamp,
                Event::GreetingRejected { code, text } => {
                    return Err(session.greeting_refused(code, &text));
                }
                other => return Err(session.unexpected("the greeting", &other)),
            };
            session.caps = session.capa().await?;
            if account.security == Security::Starttls {
                if !session.caps.contains(&Capability::Stls) {
                    return Err(BackendError::NoStartTls {
                        host: host.clone(),
                        what: "STLS",
                    });
                }
                match session.command(Command::Stls).await? {
                    Event::Ok { .. } => {}
                    Event::Err { code, text, .. } => {
                        return Err(session.refused(CommandKind::Stls, code, &text));
                    }
                    other => return Err(session.unexpected("STLS", &other)),
                }
                let Some(tcp) = session.io.take_plain() else {
                    return Err(
                        session.unexpected_text("STLS", "the connection is already encrypted")
                    );
                };
                session.io = Transport::Tls(Box::new(tls::handshake(tcp, &host, &trust).await?));
                step(ConnectStep::Secured);
                fire();
                // RFC 2595 §4: capabilities may differ after TLS; ask again.
                session.caps = session.capa().await?;
            }
            step(ConnectStep::Capabilities(
                session.caps.iter().map(capability_name).collect(),
            ));
            Ok::<_, BackendError>((session, apop_timestamp))
        };
        if account.uses_oauth2() {
            let (mut session, _) = secure.await?;
            session.oauth2_login(name, account).await?;
            step(ConnectStep::LoggedIn);
            return Ok(session);
        }
        let (secured, password) =
            tokio::join!(secure, password.resolve_when(when_secured, name, account));
        let (mut session, apop_timestamp) = secured?;
        let password = &password.ok_or_else(|| BackendError::Protocol {
            host: host.clone(),
            reason: "the connection was never secured".into(),
        })??;
        if account.auth == Some(crate::config::Auth::Apop) {
            let Some(timestamp) = apop_timestamp else {
                return Err(BackendError::Auth {
                    host,
                    user: session.user.clone(),
                    reason: "auth = \"apop\" is configured but the server does not offer APOP \
                             (no timestamp in its greeting)"
                        .into(),
                });
            };
            let cmd = Command::apop(session.user.clone(), &timestamp, &password.expose().into());
            match session.command(cmd).await? {
                Event::Ok { .. } => {}
                Event::Err { code, text, .. } => {
                    return Err(session.refused(CommandKind::Apop, code, &text));
                }
                other => return Err(session.unexpected("APOP", &other)),
            }
        } else {
            session.login(password.expose()).await?;
        }
        step(ConnectStep::LoggedIn);
        Ok(session)
    }

    /// STAT (RFC 1939 §5): how many messages the maildrop holds and their total size.
    async fn stat(&mut self) -> Result<(u32, u64), BackendError> {
        match self.command(Command::Stat).await? {
            Event::StatReceived { count, size } => Ok((count, size)),
            Event::Err { code, text, .. } => Err(self.refused(CommandKind::Stat, code, &text)),
            other => Err(self.unexpected("STAT", &other)),
        }
    }

    async fn capa(&mut self) -> Result<Vec<Capability>, BackendError> {
        match self.command(Command::Capa).await? {
            Event::CapaReceived(caps) => Ok(caps),
            // RFC 2449 is optional: a server without CAPA simply has no extensions.
            Event::Err { .. } => Ok(Vec::new()),
            other => Err(self.unexpected("CAPA", &other)),
        }
    }

    fn pipelining(&self) -> bool {
        self.caps.contains(&Capability::Pipelining)
    }

    async fn login(&mut self, password: &str) -> Result<(), BackendError> {
        let plain = self
            .caps
            .iter()
            .any(|c| matches!(c, Capability::Sasl(m) if m.iter().any(|m| m == "PLAIN")));
        let user = self.user.clone();
        let steps = if plain {
            vec![Command::AuthPlain {
                authzid: None,
                authcid: user,
                password: password.into(),
            }]
        } else {
            vec![Command::User(user), Command::Pass(password.into())]
        };
        for cmd in steps {
            let kind = cmd.kind();
            match self.command(cmd).await? {
                Event::Ok { .. } => {}
                Event::Err { code, text, .. } => return Err(self.refused(kind, code, &text)),
                other => return Err(self.unexpected(kind.name(), &other)),
            }
        }
        Ok(())
    }

    /// `AUTH OAUTHBEARER` / `AUTH XOAUTH2` (RFC 5034, RFC 7628) with an access token; a
    /// rejected token is refreshed once and tried again, a second rejection asks the user to
    /// sign in again.
    async fn oauth2_login(&mut self, name: &str, account: &Account) -> Result<(), BackendError> {
        use crate::oauth2::{self, sasl};
        let (host, user) = (self.host.clone(), self.user.clone());
        let auth_error = |reason: String| BackendError::Auth {
            host: host.clone(),
            user: user.clone(),
            reason,
        };
        let offered = self.caps.iter().flat_map(|c| match c {
            Capability::Sasl(m) => m.iter().map(String::as_str).collect(),
            _ => Vec::new(),
        });
        let Some(mechanism) = sasl::choose(offered, account.oauth2_mechanism) else {
            return Err(auth_error(
                "the server offers neither OAUTHBEARER nor XOAUTH2 (CAPA SASL)".into(),
            ));
        };
        let mut token = oauth2::access_token(name, account)
            .await
            .map_err(|e| auth_error(e.to_string()))?;
        for attempt in 0..2 {
            let message =
                sasl::initial_response(mechanism, &self.user, &self.host, self.port, &token);
            let cmd = Command::AuthBearer {
                mechanism: sasl::name(mechanism),
                message: message.expose().into(),
                error_answer: sasl::error_answer(mechanism),
            };
            let (code, text) = match self.command(cmd).await? {
                Event::Ok { .. } => return Ok(()),
                Event::Err { code, text, .. } => (code, text),
                other => return Err(self.unexpected("AUTH", &other)),
            };
            if matches!(
                code,
                Some(ResponseCode::InUse | ResponseCode::LoginDelay | ResponseCode::SysTemp)
            ) {
                return Err(self.refused(CommandKind::AuthBearer, code, &text));
            }
            if attempt == 0 {
                token = oauth2::renew_access_token(name, account, &token)
                    .await
                    .map_err(|e| auth_error(e.to_string()))?;
            } else {
                let why = sanitize::line(&text);
                return Err(auth_error(
                    oauth2::refused_twice(name, account, &why).to_string(),
                ));
            }
        }
        Err(auth_error("the server refused the access token".into()))
    }

    /// What the server holds, by UIDL; `true` if UIDL had to be stood in for.
    ///
    /// NOTE: only UIDL is asked for. LIST's sizes would only serve a progress total nobody
    /// shows, and on a mailbox left on the server (the default) every sync would fetch a
    /// second listing as long as the first: Dovecot builds it after UIDL, before the first
    /// RETR can be answered. A server without UIDL gets LIST, for the sizes its stand-in
    /// UIDLs are made of.
    async fn listing(&mut self) -> Result<(Vec<Listed>, bool), BackendError> {
        match self.command(Command::Uidl(None)).await? {
            Event::UidlReceived(list) => Ok((
                list.into_iter()
                    .map(|(msg, uidl)| Listed { msg, uidl })
                    .collect(),
                false,
            )),
            Event::Err { .. } => {
                let sizes = match self.command(Command::List(None)).await? {
                    Event::ListReceived(list) => list,
                    Event::Err { code, text, .. } => {
                        return Err(self.refused(CommandKind::List(None), code, &text));
                    }
                    other => return Err(self.unexpected("LIST", &other)),
                };
                Ok((self.hashed_ids(&sizes).await?, true))
            }
            other => Err(self.unexpected("UIDL", &other)),
        }
    }

    /// Stand-in UIDLs for a server without UIDL: a hash of Message-ID, Date and size.
    async fn hashed_ids(&mut self, sizes: &[(u32, u64)]) -> Result<Vec<Listed>, BackendError> {
        let mut out = Vec::with_capacity(sizes.len());
        let mut used: HashMap<String, u32> = HashMap::new();
        for &(msg, size) in sizes {
            self.send(Command::Top(msg, 0))?;
            let mut head = Vec::new();
            loop {
                match self.event().await? {
                    Event::TopStarted { .. } => {}
                    Event::TopData { chunk, .. } => {
                        if head.len() < 256 * 1024 {
                            head.extend_from_slice(&chunk);
                        }
                    }
                    Event::TopFinished { .. } => break,
                    Event::Err { code, text, .. } => {
                        return Err(self.refused(CommandKind::Top(msg, 0), code, &text));
                    }
                    other => return Err(self.unexpected("TOP", &other)),
                }
            }
            let env = render::envelope_of_head(&head, size);
            let mut hasher = Sha256::new();
            hasher.update(env.message_id.unwrap_or_default().as_bytes());
            hasher.update([0]);
            hasher.update(env.date.unwrap_or_default().to_le_bytes());
            hasher.update(size.to_le_bytes());
            let digest = hasher.finalize();
            let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
            let base = format!("mailbag-{hex}");
            // NOTE: two messages with no Message-ID, the same Date and size would collide;
            // number the repeats so that neither is skipped.
            let n = used.entry(base.clone()).or_insert(0);
            *n += 1;
            let uidl = if *n == 1 { base } else { format!("{base}-{n}") };
            out.push(Listed { msg, uidl });
        }
        Ok(out)
    }

    /// Download `wanted` into `mbox` and record it in the cache; see [`Committer`] for the
    /// order that makes it crash-safe. Messages are stored on another thread while the next
    /// ones arrive.
    async fn download(
        &mut self,
        cache: &mut Cache,
        account: i64,
        folder: i64,
        mbox: Mbox,
        wanted: &[Listed],
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<Downloaded, BackendError> {
        let mut sink = Sink::start(cache, account, folder, mbox, wanted.len() as u64);
        let mut done = Downloaded {
            count: 0,
            bytes: 0,
            warnings: Vec::new(),
        };
        let received = self.receive(&mut sink, wanted, &mut done, progress).await;
        // NOTE: the committer's failure comes first: a download stopped by it fails too.
        done.count = sink.finish(received.is_ok())?;
        received?;
        Ok(done)
    }

    /// The RETR loop: pipelined commands, replies handed to `sink` as they complete.
    async fn receive(
        &mut self,
        sink: &mut Sink<'_>,
        wanted: &[Listed],
        done: &mut Downloaded,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<(), BackendError> {
        let depth = if self.pipelining() { PIPELINE_DEPTH } else { 1 };
        let mut next = wanted.iter();
        let mut in_flight: VecDeque<&Listed> = VecDeque::new();
        let mut incoming: Option<Incoming> = None;
        // Whole messages not yet handed to the sink.
        let mut pending: Vec<Received> = Vec::new();
        let stopped = || internal("the cache writer stopped");
        let mut state = Progress {
            total: wanted.len() as u64,
            ..Progress::default()
        };
        progress(state);
        loop {
            // NOTE: refill the pipeline when half of it has come back, so that commands go
            // out in bursts (one TLS record for many RETRs) rather than one per message.
            if in_flight.len() <= depth / 2 {
                while in_flight.len() < depth {
                    let Some(item) = next.next() else { break };
                    self.send(Command::Retr(item.msg))?;
                    in_flight.push_back(item);
                }
            }
            let Some(&current) = in_flight.front() else {
                break;
            };
            let event = match self.ready_event()? {
                Some(event) => event,
                None => {
                    // NOTE: about to wait for the server: hand over what has arrived, so
                    // that nothing waits here on a slow link.
                    if !sink.offer(&mut pending) {
                        return Err(stopped());
                    }
                    self.event().await?
                }
            };
            match event {
                Event::RetrStarted { msg, .. } if msg == current.msg => {
                    incoming = Some(Incoming {
                        msg,
                        head: Vec::new(),
                        streaming: false,
                        bytes: 0,
                    });
                }
                Event::RetrData { msg, chunk } => {
                    let Some(inc) = incoming.as_mut().filter(|i| i.msg == msg) else {
                        return Err(self.unexpected_text("RETR", "data for another message"));
                    };
                    inc.bytes += chunk.len() as u64;
                    state.bytes += chunk.len() as u64;
                    if inc.streaming {
                        if !sink.send(Job::LargeData(chunk)) {
                            return Err(stopped());
                        }
                    } else if inc.head.is_empty() {
                        inc.head = chunk;
                    } else {
                        inc.head.extend_from_slice(&chunk);
                    }
                    if !inc.streaming && inc.head.len() > STREAM_THRESHOLD {
                        inc.streaming = true;
                        let start = Job::LargeStart {
                            uidl: current.uidl.clone(),
                            head: std::mem::take(&mut inc.head),
                        };
                        let whole = std::mem::take(&mut pending);
                        if (!whole.is_empty() && !sink.send(Job::Messages(whole)))
                            || !sink.send(start)
                        {
                            return Err(stopped());
                        }
                    }
                }
                Event::RetrFinished { msg } if msg == current.msg => {
                    in_flight.pop_front();
                    let Some(inc) = incoming.take() else {
                        return Err(self.unexpected_text("RETR", "end without a start"));
                    };
                    if inc.streaming {
                        if !sink.send(Job::LargeEnd) {
                            return Err(stopped());
                        }
                    } else {
                        pending.push(Received {
                            uidl: current.uidl.clone(),
                            raw: inc.head,
                        });
                    }
                    done.bytes += inc.bytes;
                    state.done += 1;
                    progress(state);
                }
                Event::Err {
                    cmd: CommandKind::Retr(_),
                    text,
                    ..
                } => {
                    // The message vanished (another session deleted it): skip, never stop.
                    in_flight.pop_front();
                    done.warnings.push(format!(
                        "message {} ({}) could not be downloaded: {}",
                        current.msg,
                        sanitize::line(&current.uidl),
                        sanitize::line(&text)
                    ));
                }
                other => return Err(self.unexpected("RETR", &other)),
            }
        }
        if !pending.is_empty() && !sink.send(Job::Messages(pending)) {
            return Err(stopped());
        }
        Ok(())
    }

    async fn delete(&mut self, msgs: &[u32]) -> Result<(), BackendError> {
        let depth = if self.pipelining() { PIPELINE_DEPTH } else { 1 };
        for chunk in msgs.chunks(depth) {
            for &msg in chunk {
                self.send(Command::Dele(msg))?;
            }
            for _ in chunk {
                match self.event().await? {
                    Event::Ok { .. } => {}
                    // Already deleted in this session or gone: nothing to do.
                    Event::Err { .. } => {}
                    other => return Err(self.unexpected("DELE", &other)),
                }
            }
        }
        Ok(())
    }

    async fn quit(&mut self) -> Result<(), BackendError> {
        match self.command(Command::Quit).await? {
            Event::Ok { .. } => Ok(()),
            Event::Err { code, text, .. } => Err(self.refused(CommandKind::Quit, code, &text)),
            other => Err(self.unexpected("QUIT", &other)),
        }
    }

    fn send(&mut self, cmd: Command) -> Result<(), BackendError> {
        let what = cmd.kind().name();
        self.client.send(cmd).map_err(|e| BackendError::Protocol {
            host: self.host.clone(),
            reason: format!("cannot send {what}: {e}"),
        })
    }

    async fn command(&mut self, cmd: Command) -> Result<Event, BackendError> {
        self.send(cmd)?;
        self.event().await
    }

    async fn flush(&mut self) -> Result<(), BackendError> {
        let Some(mut out) = self.client.next_output() else {
            return Ok(());
        };
        // NOTE: every queued command goes out in one write, so that a burst of pipelined
        // RETRs costs one TLS record and one send instead of one per message.
        while let Some(bytes) = self.client.next_output() {
            out.extend_from_slice(&bytes);
        }
        let write = tokio::time::timeout(READ_TIMEOUT, self.io.write_all(&out)).await;
        match write {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(self.io_error("while sending a command", &e)),
            Err(_) => return Err(self.timed_out()),
        }
        match tokio::time::timeout(READ_TIMEOUT, self.io.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.io_error("while sending a command", &e)),
            Err(_) => Err(self.timed_out()),
        }
    }

    /// The next event if the bytes already read hold one (nothing is sent or read).
    fn ready_event(&mut self) -> Result<Option<Event>, BackendError> {
        self.client
            .next_event()
            .map_err(|e| BackendError::Protocol {
                host: self.host.clone(),
                reason: e.to_string(),
            })
    }

    /// The next event, sending queued commands and reading as needed.
    async fn event(&mut self) -> Result<Event, BackendError> {
        loop {
            if let Some(event) = self.ready_event()? {
                return Ok(event);
            }
            self.flush().await?;
            let read = tokio::time::timeout(READ_TIMEOUT, self.io.read(&mut self.buf)).await;
            match read {
                Ok(Ok(0)) => {
                    return Err(BackendError::Dropped {
                        host: self.host.clone(),
                        during: if self.client.awaiting_reply() {
                            "in the middle of a reply".into()
                        } else {
                            "unexpectedly".into()
                        },
                    });
                }
                Ok(Ok(n)) => {
                    let (head, _) = self.buf.split_at(n);
                    self.client.enqueue_input(head);
                }
                Ok(Err(e)) => return Err(self.io_error("while reading a reply", &e)),
                Err(_) => return Err(self.timed_out()),
            }
        }
    }

    fn timed_out(&self) -> BackendError {
        BackendError::Timeout {
            host: self.host.clone(),
            port: self.port,
            secs: READ_TIMEOUT.as_secs(),
        }
    }

    fn io_error(&self, during: &str, e: &std::io::Error) -> BackendError {
        BackendError::Dropped {
            host: self.host.clone(),
            during: format!("{during} ({e})"),
        }
    }

    fn unexpected(&self, what: &str, event: &Event) -> BackendError {
        let name = match event {
            Event::GreetingReceived { .. } | Event::GreetingRejected { .. } => "a greeting",
            Event::Ok { .. } => "+OK",
            Event::Err { .. } => "-ERR",
            Event::CapaReceived(_) => "a CAPA listing",
            Event::StatReceived { .. } => "a STAT reply",
            Event::ListReceived(_) => "a LIST listing",
            Event::UidlReceived(_) => "a UIDL listing",
            Event::RetrStarted { .. } | Event::RetrData { .. } | Event::RetrFinished { .. } => {
                "a message"
            }
            Event::TopStarted { .. } | Event::TopData { .. } | Event::TopFinished { .. } => {
                "a TOP reply"
            }
        };
        self.unexpected_text(what, &format!("got {name}"))
    }

    fn unexpected_text(&self, what: &str, detail: &str) -> BackendError {
        BackendError::Protocol {
            host: self.host.clone(),
            reason: format!("unexpected reply to {what}: {detail}"),
        }
    }

    /// The error for a `-ERR` greeting (RFC 1939 §4): the server refused the session before
    /// any login, so it is never reported as a wrong password.
    fn greeting_refused(&self, code: Option<ResponseCode>, text: &str) -> BackendError {
        match code {
            Some(ResponseCode::InUse | ResponseCode::LoginDelay | ResponseCode::SysTemp) => {
                self.refused(CommandKind::Noop, code, text)
            }
            _ => BackendError::Connect {
                host: self.host.clone(),
                port: self.port,
                reason: format!("the server refused the session: {}", sanitize::line(text)),
            },
        }
    }

    /// The error for a `-ERR`, chosen by its RFC 2449/3206 response code and the command.
    fn refused(&self, cmd: CommandKind, code: Option<ResponseCode>, text: &str) -> BackendError {
        let text = sanitize::line(text).into_owned();
        let host = self.host.clone();
        match code {
            Some(ResponseCode::InUse) => BackendError::Temporary {
                host,
                reason: format!(
                    "the mailbox is in use by another POP3 session (another mail client may be \
                     downloading) [IN-USE] {text}"
                ),
            },
            Some(ResponseCode::LoginDelay) => BackendError::Temporary {
                host,
                reason: format!("the server limits how often you may log in [LOGIN-DELAY] {text}"),
            },
            Some(ResponseCode::SysTemp) => BackendError::Temporary {
                host,
                reason: format!("a temporary problem on the server [SYS/TEMP] {text}"),
            },
            Some(ResponseCode::Auth) => BackendError::Auth {
                host,
                user: self.user.clone(),
                reason: format!("wrong user name or password ({text})"),
            },
            None if matches!(
                cmd,
                CommandKind::User
                    | CommandKind::Pass
                    | CommandKind::AuthPlain
                    | CommandKind::AuthBearer
                    | CommandKind::Apop
            ) =>
            {
                BackendError::Auth {
                    host,
                    user: self.user.clone(),
                    reason: format!("wrong user name or password ({text})"),
                }
            }
            _ => BackendError::Protocol {
                host,
                reason: format!("{} was refused: {text}", cmd.name()),
            },
        }
    }
}

/// Index the messages of an mbox from byte `from` on, marking the file as scanned.
fn import_mbox(cache: &mut Cache, folder: i64, path: &Path, from: u64) -> Result<(), BackendError> {
    let mut found = Vec::new();
    mbox::scan_from(path, from, |m| {
        let head = render::parse_head(&m.raw);
        found.push(NewMessage {
            remote: RemoteId::Local(m.span.offset),
            flags: render::mbox_flags(&m.raw),
            body_text: BodyText::InMbox,
            envelope: head.envelope,
            modseq: None,
            mbox: Some(m.span),
        });
        Ok(())
    })?;
    cache.import_mbox(folder, &found)?;
    Ok(())
}

/// Where an expunge writes the new mbox before renaming it into place.
fn rewrite_path(mbox: &Path) -> PathBuf {
    let mut name = mbox.file_name().unwrap_or_default().to_os_string();
    name.push(".mailbag-expunge");
    mbox.with_file_name(name)
}

/// Copy every message not marked deleted into `new_file` (fsynced); returns the new spans.
fn write_without(
    old: &Path,
    new_file: &Path,
    messages: &[(i64, Span, Flags)],
) -> Result<Vec<(i64, Span)>, BackendError> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let io = |context: String| move |source| BackendError::Io { context, source };
    let mut src = std::fs::File::open(old).map_err(io(format!("cannot read {}", old.display())))?;
    let mut dst = std::fs::File::create(new_file)
        .map_err(io(format!("cannot write {}", new_file.display())))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, &mut dst);
    let mut moved = Vec::new();
    let mut at = 0u64;
    let mut buf = Vec::new();
    for (id, span, flags) in messages {
        if flags.contains(Flags::DELETED) {
            continue;
        }
        buf.resize(span.length as usize, 0);
        src.seek(SeekFrom::Start(span.offset))
            .and_then(|_| src.read_exact(&mut buf))
            .map_err(io(format!("cannot read {}", old.display())))?;
        // The span holds the From line and the quoted message; the separator follows it.
        let sep: &[u8] = if buf.ends_with(b"\n") { b"\n" } else { b"\n\n" };
        out.write_all(&buf)
            .and_then(|_| out.write_all(sep))
            .map_err(io(format!("cannot write {}", new_file.display())))?;
        moved.push((
            *id,
            Span {
                offset: at,
                length: span.length,
            },
        ));
        at += span.length + sep.len() as u64;
    }
    out.flush()
        .map_err(io(format!("cannot write {}", new_file.display())))?;
    drop(out);
    dst.sync_all()
        .map_err(io(format!("cannot write {}", new_file.display())))?;
    Ok(moved)
}

/// Rename the rewritten mbox into place and make the rename durable.
fn install_rewrite(new_file: &Path, mbox: &Path) -> Result<(), BackendError> {
    std::fs::rename(new_file, mbox).map_err(|source| BackendError::Io {
        context: format!("cannot replace {}", mbox.display()),
        source,
    })?;
    if let Some(dir) = mbox.parent().filter(|d| !d.as_os_str().is_empty()) {
        // NOTE: on Linux a directory fsync makes the rename itself durable.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(i: usize) -> Received {
        let raw = format!(
            "From: a{i}@example.com\r\nSubject: message {i}\r\nMessage-ID: <{i}@test>\r\n\r\n\
             From the body of {i}\r\n"
        )
        .into_bytes();
        Received {
            uidl: format!("uidl-{i}"),
            raw,
        }
    }

    fn setup(dir: &Path) -> (Cache, i64, i64, Mbox) {
        let path = dir.join("in.mbox");
        let mut cache = Cache::open_in_memory().unwrap();
        let (account, folder) =
            super::super::mbox_account(&mut cache, "pop", "pop3", &path).unwrap();
        (cache, account, folder, Mbox::open(&path).unwrap())
    }

    /// Hand `m` over as a large message does arrive, all but its end.
    fn start_in_pieces(committer: &mut Committer<'_>, m: &Received) {
        let (head, tail) = m.raw.split_at(20);
        assert!(committer.take(Job::LargeStart {
            uidl: m.uidl.clone(),
            head: head.to_vec(),
        }));
        assert!(committer.take(Job::LargeData(tail.to_vec())));
    }

    #[test]
    fn an_idle_committer_gets_messages_at_once_and_a_busy_one_whole_jobs() {
        let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(4);
        let worker = std::thread::spawn(|| Ok(0));
        let waiting = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut sink = Sink::Thread {
            jobs,
            worker,
            waiting: waiting.clone(),
        };
        // Nothing queued: even one message goes at once.
        let mut pending = vec![received(0)];
        assert!(sink.offer(&mut pending));
        assert!(pending.is_empty());
        assert_eq!(waiting.load(std::sync::atomic::Ordering::Acquire), 1);
        // The committer has not taken it yet: the next ones are gathered, though the queue
        // has room.
        let mut pending: Vec<Received> = (1..4).map(received).collect();
        assert!(sink.offer(&mut pending));
        assert_eq!(pending.len(), 3);
        // Taken: the gathered ones go.
        assert!(matches!(queue.recv(), Ok(Job::Messages(list)) if list.len() == 1));
        waiting.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        assert!(sink.offer(&mut pending));
        assert!(pending.is_empty());
        assert!(matches!(queue.recv(), Ok(Job::Messages(list)) if list.len() == 3));
    }

    #[test]
    fn a_busy_committer_is_handed_jobs_of_bounded_size() {
        let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(1);
        let worker = std::thread::spawn(|| Ok(0));
        let waiting = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut sink = Sink::Thread {
            jobs,
            worker,
            waiting,
        };
        // The committer's queue is full: whole messages stay in the loop's hands ...
        assert!(sink.send(Job::Abandon));
        let mut pending: Vec<Received> = (0..JOB_MESSAGES - 1).map(received).collect();
        assert!(sink.offer(&mut pending));
        assert_eq!(pending.len(), JOB_MESSAGES - 1);
        // ... until they make a job's worth, which then waits for room in the queue rather
        // than growing further (the queue would otherwise fill with jobs of any size).
        let taken = std::thread::spawn(move || {
            queue
                .iter()
                .map(|job| match job {
                    Job::Messages(list) => list.len(),
                    _ => 0,
                })
                .collect::<Vec<_>>()
        });
        pending.push(received(JOB_MESSAGES));
        assert!(sink.offer(&mut pending));
        assert!(pending.is_empty());
        assert_eq!(sink.finish(true).unwrap(), 0);
        assert_eq!(taken.join().unwrap(), vec![0, JOB_MESSAGES]);
    }

    #[test]
    fn a_finished_download_is_committed_and_the_mark_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let (mut cache, account, folder, mbox) = setup(dir.path());
        let mut committer = Committer::new(&mut cache, account, folder, mbox, u64::MAX);
        // More than one batch, then a message that arrives in pieces.
        let whole: Vec<Received> = (0..BATCH_MESSAGES + 3).map(received).collect();
        assert!(committer.take(Job::Messages(whole)));
        let large = received(9999);
        start_in_pieces(&mut committer, &large);
        assert!(committer.take(Job::LargeEnd));
        assert_eq!(committer.finish().unwrap(), BATCH_MESSAGES as u64 + 4);
        assert_eq!(cache.uidls(folder).unwrap().len(), BATCH_MESSAGES + 4);
        let state = cache.folder(folder).unwrap().unwrap().mbox;
        assert_eq!(state.append_from, None);
        let mut bodies = Vec::new();
        mbox::scan(&dir.path().join("in.mbox"), |m| {
            bodies.push(m.raw);
            Ok(())
        })
        .unwrap();
        assert_eq!(bodies.len(), BATCH_MESSAGES + 4);
        assert_eq!(bodies.last(), Some(&large.raw));
    }

    #[test]
    fn batches_shrink_towards_the_end_of_a_download() {
        let dir = tempfile::tempdir().unwrap();
        let (mut cache, account, folder, mbox) = setup(dir.path());
        let total = BATCH_MESSAGES as u64 * 3 + 100;
        let mut recorded = Vec::new();
        {
            let mut committer = Committer::new(&mut cache, account, folder, mbox, total);
            for i in 0..total as usize {
                assert!(committer.take(Job::Messages(vec![received(i)])));
                if committer.committed != recorded.last().copied().unwrap_or(0) {
                    recorded.push(committer.committed);
                }
            }
            assert_eq!(committer.finish().unwrap(), total);
        }
        assert_eq!(cache.uidls(folder).unwrap().len() as u64, total);
        let mut batches: Vec<u64> = recorded
            .iter()
            .zip(std::iter::once(&0).chain(&recorded))
            .map(|(now, before)| now - before)
            .collect();
        batches.push(total - recorded.last().copied().unwrap_or(0));
        assert!(
            batches.iter().all(|b| *b <= BATCH_MESSAGES as u64),
            "{batches:?}"
        );
        assert_eq!(batches[0], BATCH_MESSAGES as u64, "{batches:?}");
        // What is left when the last message arrives is small.
        assert!(*batches.last().unwrap() <= TAIL_BATCH, "{batches:?}");
        assert!(batches.len() <= 10, "{batches:?}");
    }

    #[test]
    fn an_abandoned_download_leaves_its_open_batch_to_the_repair() {
        let dir = tempfile::tempdir().unwrap();
        let (mut cache, account, folder, mbox) = setup(dir.path());
        let mut committer = Committer::new(&mut cache, account, folder, mbox, u64::MAX);
        let whole: Vec<Received> = (0..BATCH_MESSAGES + 3).map(received).collect();
        assert!(committer.take(Job::Messages(whole)));
        assert_eq!(committer.abandon().unwrap(), BATCH_MESSAGES as u64);
        // The first batch is recorded; the mark points at the end of it, where the three
        // uncommitted messages begin.
        assert_eq!(cache.uidls(folder).unwrap().len(), BATCH_MESSAGES);
        let state = cache.folder(folder).unwrap().unwrap().mbox;
        let committed = cache.mbox_committed_end(folder).unwrap();
        let mark = state.append_from.expect("the mark stays for the repair");
        assert!(
            mark >= committed,
            "mark {mark} before the committed end {committed}"
        );
        let len = std::fs::metadata(dir.path().join("in.mbox")).unwrap().len();
        assert!(len > mark, "the uncommitted tail is past the mark");
    }

    #[test]
    fn messages_before_a_large_one_are_recorded_before_it_streams() {
        let dir = tempfile::tempdir().unwrap();
        let (mut cache, account, folder, mbox) = setup(dir.path());
        let mut committer = Committer::new(&mut cache, account, folder, mbox, u64::MAX);
        assert!(committer.take(Job::Messages((0..3).map(received).collect())));
        let large = received(9999);
        start_in_pieces(&mut committer, &large);
        // The link drops before the large message ends.
        assert_eq!(committer.abandon().unwrap(), 3);
        assert_eq!(cache.uidls(folder).unwrap().len(), 3);
        let state = cache.folder(folder).unwrap().unwrap().mbox;
        assert_eq!(
            state.append_from,
            Some(cache.mbox_committed_end(folder).unwrap() + 1),
            "the mark is where the partial large message begins"
        );
    }
}
