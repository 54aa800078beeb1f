//! The engine: one tokio task per account behind a command channel, so the UI never waits on
//! the network.
//!
//! The UI sends [`Command`]s through an [`EngineHandle`]; each gets a [`CommandId`] so that a
//! failure ([`EngineEvent::CommandFailed`]) can be matched to what the user asked. The engine
//! answers with [`EngineEvent`]s that say *what changed* (past tense); the UI re-reads the
//! cache, which stays the single source of truth.
//!
//! - **Local first** (RFC 4549 §4, "disconnected operation"): flag changes and deletions are
//!   written to the cache at once by the router task, which then emits
//!   [`EngineEvent::FolderChanged`]; for accounts whose flags live on the server they are
//!   queued in `pending_ops` and the account task pushes them when it can.
//! - **One task per account** owns that account's [`Backend`] and its own cache connection
//!   ([`Cache::open_another`]), and does one job at a time: sync, fetch a body, push queued
//!   changes. A slow or dead server only ever delays its own account.
//! - The router task owns another connection and never awaits a backend.
//!
//! The engine is generic over [`Backend`] and [`MailBackend`]: adding a protocol means adding
//! an enum variant there and a line in [`accounts_from_config`].
//!
//! Local changes go through [`crate::backend::changes::change_locally`], the same path the
//! command line uses: IMAP changes are queued there as [`crate::backend::changes::QueuedOp`]s.
//!
//! An IMAP account task, when it has nothing to do, watches the open folder (or INBOX) with
//! IDLE; a command from the user interrupts the IDLE cleanly (DONE) so it is pushed at once.
//! After a network error it retries with a growing backoff (1 s doubling to 60 s), still
//! taking commands meanwhile.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};

use crate::backend::changes::{Change, Snapshot, change_locally, snapshot, undo_locally};
use crate::backend::imap::{ImapBackend, Watched};
use crate::backend::pop3::Pop3Backend;
use crate::backend::{
    Backend, BackendError, Capabilities, Flags, MailBackend, Progress, ProgressPacer,
};
use crate::config::{Config, Paths, Protocol};
use crate::store::cache::{Cache, CacheError};

/// Identifies one command, so a failure can be matched to the request.
pub type CommandId = u64;

/// What the UI asks the engine to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Sync one account, or all of them.
    SyncNow { account: Option<String> },
    /// Add and remove flags on messages (local first).
    SetFlags {
        ids: Vec<i64>,
        add: Flags,
        remove: Flags,
    },
    /// Mark messages deleted (local first; `Undo` takes it back).
    Delete { ids: Vec<i64> },
    /// Move messages to another folder of their account.
    Move { ids: Vec<i64>, folder: String },
    /// Undo the last `Delete` or `Move` (local first; the server follows).
    Undo,
    /// Make a message's body available in the cache.
    FetchBody { id: i64 },
    /// The user opened this folder (an IMAP backend may IDLE on it).
    FolderOpened { account: String, folder: String },
}

/// How an account is doing, for the status bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountState {
    Online,
    Offline,
    Syncing(Progress),
    Error(String),
}

/// What changed, for the UI to re-read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineEvent {
    AccountStateChanged {
        account: String,
        state: AccountState,
    },
    FolderChanged {
        folder_id: i64,
    },
    BodyFetched {
        id: i64,
    },
    Warning(String),
    CommandFailed {
        id: CommandId,
        error: String,
    },
}

/// The UI's end of the command channel. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EngineHandle {
    tx: UnboundedSender<(CommandId, Command)>,
    next: Arc<AtomicU64>,
}

impl EngineHandle {
    /// Queue a command; returns its id. A stopped engine drops it silently.
    pub fn send(&self, command: Command) -> CommandId {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let _ = self.tx.send((id, command));
        id
    }

    /// A handle whose commands go to the returned receiver instead of an engine (tests, and
    /// rendering without an engine).
    pub fn detached() -> (EngineHandle, UnboundedReceiver<(CommandId, Command)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            EngineHandle {
                tx,
                next: Arc::new(AtomicU64::new(1)),
            },
            rx,
        )
    }
}

/// One account for the engine to run.
pub struct AccountSpec {
    pub name: String,
    pub backend: Backend,
}

/// The accounts of a config that this build can run, and a warning for each it cannot.
pub fn accounts_from_config(config: &Config, paths: &Paths) -> (Vec<AccountSpec>, Vec<String>) {
    let mut specs = Vec::new();
    let warnings = Vec::new();
    for (name, account) in &config.accounts {
        match account.protocol {
            Protocol::Pop3 => specs.push(AccountSpec {
                name: name.clone(),
                backend: Backend::Pop3(Box::new(Pop3Backend::new(
                    name.as_str(),
                    account.clone(),
                    &paths.data_dir,
                ))),
            }),
            Protocol::Imap => specs.push(AccountSpec {
                name: name.clone(),
                backend: Backend::Imap(Box::new(ImapBackend::new(name.as_str(), account.clone()))),
            }),
        }
    }
    (specs, warnings)
}

/// A job for one account's task.
enum Job {
    Sync(Option<CommandId>),
    Fetch(CommandId, i64),
    Push,
    FolderOpened(String),
}

/// Start the engine on the current tokio runtime: one task per account and a router.
///
/// `cache` is the process's writer (it holds the profile lock); the engine opens its own
/// connections from it. Every account is synced once at start.
pub fn start(
    accounts: Vec<AccountSpec>,
    cache: &Cache,
) -> Result<(EngineHandle, UnboundedReceiver<EngineEvent>), CacheError> {
    let (events, events_rx) = mpsc::unbounded_channel();
    let (handle, commands) = EngineHandle::detached();
    let mut routes = HashMap::new();
    for spec in accounts {
        let (tx, rx) = mpsc::unbounded_channel();
        let caps = spec.backend.capabilities();
        let _ = tx.send(Job::Sync(None));
        routes.insert(spec.name.clone(), (tx, caps));
        let task = AccountTask {
            name: spec.name,
            backend: spec.backend,
            cache: cache.open_another()?,
            events: events.clone(),
            open_folder: None,
            healthy: false,
        };
        tokio::spawn(task.run(rx));
    }
    let router = Router {
        cache: cache.open_another()?,
        routes,
        events,
        folder_account: HashMap::new(),
        last_change: None,
    };
    tokio::spawn(router.run(commands));
    Ok((handle, events_rx))
}

/// Takes commands, applies local changes, hands network work to account tasks.
struct Router {
    cache: Cache,
    routes: HashMap<String, (UnboundedSender<Job>, Capabilities)>,
    events: UnboundedSender<EngineEvent>,
    folder_account: HashMap<i64, (i64, String)>,
    /// The last delete or move, with the messages as they were before it, for `Undo`.
    last_change: Option<(Vec<Snapshot>, Change)>,
}

impl Router {
    async fn run(mut self, mut commands: UnboundedReceiver<(CommandId, Command)>) {
        while let Some((id, command)) = commands.recv().await {
            if let Err(error) = self.handle(id, command) {
                let _ = self.events.send(EngineEvent::CommandFailed { id, error });
            }
        }
    }

    fn emit(&self, event: EngineEvent) {
        let _ = self.events.send(event);
    }

    /// The account (cache id, name) a folder belongs to.
    fn account_of(&mut self, folder: i64) -> Result<(i64, String), String> {
        if let Some(a) = self.folder_account.get(&folder) {
            return Ok(a.clone());
        }
        let f = self
            .cache
            .folder(folder)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no folder with id {folder}"))?;
        let name = self
            .cache
            .accounts()
            .map_err(|e| e.to_string())?
            .into_iter()
            .find(|a| a.id == f.account_id)
            .map(|a| a.name)
            .ok_or_else(|| format!("no account for folder {folder}"))?;
        self.folder_account
            .insert(folder, (f.account_id, name.clone()));
        Ok((f.account_id, name))
    }

    fn job(&self, account: &str, job: Job) -> Result<(), String> {
        let (tx, _) = self
            .routes
            .get(account)
            .ok_or_else(|| format!("the account {account} is not running"))?;
        tx.send(job)
            .map_err(|_| format!("the account {account} stopped"))
    }

    fn handle(&mut self, id: CommandId, command: Command) -> Result<(), String> {
        match command {
            Command::SyncNow { account: Some(a) } => self.job(&a, Job::Sync(Some(id))),
            Command::SyncNow { account: None } => {
                for (tx, _) in self.routes.values() {
                    let _ = tx.send(Job::Sync(Some(id)));
                }
                Ok(())
            }
            Command::SetFlags { ids, add, remove } => self.set_flags(&ids, add, remove),
            Command::Delete { ids } => self.undoable(&ids, Change::Delete),
            Command::Move { ids, folder } => self.undoable(&ids, Change::Move { to: folder }),
            Command::Undo => self.undo(),
            Command::FetchBody { id: message } => {
                let row = self
                    .cache
                    .message(message)
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| CacheError::NoSuchMessage(message).to_string())?;
                let (_, account) = self.account_of(row.folder_id)?;
                self.job(&account, Job::Fetch(id, message))
            }
            Command::FolderOpened { account, folder } => {
                self.job(&account, Job::FolderOpened(folder))
            }
        }
    }

    fn set_flags(&mut self, ids: &[i64], add: Flags, remove: Flags) -> Result<(), String> {
        self.change(ids, &Change::Flags { add, remove })
    }

    /// A delete or move, remembered so that `Undo` can take it back.
    fn undoable(&mut self, ids: &[i64], change: Change) -> Result<(), String> {
        let before = snapshot(&self.cache, ids).map_err(|e| e.to_string())?;
        self.change(ids, &change)?;
        self.last_change = Some((before, change));
        Ok(())
    }

    fn undo(&mut self) -> Result<(), String> {
        let (before, change) = self
            .last_change
            .take()
            .ok_or_else(|| "nothing to undo".to_string())?;
        let (push, folders) = undo_locally(&mut self.cache, &before, &change, now_unix())
            .map_err(|e| e.to_string())?;
        for folder_id in folders {
            self.emit(EngineEvent::FolderChanged { folder_id });
        }
        for account in push {
            let _ = self.job(&account, Job::Push);
        }
        Ok(())
    }

    /// Apply a change to the cache now (local first), then let the accounts push it.
    fn change(&mut self, ids: &[i64], change: &Change) -> Result<(), String> {
        let mut changed_folders = Vec::new();
        let mut push = std::collections::BTreeSet::new();
        for &id in ids {
            let Some(row) = self.cache.message(id).map_err(|e| e.to_string())? else {
                return Err(CacheError::NoSuchMessage(id).to_string());
            };
            if let Change::Flags { add, remove } = change {
                let mut flags = row.flags;
                flags.insert(*add);
                flags.remove(*remove);
                if flags == row.flags {
                    continue;
                }
            }
            let accounts = change_locally(&mut self.cache, &[id], change, now_unix())
                .map_err(|e| e.to_string())?;
            push.extend(accounts);
            if !changed_folders.contains(&row.folder_id) {
                changed_folders.push(row.folder_id);
            }
        }
        for folder_id in changed_folders {
            self.emit(EngineEvent::FolderChanged { folder_id });
        }
        for account in push {
            let _ = self.job(&account, Job::Push);
        }
        Ok(())
    }
}

/// One account: its backend, its cache connection, one job at a time.
struct AccountTask {
    name: String,
    backend: Backend,
    cache: Cache,
    events: UnboundedSender<EngineEvent>,
    /// The folder the user has open in this account, if any.
    open_folder: Option<String>,
    /// The last sync or push worked (an IMAP task watches for changes only then).
    healthy: bool,
}

impl AccountTask {
    async fn run(mut self, mut jobs: UnboundedReceiver<Job>) {
        let mut backoff = Duration::from_secs(1);
        loop {
            let watching = matches!(self.backend, Backend::Imap(_));
            if !watching {
                match jobs.recv().await {
                    Some(job) => self.handle(job).await,
                    None => return,
                }
                continue;
            }
            if !self.healthy {
                // Offline: retry with a growing backoff, still taking commands meanwhile.
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {
                        self.sync(None).await;
                        backoff = if self.healthy {
                            Duration::from_secs(1)
                        } else {
                            (backoff * 2).min(Duration::from_secs(60))
                        };
                    }
                    job = jobs.recv() => match job {
                        Some(job) => self.handle(job).await,
                        None => return,
                    },
                }
                continue;
            }
            // Online with nothing to do: watch the open folder until it changes or the user
            // asks for something.
            let folder = self.open_folder.clone().unwrap_or_else(|| "INBOX".into());
            let mut next_job: Option<Option<Job>> = None;
            let watched = {
                let Backend::Imap(imap) = &mut self.backend else {
                    continue;
                };
                let mut interrupt = std::pin::pin!(async {
                    next_job = Some(jobs.recv().await);
                });
                imap.watch(&folder, interrupt.as_mut()).await
            };
            match watched {
                Ok(Watched::Changed) => self.sync_open_folder(&folder).await,
                Ok(Watched::Quiet | Watched::Interrupted) => {}
                Err(e) => self.went_offline(e),
            }
            self.forward_warnings();
            match next_job {
                Some(Some(job)) => self.handle(job).await,
                Some(None) => return,
                None => {}
            }
        }
    }

    async fn handle(&mut self, job: Job) {
        match job {
            Job::Sync(id) => self.sync(id).await,
            Job::Fetch(id, message) => {
                match self.backend.fetch_raw(&mut self.cache, message).await {
                    Ok(_) => {
                        self.emit(EngineEvent::BodyFetched { id: message });
                        self.index_for_search();
                    }
                    Err(e) => self.emit(EngineEvent::CommandFailed {
                        id,
                        error: e.to_string(),
                    }),
                }
            }
            Job::Push => match self.backend.apply_pending(&mut self.cache).await {
                Ok(_) | Err(BackendError::NotSupported(_)) => {}
                Err(e) => {
                    self.emit(EngineEvent::Warning(format!(
                        "{}: changes are queued until the server is back: {e}",
                        self.name
                    )));
                    self.went_offline(e);
                }
            },
            Job::FolderOpened(folder) => {
                let changed = self.open_folder.as_deref() != Some(folder.as_str());
                self.open_folder = Some(folder.clone());
                // NOTE: bring a folder up to date when the user opens it (IMAP only; POP3 and
                // local accounts have one folder, synced at start and on R).
                if changed && matches!(self.backend, Backend::Imap(_)) && self.healthy {
                    self.sync_open_folder(&folder).await;
                }
            }
        }
        self.forward_warnings();
    }

    /// Sync one folder after the server said it changed (or the user opened it).
    async fn sync_open_folder(&mut self, folder: &str) {
        let result = self
            .backend
            .sync_folder(&mut self.cache, folder, &mut |_| {})
            .await;
        match result {
            Ok(_) => {
                self.thread_new_mail();
                let changed = self
                    .cache
                    .account(&self.name)
                    .ok()
                    .flatten()
                    .and_then(|a| self.cache.folder_by_name(a.id, folder).ok().flatten());
                if let Some(f) = &changed {
                    self.emit(EngineEvent::FolderChanged { folder_id: f.id });
                }
                self.state(AccountState::Online);
                // NOTE: after the list has the new mail: indexing reads and parses bodies.
                // It may correct attachment marks, so the list is told once more.
                if self.index_for_search()
                    && let Some(f) = changed
                {
                    self.emit(EngineEvent::FolderChanged { folder_id: f.id });
                }
            }
            Err(e) => self.went_offline(e),
        }
    }

    /// Give the mail the last sync brought in its conversations (a download leaves that for
    /// afterwards, see `Cache::insert_download`), before the list is told it changed.
    fn thread_new_mail(&self) {
        if let Err(e) = self.cache.thread_pending() {
            self.emit(EngineEvent::Warning(format!(
                "{}: new mail not sorted into conversations yet (the flat list shows it): {e}",
                self.name
            )));
        }
    }

    /// Index what the last sync brought in for search, now rather than at the first search;
    /// whether anything was indexed.
    fn index_for_search(&self) -> bool {
        match self.cache.index_pending() {
            Ok(n) => n > 0,
            Err(e) => {
                self.emit(EngineEvent::Warning(format!(
                    "{}: search index not updated (searching still finds new mail): {e}",
                    self.name
                )));
                false
            }
        }
    }

    /// Tell the UI that every folder of this account may have changed.
    fn all_folders_changed(&self) {
        if let Ok(Some(account)) = self.cache.account(&self.name)
            && let Ok(folders) = self.cache.folders(account.id)
        {
            for f in folders {
                self.emit(EngineEvent::FolderChanged { folder_id: f.id });
            }
        }
    }

    fn went_offline(&mut self, e: BackendError) {
        if let Backend::Imap(imap) = &mut self.backend {
            imap.disconnect();
        }
        self.healthy = false;
        self.state(if e.kind() == crate::ErrorKind::Network {
            AccountState::Offline
        } else {
            AccountState::Error(e.to_string())
        });
    }

    fn emit(&self, event: EngineEvent) {
        let _ = self.events.send(event);
    }

    fn state(&self, state: AccountState) {
        self.emit(EngineEvent::AccountStateChanged {
            account: self.name.clone(),
            state,
        });
    }

    fn forward_warnings(&mut self) {
        for w in self.backend.take_warnings() {
            self.emit(EngineEvent::Warning(w));
        }
    }

    async fn sync(&mut self, id: Option<CommandId>) {
        self.state(AccountState::Syncing(Progress::default()));
        let result = self.sync_all().await;
        self.forward_warnings();
        self.healthy = result.is_ok();
        if result.is_err()
            && let Backend::Imap(imap) = &mut self.backend
        {
            imap.disconnect();
        }
        match result {
            Ok(()) => self.state(AccountState::Online),
            Err(e) => {
                let error = e.to_string();
                self.state(if e.kind() == crate::ErrorKind::Network {
                    AccountState::Offline
                } else {
                    AccountState::Error(error.clone())
                });
                if let Some(id) = id {
                    self.emit(EngineEvent::CommandFailed { id, error });
                }
            }
        }
        // Whatever happened, counts may have moved. The list first (its conversations too),
        // the search index after (it reads and parses bodies, and may correct attachment
        // marks).
        self.thread_new_mail();
        self.all_folders_changed();
        if self.index_for_search() {
            self.all_folders_changed();
        }
    }

    async fn sync_all(&mut self) -> Result<(), BackendError> {
        match self.backend.apply_pending(&mut self.cache).await {
            Ok(_) | Err(BackendError::NotSupported(_)) => {}
            Err(e) => return Err(e),
        }
        let folders = match self.backend {
            Backend::Imap(_) => Vec::new(),
            _ => self.backend.list_folders().await?,
        };
        let events = self.events.clone();
        let name = self.name.clone();
        let mut pacer = ProgressPacer::default();
        let mut progress = move |p: Progress| {
            if pacer.due(&p) {
                let _ = events.send(EngineEvent::AccountStateChanged {
                    account: name.clone(),
                    state: AccountState::Syncing(p),
                });
            }
        };
        if let Backend::Imap(imap) = &mut self.backend {
            // NOTE: IMAP reconciles the folder list (renames, deletions) and prefetches.
            imap.sync_all(&mut self.cache, &mut |_, p| progress(p))
                .await?;
            return Ok(());
        }
        for folder in folders {
            self.backend
                .sync_folder(&mut self.cache, &folder.name, &mut progress)
                .await?;
        }
        Ok(())
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::local::LocalBackend;

    async fn next(
        rx: &mut UnboundedReceiver<EngineEvent>,
        want: impl Fn(&EngineEvent) -> bool,
    ) -> EngineEvent {
        loop {
            let ev = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .expect("an event within 30 s")
                .expect("engine running");
            if want(&ev) {
                return ev;
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn local_first_flags_sync_fetch_and_unsupported_move() {
        let dir = tempfile::tempdir().unwrap();
        let mbox = dir.path().join("demo.mbox");
        std::fs::write(&mbox, crate::cli::DEMO_MBOX).unwrap();
        let cache = Cache::open(&dir.path().join("data")).unwrap();
        let spec = AccountSpec {
            name: "demo".into(),
            backend: Backend::Local(LocalBackend::new("demo", &mbox)),
        };
        let (engine, mut events) = start(vec![spec], &cache).unwrap();
        next(&mut events, |e| {
            matches!(
                e,
                EngineEvent::AccountStateChanged {
                    state: AccountState::Online,
                    ..
                }
            )
        })
        .await;
        // The sync announces its folder once after going online, with the messages listed,
        // and once more after indexing them for search (attachment marks may change).
        next(&mut events, |e| {
            matches!(e, EngineEvent::FolderChanged { .. })
        })
        .await;
        let folder = cache.folders(1).unwrap()[0].clone();
        assert_eq!(folder.total, 40);
        next(&mut events, |e| {
            matches!(e, EngineEvent::FolderChanged { .. })
        })
        .await;
        let first = cache.window(folder.id, 0, 1).unwrap().remove(0);
        let add = if first.flags.contains(Flags::FLAGGED) {
            Flags::default()
        } else {
            Flags::FLAGGED
        };
        engine.send(Command::SetFlags {
            ids: vec![first.id],
            add,
            remove: Flags::default(),
        });
        let ev = next(&mut events, |e| {
            matches!(e, EngineEvent::FolderChanged { .. })
        })
        .await;
        assert_eq!(
            ev,
            EngineEvent::FolderChanged {
                folder_id: folder.id
            }
        );
        assert!(
            cache
                .message(first.id)
                .unwrap()
                .unwrap()
                .flags
                .contains(Flags::FLAGGED)
        );

        engine.send(Command::FetchBody { id: first.id });
        let ev = next(&mut events, |e| {
            matches!(e, EngineEvent::BodyFetched { .. })
        })
        .await;
        assert_eq!(ev, EngineEvent::BodyFetched { id: first.id });

        let move_id = engine.send(Command::Move {
            ids: vec![first.id],
            folder: "Archive".into(),
        });
        match next(&mut events, |e| {
            matches!(e, EngineEvent::CommandFailed { .. })
        })
        .await
        {
            EngineEvent::CommandFailed { id, error } => {
                assert_eq!(id, move_id);
                assert!(error.contains("not supported"), "{error}");
            }
            other => panic!("{other:?}"),
        }

        engine.send(Command::Delete {
            ids: vec![first.id],
        });
        next(&mut events, |e| {
            matches!(e, EngineEvent::FolderChanged { .. })
        })
        .await;
        assert!(
            cache
                .message(first.id)
                .unwrap()
                .unwrap()
                .flags
                .contains(Flags::DELETED)
        );
        engine.send(Command::Undo);
        next(&mut events, |e| {
            matches!(e, EngineEvent::FolderChanged { .. })
        })
        .await;
        assert!(
            !cache
                .message(first.id)
                .unwrap()
                .unwrap()
                .flags
                .contains(Flags::DELETED),
            "undo takes the deletion back"
        );
        let undo_id = engine.send(Command::Undo);
        match next(&mut events, |e| {
            matches!(e, EngineEvent::CommandFailed { .. })
        })
        .await
        {
            EngineEvent::CommandFailed { id, error } => {
                assert_eq!(id, undo_id);
                assert_eq!(error, "nothing to undo");
            }
            other => panic!("{other:?}"),
        }

        let sync_id = engine.send(Command::SyncNow {
            account: Some("nope".into()),
        });
        match next(&mut events, |e| {
            matches!(e, EngineEvent::CommandFailed { .. })
        })
        .await
        {
            EngineEvent::CommandFailed { id, error } => {
                assert_eq!(id, sync_id);
                assert!(error.contains("nope"), "{error}");
            }
            other => panic!("{other:?}"),
        }
    }
}
