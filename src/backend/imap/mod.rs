//! An IMAP account: the server is the truth, the cache a fast, offline copy of it.
//!
//! - **Connection** ([`session`]): implicit TLS, STARTTLS (refused if not offered) or, only when
//!   configured, clear text; AUTHENTICATE PLAIN or LOGIN; `ENABLE QRESYNC` when offered.
//! - **Folders**: LIST with special-use attributes (RFC 6154); folders gone from the server go
//!   from the cache, and a folder that reappears under a new name with the same UIDVALIDITY is
//!   taken as renamed (its messages are kept).
//! - **Sync of a folder** (RFC 4549, RFC 7162): UIDVALIDITY changed → drop that folder's copies
//!   and refetch; with QRESYNC one `SELECT ... (QRESYNC (v m))` returns every flag change and
//!   expunge since the last sync; with CONDSTORE `UID FETCH ... (CHANGEDSINCE m)` and `UID SEARCH
//!   ALL` (skipped when the count proves nothing was expunged); otherwise `UID FETCH 1:* (FLAGS)`.
//!   New messages come in one streamed `UID FETCH n:*` of flags, size, BODYSTRUCTURE and the
//!   headers the list and threading need. Bodies are fetched on demand with `BODY.PEEK[]` (never
//!   marking a message read) in parts, and the newest `prefetch` bodies are kept for offline use.
//! - **Changes made here** are queued in the cache (see [`crate::backend::changes`]) and pushed
//!   by [`ImapBackend::apply_pending`] in order: `UID STORE +FLAGS/-FLAGS`, `UID MOVE` (or COPY,
//!   \Deleted and `UID EXPUNGE`), delete = move to Trash or \Deleted + `UID EXPUNGE`. An operation
//!   whose UIDVALIDITY no longer matches is re-targeted by Message-ID or dropped with a warning —
//!   never applied to whatever now carries the same UID.
//! - **Real time**: [`ImapBackend::wait_for_changes`] IDLEs (RFC 2177) for a bounded time, or polls
//!   with NOOP when the server lacks IDLE; every read has a timeout, so a dead link is noticed.

pub mod guard;
mod quick;
pub mod session;

use std::collections::HashSet;
use std::ops::RangeInclusive;

use async_imap::imap_proto::{
    AttributeValue, BodyStructure, MailboxDatum, NameAttribute, Response, ResponseCode, Status,
    StatusAttribute,
};

use super::changes::{self, QueuedOp};
use super::{
    BackendError, Capabilities, Flags, FolderInfo, FolderRole, MailBackend, Progress, RemoteId,
    SyncReport, Uid,
};
use crate::config::Account;
use crate::render;
use crate::sanitize;
use crate::store::cache::{BodyLocation, BodyText, Cache, CacheError, NewMessage, SyncState};
pub use session::Timeouts;
use session::{Imap, Seen, quote};

/// Log in as `account` with `password`, reporting each step, then LIST the folders and log
/// out: the setup wizard's login test. Returns the folder names; changes nothing.
pub async fn check_login(
    account: &Account,
    password: super::PasswordSource<'_>,
    step: &mut (dyn FnMut(super::ConnectStep) + Send),
) -> Result<Vec<String>, BackendError> {
    let mut imap =
        Imap::connect_reporting("setup", account, Timeouts::default(), password, step).await?;
    let names = imap.folder_names().await;
    imap.logout().await;
    names
}

/// The header fields fetched with every new message: the list, threading and attachments.
const HEADER_FIELDS: &str =
    "DATE FROM TO CC SUBJECT MESSAGE-ID IN-REPLY-TO REFERENCES CONTENT-TYPE";

/// New messages are written to the cache in transactions of this many.
const INSERT_BATCH: usize = 500;
/// The first transaction is this small, and each next one twice as large up to
/// [`INSERT_BATCH`]: the cache writer, the slower half of a large download, starts after the
/// first few responses instead of the first 500.
const FIRST_BATCH: usize = 32;

/// Bodies are fetched in parts of this size (under the guard's literal cap).
const BODY_PART: u64 = 16 * 1024 * 1024;

/// Prefetched messages up to this size (as the server claims it) come in one FETCH together;
/// larger ones one by one, in parts.
const PREFETCH_TOGETHER: u64 = 1024 * 1024;
/// Prefetched bodies are written to the cache whenever this much is held.
const PREFETCH_HELD: usize = 8 * 1024 * 1024;

/// An IMAP account.
pub struct ImapBackend {
    name: String,
    account: Account,
    timeouts: Timeouts,
    imap: Option<Imap>,
    warnings: Vec<String>,
}

impl ImapBackend {
    /// The account `name` as configured.
    pub fn new(name: impl Into<String>, account: Account) -> Self {
        ImapBackend {
            name: name.into(),
            account,
            timeouts: Timeouts::default(),
            imap: None,
            warnings: Vec::new(),
        }
    }

    /// Use other timeouts (shorter ones let tests see a dead link quickly).
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Warnings gathered since the last call (dropped operations, ...).
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// Forget the connection (after an error its state is unknown).
    pub fn disconnect(&mut self) {
        self.imap = None;
    }

    /// Log out and close the connection.
    pub async fn logout(&mut self) {
        if let Some(mut imap) = self.imap.take() {
            imap.logout().await;
        }
    }

    async fn imap(&mut self) -> Result<&mut Imap, BackendError> {
        if self.imap.is_none() {
            if self.account.security == crate::config::Security::None {
                let w = format!(
                    "{}: security = \"none\": the password and mail cross the network unencrypted",
                    self.name
                );
                if !self.warnings.contains(&w) {
                    self.warnings.push(w);
                }
            }
            self.imap = Some(Imap::connect(&self.name, &self.account, self.timeouts).await?);
        }
        self.imap.as_mut().ok_or(BackendError::NotSupported("imap"))
    }

    /// Run `f` on the connection; on any error the connection is dropped (reconnect next time).
    async fn guarded<T>(&mut self, result: Result<T, BackendError>) -> Result<T, BackendError> {
        if result.is_err() {
            self.imap = None;
        }
        result
    }

    /// Bring every folder into the cache: the folder list, then each folder's messages.
    pub async fn sync_all(
        &mut self,
        cache: &mut Cache,
        progress: &mut (dyn FnMut(&str, Progress) + Send),
    ) -> Result<SyncReport, BackendError> {
        let folders = self.list_folders().await?;
        let account = cache.ensure_account(&self.name, "imap")?;
        self.reconcile_folders(cache, account, &folders).await?;
        let mut total = SyncReport::default();
        let cached: std::collections::HashMap<String, (i64, SyncState, u64)> = cache
            .folders(account)?
            .into_iter()
            .map(|f| (f.name, (f.id, f.sync, f.total)))
            .collect();
        // NOTE: an empty folder that the cache holds nothing of needs no SELECT: LIST-STATUS
        // gave everything its sync state is made of. Their states are saved in one go.
        let mut empty = Vec::new();
        for f in folders.iter().filter(|f| f.selectable) {
            let Some((id, state, count)) = cached.get(&f.info.name) else {
                continue;
            };
            if let Some(status) = &f.status
                && !status.unchanged(state, *count)
                && let Some(state) = status.empty_state(state, *count)
            {
                empty.push((*id, state));
            }
        }
        cache.set_sync_states(&empty)?;
        for f in folders.iter().filter(|f| f.selectable) {
            if let (Some(status), Some((id, state, count))) = (&f.status, cached.get(&f.info.name))
                && (status.unchanged(state, *count) || empty.iter().any(|(e, _)| e == id))
            {
                continue;
            }
            let r = self
                .sync_folder(cache, &f.info.name, &mut |p| progress(&f.info.name, p))
                .await?;
            total.new_messages += r.new_messages;
            total.removed_messages += r.removed_messages;
            total.flag_changes += r.flag_changes;
            total.bytes += r.bytes;
        }
        self.prefetch(cache, account).await?;
        Ok(total)
    }

    async fn list_folders(&mut self) -> Result<Vec<Listed>, BackendError> {
        let imap = self.imap().await?;
        let mut out = Vec::new();
        // NOTE: the RETURN option needs LIST-EXTENDED (RFC 5258); servers without it still
        // include special-use attributes in a plain LIST (RFC 6154 §2).
        // NOTE: with LIST-STATUS (RFC 5819) and CONDSTORE the same round trip also says which
        // folders changed at all, so a resync selects only those.
        let special_use = imap.has("SPECIAL-USE") && imap.has("LIST-EXTENDED");
        let list_status = imap.has("LIST-STATUS") && imap.has("CONDSTORE");
        let cmd = match (special_use, list_status) {
            (true, true) => {
                "LIST \"\" \"*\" RETURN (SPECIAL-USE STATUS (MESSAGES UIDNEXT UIDVALIDITY \
                 HIGHESTMODSEQ))"
            }
            (false, true) => {
                "LIST \"\" \"*\" RETURN (STATUS (MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ))"
            }
            (true, false) => "LIST \"\" \"*\" RETURN (SPECIAL-USE)",
            (false, false) => "LIST \"\" \"*\"",
        };
        let mut statuses: std::collections::HashMap<String, ListedStatus> =
            std::collections::HashMap::new();
        let result = imap
            .run(cmd, |r| {
                if let Response::MailboxData(MailboxDatum::Status { mailbox, status }) = r {
                    let st = statuses.entry(mailbox.to_string()).or_default();
                    for a in status {
                        match a {
                            StatusAttribute::Messages(n) => st.messages = Some(*n),
                            StatusAttribute::UidNext(n) => st.uidnext = Some(*n),
                            StatusAttribute::UidValidity(n) => st.uidvalidity = Some(*n),
                            StatusAttribute::HighestModSeq(n) => st.highestmodseq = Some(*n),
                            _ => {}
                        }
                    }
                }
                if let Response::MailboxData(MailboxDatum::List {
                    name_attributes,
                    delimiter,
                    name,
                }) = r
                {
                    let mut role = None;
                    let mut selectable = true;
                    for a in name_attributes {
                        match a {
                            NameAttribute::NoSelect => selectable = false,
                            NameAttribute::Extension(e)
                                if e.eq_ignore_ascii_case("\\NonExistent") =>
                            {
                                selectable = false
                            }
                            NameAttribute::Sent => role = Some(FolderRole::Sent),
                            NameAttribute::Trash => role = Some(FolderRole::Trash),
                            NameAttribute::Drafts => role = Some(FolderRole::Drafts),
                            NameAttribute::Junk => role = Some(FolderRole::Junk),
                            NameAttribute::Archive => role = Some(FolderRole::Archive),
                            NameAttribute::All => role = Some(FolderRole::All),
                            NameAttribute::Flagged => role = Some(FolderRole::Flagged),
                            _ => {}
                        }
                    }
                    if name.eq_ignore_ascii_case("INBOX") {
                        role = Some(FolderRole::Inbox);
                    }
                    out.push(Listed {
                        info: FolderInfo {
                            name: name.to_string(),
                            delimiter: delimiter.as_deref().and_then(|d| d.chars().next()),
                            role,
                        },
                        selectable,
                        status: None,
                    });
                }
                Ok(())
            })
            .await;
        self.guarded(result).await?;
        for f in &mut out {
            f.status = statuses.remove(&f.info.name);
        }
        Ok(out)
    }

    /// Make the cache's folder list agree with the server's, keeping renamed folders' mail.
    async fn reconcile_folders(
        &mut self,
        cache: &mut Cache,
        account: i64,
        listed: &[Listed],
    ) -> Result<(), BackendError> {
        let names: HashSet<&str> = listed.iter().map(|f| f.info.name.as_str()).collect();
        let cached = cache.folders(account)?;
        let gone: Vec<_> = cached
            .iter()
            .filter(|f| !names.contains(f.name.as_str()))
            .collect();
        let known: HashSet<&str> = cached.iter().map(|f| f.name.as_str()).collect();
        let new: Vec<&Listed> = listed
            .iter()
            .filter(|f| f.selectable && !known.contains(f.info.name.as_str()))
            .collect();
        // A new name whose UIDVALIDITY equals a vanished folder's is that folder, renamed.
        let mut renamed = HashSet::new();
        if !gone.is_empty() && !new.is_empty() {
            for f in &new {
                let validity = self.uidvalidity_of(&f.info.name).await?;
                if let Some(old) = gone.iter().find(|g| {
                    g.sync.uidvalidity.is_some()
                        && g.sync.uidvalidity == validity
                        && !renamed.contains(&g.id)
                }) {
                    cache.rename_folder(old.id, &f.info.name)?;
                    renamed.insert(old.id);
                }
            }
        }
        for g in gone.iter().filter(|g| !renamed.contains(&g.id)) {
            cache.delete_folder(g.id)?;
        }
        let selectable: Vec<FolderInfo> = listed
            .iter()
            .filter(|f| f.selectable)
            .map(|f| f.info.clone())
            .collect();
        cache.ensure_folders(account, &selectable)?;
        Ok(())
    }

    async fn uidvalidity_of(&mut self, folder: &str) -> Result<Option<u32>, BackendError> {
        let cmd = format!("STATUS {} (UIDVALIDITY)", quote(folder)?);
        let imap = self.imap().await?;
        let mut validity = None;
        let result = imap
            .run(&cmd, |r| {
                if let Response::MailboxData(MailboxDatum::Status { status, .. }) = r {
                    for s in status {
                        if let async_imap::imap_proto::StatusAttribute::UidValidity(v) = s {
                            validity = Some(*v);
                        }
                    }
                }
                Ok(())
            })
            .await;
        self.guarded(result).await?;
        Ok(validity)
    }

    /// Select `folder`, with QRESYNC or CONDSTORE when the server has them.
    async fn select(&mut self, folder: &str, known: SyncState) -> Result<Selected, BackendError> {
        let imap = self.imap().await?;
        let name = quote(folder)?;
        let qresync = imap.qresync && known.uidvalidity.is_some() && known.highestmodseq.is_some();
        let cmd = match (qresync, known.uidvalidity, known.highestmodseq) {
            (true, Some(v), Some(m)) => format!("SELECT {name} (QRESYNC ({v} {m}))"),
            _ if imap.has("CONDSTORE") => format!("SELECT {name} (CONDSTORE)"),
            _ => format!("SELECT {name}"),
        };
        let mut sel = Selected {
            used_qresync: qresync,
            ..Selected::default()
        };
        let result = imap
            .run(&cmd, |r| {
                match r {
                    Response::MailboxData(MailboxDatum::Exists(n)) => sel.exists = *n,
                    Response::Data {
                        status: Status::Ok,
                        code: Some(code),
                        ..
                    } => match code {
                        ResponseCode::UidValidity(v) => sel.uidvalidity = Some(*v),
                        ResponseCode::UidNext(n) => sel.uidnext = Some(*n),
                        ResponseCode::HighestModSeq(m) => sel.highestmodseq = Some(*m),
                        _ => {}
                    },
                    Response::Vanished { uids, .. } => sel.vanished.extend(uids.iter().cloned()),
                    Response::Fetch(_, attrs) => {
                        if let Some(f) = fetched(attrs) {
                            sel.changed.push(f);
                        }
                    }
                    _ => {}
                }
                Ok(())
            })
            .await;
        self.guarded(result).await?;
        if let Some(i) = self.imap.as_mut() {
            i.selected = Some(folder.to_string());
        }
        Ok(sel)
    }

    /// Fetch headers, flags, size and structure of every message from `from` on (up to
    /// `up_to` when given).
    async fn fetch_new(
        &mut self,
        cache: &mut Cache,
        folder_id: i64,
        from: u32,
        up_to: Option<u32>,
        expected: u64,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<(u64, u64), BackendError> {
        let imap = self.imap().await?;
        let modseq = if imap.has("CONDSTORE") { " MODSEQ" } else { "" };
        let last = up_to.map_or_else(|| "*".to_string(), |u| u.to_string());
        let cmd = format!(
            "UID FETCH {from}:{last} (UID FLAGS RFC822.SIZE{modseq} BODYSTRUCTURE \
             BODY.PEEK[HEADER.FIELDS ({HEADER_FIELDS})])"
        );
        // NOTE: the rows are written to the cache on another thread, with its own cache
        // connection, while this one keeps reading the server and parses the headers: the
        // two halves cost about the same and overlap instead of taking turns.
        // A bounded channel keeps memory flat if the disk is slower. An in-memory cache
        // (tests) can't be opened twice and is written here instead.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<NewMessage>>(4);
        // NOTE: the rows are a copy of the server's; the writer does not fsync each batch
        // (one per commit was a tenth of its time). The sync state written after the
        // download, with full durability, makes them durable too (`relax_durability`).
        let writer = cache
            .open_another()
            .and_then(|other| other.relax_durability().map(|()| other))
            .ok()
            .map(|mut other| {
                std::thread::spawn(move || -> Result<u64, CacheError> {
                    let mut n = 0;
                    while let Ok(mut rows) = rx.recv() {
                        // NOTE: batches that queued up while the last one was written go into
                        // one transaction: one commit (and fsync) instead of one each.
                        while let Ok(more) = rx.try_recv() {
                            rows.extend(more);
                        }
                        n += other.insert_download(folder_id, &rows)?.len() as u64;
                    }
                    Ok(n)
                })
            });
        let threaded = writer.is_some();
        let mut batch: Vec<NewMessage> = Vec::with_capacity(INSERT_BATCH);
        let mut batch_size = FIRST_BATCH;
        let mut state = Progress {
            total: expected,
            ..Progress::default()
        };
        let mut count = 0u64;
        let mut failure: Option<CacheError> = None;
        let mut write = |rows: Vec<NewMessage>, cache: &mut Cache| -> Result<(), CacheError> {
            if threaded {
                // A closed channel means the writer failed; its error comes from join below.
                let _ = tx.send(rows);
            } else {
                count += cache.insert_download(folder_id, &rows)?.len() as u64;
            }
            Ok(())
        };
        // NOTE: each response goes to the fast reader first (`quick`); imap-proto parses what
        // it leaves.
        let result = imap
            .run_quick(&cmd, quick::fetch, |seen| {
                let m = match seen {
                    Seen::Quick(m) => m,
                    Seen::Parsed(Response::Fetch(_, attrs)) => new_message(attrs),
                    Seen::Parsed(_) => None,
                };
                let Some(m) = m else {
                    return Ok(());
                };
                // NOTE: `n:*` always matches the last message, even when its UID is below n.
                if m.uid < from {
                    return Ok(());
                }
                state.done += 1;
                state.bytes += m.size;
                batch.push(m.into_new());
                if batch.len() >= batch_size && failure.is_none() {
                    batch_size = (batch_size * 2).min(INSERT_BATCH);
                    if let Err(e) = write(std::mem::take(&mut batch), cache) {
                        failure = Some(e);
                    }
                    progress(state);
                }
                Ok(())
            })
            .await;
        if failure.is_none()
            && let Err(e) = write(std::mem::take(&mut batch), cache)
        {
            failure = Some(e);
        }
        // The writer's loop ends when the last sender is gone.
        drop(tx);
        if let Some(writer) = writer {
            match writer.join() {
                Ok(Ok(n)) => count += n,
                Ok(Err(e)) => failure = failure.or(Some(e)),
                Err(_) => {
                    return Err(BackendError::Protocol {
                        host: self.account.host.clone(),
                        reason: "the cache writer stopped unexpectedly".into(),
                    });
                }
            }
        }
        self.guarded(result).await?;
        if let Some(e) = failure {
            return Err(e.into());
        }
        progress(state);
        Ok((count, state.bytes))
    }

    /// Flag changes since `modseq` (CONDSTORE), or every message's flags.
    async fn fetch_flags(
        &mut self,
        changed_since: Option<u64>,
        up_to: u32,
    ) -> Result<Vec<FlagUpdate>, BackendError> {
        if up_to == 0 {
            return Ok(Vec::new());
        }
        let imap = self.imap().await?;
        let cmd = match changed_since {
            Some(m) => format!("UID FETCH 1:{up_to} (UID FLAGS) (CHANGEDSINCE {m})"),
            None => format!("UID FETCH 1:{up_to} (UID FLAGS)"),
        };
        let mut out = Vec::new();
        let result = imap
            .run(&cmd, |r| {
                if let Response::Fetch(_, attrs) = r
                    && let Some(f) = fetched(attrs)
                {
                    out.push(f);
                }
                Ok(())
            })
            .await;
        self.guarded(result).await?;
        Ok(out)
    }

    async fn search_all(&mut self) -> Result<HashSet<u32>, BackendError> {
        let imap = self.imap().await?;
        let mut out = HashSet::new();
        let result = imap
            .run("UID SEARCH ALL", |r| {
                if let Response::MailboxData(MailboxDatum::Search(uids)) = r {
                    out.extend(uids.iter().copied());
                }
                Ok(())
            })
            .await;
        self.guarded(result).await?;
        Ok(out)
    }

    /// Keep the bodies of the newest `prefetch` INBOX messages for offline reading.
    async fn prefetch(&mut self, cache: &mut Cache, account: i64) -> Result<(), BackendError> {
        let want = self.account.prefetch();
        if want == 0 {
            return Ok(());
        }
        let Some(inbox) = cache.folder_by_name(account, "INBOX")? else {
            return Ok(());
        };
        let missing: Vec<_> = cache
            .window(inbox.id, 0, want)?
            .into_iter()
            .filter(|m| m.body == BodyLocation::None)
            .collect();
        // NOTE: small messages come in one FETCH and are written together: one round trip
        // and one transaction instead of one each (100 bodies: 330 ms on loopback before).
        let (small, large): (Vec<_>, Vec<_>) = missing
            .into_iter()
            .partition(|m| m.uid.is_some() && m.envelope.size <= PREFETCH_TOGETHER);
        if !small.is_empty() {
            if self.imap.as_ref().and_then(|i| i.selected.as_deref()) != Some("INBOX") {
                self.select("INBOX", state_without_qresync(inbox.sync))
                    .await?;
            }
            let wanted: std::collections::HashMap<u32, i64> = small
                .iter()
                .filter_map(|m| Some((m.uid?.0, m.id)))
                .collect();
            let mut uids: Vec<u32> = wanted.keys().copied().collect();
            uids.sort_unstable();
            let mut held: Vec<(i64, Vec<u8>, String)> = Vec::new();
            let mut held_bytes = 0;
            // NOTE: in sets of at most 500 ranges, so that a large `prefetch` never makes a
            // command longer than servers take (Dovecot: 64 KiB).
            for ranges in uid_ranges(&uids).chunks(500) {
                let cmd = format!("UID FETCH {} (UID BODY.PEEK[])", ranges.join(","));
                let imap = self.imap().await?;
                let result = imap
                    .run(&cmd, |r| {
                        let Response::Fetch(_, attrs) = r else {
                            return Ok(());
                        };
                        let mut uid = None;
                        let mut body = None;
                        for a in attrs {
                            match a {
                                AttributeValue::Uid(u) => uid = Some(*u),
                                AttributeValue::BodySection { data, .. } => {
                                    body = Some(data.as_deref().unwrap_or_default());
                                }
                                _ => {}
                            }
                        }
                        // NOTE: a message expunged meanwhile simply does not come.
                        if let (Some(id), Some(raw)) = (uid.and_then(|u| wanted.get(&u)), body) {
                            held_bytes += raw.len();
                            held.push((*id, raw.to_vec(), render::search_text(raw)));
                            // The server's sizes are only claims: what is held stays bounded.
                            if held_bytes >= PREFETCH_HELD {
                                cache.store_bodies(&std::mem::take(&mut held))?;
                                held_bytes = 0;
                            }
                        }
                        Ok(())
                    })
                    .await;
                self.guarded(result).await?;
            }
            cache.store_bodies(&held)?;
        }
        for m in large {
            self.fetch_raw(cache, m.id).await?;
        }
        Ok(())
    }

    /// Push one queued operation; `Ok(Some(warning))` if it had to be dropped.
    async fn push(
        &mut self,
        cache: &mut Cache,
        account: i64,
        op: &QueuedOp,
    ) -> Result<Option<String>, BackendError> {
        if let QueuedOp::Restore { .. } = op {
            return self.restore(cache, account, op).await;
        }
        let folder = op.folder();
        let state = cache
            .folder_by_name(account, folder)?
            .map(|f| f.sync)
            .unwrap_or_default();
        let sel = match self.select_for_push(folder, state).await? {
            Ok(sel) => sel,
            Err(warning) => return Ok(Some(warning)),
        };
        // RFC 4549 §4.1: an operation recorded against another UIDVALIDITY names another
        // message now; find ours by Message-ID, or drop the operation.
        let uid = if sel.uidvalidity == Some(op.uidvalidity()) {
            op.uid()
        } else {
            match op.message_id() {
                Some(mid) => {
                    let found = self.search_message_id(mid).await?;
                    match found.as_slice() {
                        [one] => *one,
                        _ => {
                            return Ok(Some(format!(
                                "{} changed its UIDVALIDITY and the message {} was not found \
                                 again; a queued change to it was dropped",
                                sanitize::line(folder),
                                sanitize::line(mid)
                            )));
                        }
                    }
                }
                None => {
                    return Ok(Some(format!(
                        "{} changed its UIDVALIDITY; a queued change to a message without a \
                         Message-ID was dropped",
                        sanitize::line(folder)
                    )));
                }
            }
        };
        let trash = cache
            .folders(account)?
            .into_iter()
            .find(|f| f.role == Some(FolderRole::Trash))
            .map(|f| f.name);
        let imap = self.imap().await?;
        let uidplus = imap.has("UIDPLUS");
        let can_move = imap.has("MOVE");
        let mut commands = Vec::new();
        match op {
            QueuedOp::Flags { add, remove, .. } => {
                if let Some(list) = flag_list(Flags(*add)) {
                    commands.push(format!("UID STORE {uid} +FLAGS.SILENT ({list})"));
                }
                if let Some(list) = flag_list(Flags(*remove)) {
                    commands.push(format!("UID STORE {uid} -FLAGS.SILENT ({list})"));
                }
            }
            QueuedOp::Move { to, .. } => {
                commands.extend(move_commands(uid, to, can_move, uidplus)?);
            }
            QueuedOp::Delete { folder, .. } => match &trash {
                Some(t) if t != folder => {
                    commands.extend(move_commands(uid, t, can_move, uidplus)?)
                }
                _ => {
                    commands.push(format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)"));
                    if uidplus {
                        commands.push(format!("UID EXPUNGE {uid}"));
                    }
                }
            },
            QueuedOp::Restore { .. } => {}
        }
        let outcome = self.run_queued(folder, commands).await?;
        if outcome.is_some() && matches!(op, QueuedOp::Move { .. } | QueuedOp::Delete { .. }) {
            // NOTE: the row left the cache when the change was made here, and the server
            // kept the message (the folder is still selected): fetch that one message again.
            // Under another UIDVALIDITY the next sync refetches the whole folder anyway.
            if let Some(f) = cache.folder_by_name(account, folder)?
                && f.sync.uidvalidity == sel.uidvalidity
            {
                self.fetch_new(cache, f.id, uid, Some(uid), 1, &mut |_| {})
                    .await?;
            }
        }
        Ok(outcome)
    }

    /// Run the commands of one queued operation; a refusal drops the operation with a warning.
    async fn run_queued(
        &mut self,
        folder: &str,
        commands: Vec<String>,
    ) -> Result<Option<String>, BackendError> {
        for cmd in commands {
            let imap = self.imap().await?;
            let result = imap.run(&cmd, |_| Ok(())).await;
            match result {
                Ok(()) => {}
                // The server refused (NO/BAD): the message is gone or the folder is. Keeping
                // the operation would block the queue forever; drop it and say so.
                Err(BackendError::Protocol { reason, .. }) => {
                    return Ok(Some(dropped(folder, &reason)));
                }
                Err(e) => {
                    self.imap = None;
                    return Err(e);
                }
            }
        }
        Ok(None)
    }

    /// Select `folder` to push a queued operation there. A refusal (the folder is gone from
    /// the server) is `Ok(Err(warning))`: the operation is dropped, since keeping it would
    /// fail every later push and sync of the account.
    async fn select_for_push(
        &mut self,
        folder: &str,
        known: SyncState,
    ) -> Result<Result<Selected, String>, BackendError> {
        // NOTE: connect first, so that only SELECT's own refusal counts, not a failed login.
        self.imap().await?;
        match self.select(folder, state_without_qresync(known)).await {
            Ok(sel) => Ok(Ok(sel)),
            Err(BackendError::Protocol { reason, .. }) => Ok(Err(dropped(folder, &reason))),
            Err(e) => Err(e),
        }
    }

    /// Undo a move or delete (a [`QueuedOp::Restore`]) that the server carried out: find the
    /// message where the change put it and move it back, then fetch it under its new UID.
    async fn restore(
        &mut self,
        cache: &mut Cache,
        account: i64,
        op: &QueuedOp,
    ) -> Result<Option<String>, BackendError> {
        let QueuedOp::Restore {
            folder,
            uidvalidity,
            uid,
            message_id,
            to,
        } = op
        else {
            return Ok(None);
        };
        let original = cache.folder_by_name(account, to)?;
        // NOTE: the undo put the message back in the cache under its old UID; once the server
        // has moved it back it has a new one (or it is gone), so the old row goes.
        let forget_old_row = |cache: &mut Cache| -> Result<(), BackendError> {
            if let Some(f) = &original {
                cache.remove_by_uid(f.id, &[Uid(*uid)])?;
            }
            Ok(())
        };
        let state = original.as_ref().map(|f| f.sync).unwrap_or_default();
        // NOTE: first look where the message was. It is still there after a deletion that
        // never expunged (no Trash), and after a move the server refused or only half did
        // (COPY without the EXPUNGE): then it stays, its `\Deleted` taken off, and so does its
        // row. Searching the other folder instead would take a copy for it, and the row of a
        // message still on the server would go.
        let sel = match self.select_for_push(to, state).await? {
            Ok(sel) => sel,
            Err(warning) => return Ok(Some(warning)),
        };
        if sel.uidvalidity == Some(*uidvalidity)
            && self.uid_search(&format!("UID {uid}")).await?.contains(uid)
        {
            let restore = vec![format!("UID STORE {uid} -FLAGS.SILENT (\\Deleted)")];
            return self.run_queued(to, restore).await;
        }
        if folder == to {
            // A deletion without a Trash whose expunge took place.
            forget_old_row(cache)?;
            return Ok(Some(format!(
                "could not undo the deletion in {}: the server had already removed the message \
                 for good",
                sanitize::line(to)
            )));
        }
        let Some(mid) = message_id else {
            forget_old_row(cache)?;
            return Ok(Some(format!(
                "could not undo: the message has no Message-ID to find it by; it is in {}",
                sanitize::line(folder)
            )));
        };
        let known = cache
            .folder_by_name(account, folder)?
            .map(|f| f.sync)
            .unwrap_or_default();
        if let Err(warning) = self.select_for_push(folder, known).await? {
            forget_old_row(cache)?;
            return Ok(Some(warning));
        }
        // NOTE: the newest copy, should the folder hold the same message more than once.
        let Some(found) = self.search_message_id(mid).await?.into_iter().max() else {
            forget_old_row(cache)?;
            return Ok(Some(format!(
                "could not undo: the message {} is no longer in {}",
                sanitize::line(mid),
                sanitize::line(folder)
            )));
        };
        let (can_move, uidplus) = {
            let imap = self.imap().await?;
            (imap.has("MOVE"), imap.has("UIDPLUS"))
        };
        let commands = move_commands(found, to, can_move, uidplus)?;
        if let Some(warning) = self.run_queued(folder, commands).await? {
            return Ok(Some(warning));
        }
        forget_old_row(cache)?;
        self.sync_folder(cache, to, &mut |_| {}).await?;
        Ok(None)
    }

    async fn search_message_id(&mut self, mid: &str) -> Result<Vec<u32>, BackendError> {
        self.uid_search(&format!(
            "HEADER Message-ID {}",
            quote(&format!("<{mid}>"))?
        ))
        .await
    }

    /// `UID SEARCH criteria` in the selected folder.
    async fn uid_search(&mut self, criteria: &str) -> Result<Vec<u32>, BackendError> {
        let cmd = format!("UID SEARCH {criteria}");
        let imap = self.imap().await?;
        let mut out = Vec::new();
        let result = imap
            .run(&cmd, |r| {
                if let Response::MailboxData(MailboxDatum::Search(uids)) = r {
                    out.extend(uids.iter().copied());
                }
                Ok(())
            })
            .await;
        self.guarded(result).await?;
        Ok(out)
    }
}

/// A folder from LIST.
#[derive(Debug, Clone)]
struct Listed {
    info: FolderInfo,
    selectable: bool,
    /// What `LIST ... RETURN (STATUS ...)` said about it (RFC 5819), when asked.
    status: Option<ListedStatus>,
}

/// A folder's state from LIST-STATUS: enough to know that nothing changed since the last sync.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ListedStatus {
    messages: Option<u32>,
    uidnext: Option<u32>,
    uidvalidity: Option<u32>,
    highestmodseq: Option<u64>,
}

impl ListedStatus {
    /// Whether a folder the cache holds as `cached` (with `total` messages) is unchanged on
    /// the server. Only a HIGHESTMODSEQ can prove that no flag changed and nothing was
    /// expunged (RFC 7162 §3.1.2.1), so without one the answer is no.
    fn unchanged(&self, cached: &SyncState, total: u64) -> bool {
        self.highestmodseq.is_some()
            && self.highestmodseq == cached.highestmodseq
            && self.uidvalidity.is_some()
            && self.uidvalidity == cached.uidvalidity
            && self.uidnext.is_some()
            && self.uidnext == cached.uidnext
            && self.messages.map(u64::from) == Some(total)
    }

    /// The sync state of a folder that is empty on the server and of which the cache (with
    /// state `cached` and `total` messages) holds nothing either, if the status tells all of
    /// it: then the folder needs no SELECT. A changed UIDVALIDITY is left to a full sync.
    fn empty_state(&self, cached: &SyncState, total: u64) -> Option<SyncState> {
        let fresh = total == 0
            && self.messages == Some(0)
            && self.highestmodseq.is_some()
            && self.uidnext.is_some()
            && self.uidvalidity.is_some()
            && (cached.uidvalidity.is_none() || cached.uidvalidity == self.uidvalidity);
        fresh.then_some(SyncState {
            uidvalidity: self.uidvalidity,
            uidnext: self.uidnext,
            highestmodseq: self.highestmodseq,
        })
    }
}

/// What SELECT told us.
#[derive(Debug, Default)]
struct Selected {
    exists: u32,
    uidvalidity: Option<u32>,
    uidnext: Option<u32>,
    highestmodseq: Option<u64>,
    used_qresync: bool,
    vanished: Vec<RangeInclusive<u32>>,
    changed: Vec<FlagUpdate>,
}

/// A message's flags (and mod-sequence) as the server reported them.
#[derive(Debug, Clone, Copy)]
struct FlagUpdate {
    uid: u32,
    flags: Flags,
    modseq: Option<u64>,
}

/// Sorted UIDs as IMAP sequence-set ranges (`5`, `7:9`, ...).
fn uid_ranges(uids: &[u32]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&first) = uids.get(i) {
        let mut last = first;
        i += 1;
        while let (Some(&next), Some(after)) = (uids.get(i), last.checked_add(1))
            && next == after
        {
            last = next;
            i += 1;
        }
        out.push(if first == last {
            first.to_string()
        } else {
            format!("{first}:{last}")
        });
    }
    out
}

/// A new message from FETCH.
#[derive(Debug, Default, PartialEq, Eq)]
struct Fetched {
    uid: u32,
    flags: Flags,
    size: u64,
    modseq: Option<u64>,
    header: Vec<u8>,
    attachments: Option<bool>,
}

impl Fetched {
    fn into_new(self) -> NewMessage {
        let mut envelope = render::envelope_of_fields(&self.header, self.size);
        if let Some(a) = self.attachments {
            envelope.has_attachments = a;
        }
        NewMessage {
            remote: RemoteId::Uid(Uid(self.uid)),
            envelope,
            flags: self.flags,
            modseq: self.modseq,
            mbox: None,
            body_text: BodyText::Unknown,
        }
    }
}

/// Whether a body part of `part` bytes, fetched after `done` bytes of a message the server
/// said has `claimed` bytes, is the last one; `None` if the server sent more than a part. A
/// server that ignores the partial range sends the whole message each time: that is the body
/// when it comes first, and an error after (asking again would only bring the same bytes,
/// without end). Nor may the parts together pass the claimed size by a whole part: a message
/// of exactly one part from such a server would otherwise be asked for again and again.
fn last_part(done: usize, part: usize, claimed: u64) -> Option<bool> {
    let last = match (part as u64).cmp(&BODY_PART) {
        std::cmp::Ordering::Less => true,
        std::cmp::Ordering::Equal => false,
        std::cmp::Ordering::Greater => return (done == 0).then_some(true),
    };
    let received = (done as u64).saturating_add(part as u64);
    // NOTE: 0 is a size the server never gave; then there is nothing to go by.
    if !last && claimed > 0 && received >= claimed.saturating_add(BODY_PART) {
        return None;
    }
    Some(last)
}

/// The warning for a queued operation the server refused.
fn dropped(folder: &str, reason: &str) -> String {
    format!(
        "a queued change in {} was refused by the server and dropped: {reason}",
        sanitize::line(folder)
    )
}

fn state_without_qresync(mut s: SyncState) -> SyncState {
    // NOTE: pushing changes needs only a plain SELECT; keep QRESYNC for the sync itself.
    s.highestmodseq = None;
    s
}

/// Parse IMAP system flags; keywords are ignored.
fn parse_flags(list: &[std::borrow::Cow<'_, str>]) -> Flags {
    let mut flags = Flags::default();
    for f in list.iter().filter_map(|f| system_flag(f.as_bytes())) {
        flags.insert(f);
    }
    flags
}

/// The flag a system flag's name (`\Seen`, in any case) stands for, if mailbag keeps it.
fn system_flag(name: &[u8]) -> Option<Flags> {
    [
        (&b"\\seen"[..], Flags::SEEN),
        (b"\\flagged", Flags::FLAGGED),
        (b"\\answered", Flags::ANSWERED),
        (b"\\deleted", Flags::DELETED),
        (b"\\draft", Flags::DRAFT),
    ]
    .into_iter()
    .find(|(known, _)| name.eq_ignore_ascii_case(known))
    .map(|(_, flag)| flag)
}

/// The IMAP names of `flags`, space-separated, or `None` if empty.
fn flag_list(flags: Flags) -> Option<String> {
    let names: Vec<&str> = [
        (Flags::SEEN, "\\Seen"),
        (Flags::FLAGGED, "\\Flagged"),
        (Flags::ANSWERED, "\\Answered"),
        (Flags::DELETED, "\\Deleted"),
        (Flags::DRAFT, "\\Draft"),
    ]
    .iter()
    .filter(|(f, _)| flags.contains(*f))
    .map(|(_, n)| *n)
    .collect();
    (!names.is_empty()).then(|| names.join(" "))
}

fn move_commands(
    uid: u32,
    to: &str,
    can_move: bool,
    uidplus: bool,
) -> Result<Vec<String>, BackendError> {
    let to = quote(to)?;
    Ok(if can_move {
        vec![format!("UID MOVE {uid} {to}")]
    } else {
        // RFC 6851 §3.3's fallback; without UIDPLUS the \Deleted copy stays until an EXPUNGE,
        // since a plain EXPUNGE could remove other messages the user marked.
        let mut v = vec![
            format!("UID COPY {uid} {to}"),
            format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)"),
        ];
        if uidplus {
            v.push(format!("UID EXPUNGE {uid}"));
        }
        v
    })
}

fn fetched(attrs: &[AttributeValue<'_>]) -> Option<FlagUpdate> {
    let mut uid = None;
    let mut flags = None;
    let mut modseq = None;
    for a in attrs {
        match a {
            AttributeValue::Uid(u) => uid = Some(*u),
            AttributeValue::Flags(f) => flags = Some(parse_flags(f)),
            AttributeValue::ModSeq(m) => modseq = Some(*m),
            _ => {}
        }
    }
    Some(FlagUpdate {
        uid: uid?,
        flags: flags?,
        modseq,
    })
}

fn new_message(attrs: &[AttributeValue<'_>]) -> Option<Fetched> {
    let mut m = Fetched::default();
    let mut has_uid = false;
    for a in attrs {
        match a {
            AttributeValue::Uid(u) => {
                m.uid = *u;
                has_uid = true;
            }
            AttributeValue::Flags(f) => m.flags = parse_flags(f),
            AttributeValue::Rfc822Size(s) => m.size = u64::from(*s),
            AttributeValue::ModSeq(v) => m.modseq = Some(*v),
            AttributeValue::BodySection { data: Some(d), .. } => m.header = d.to_vec(),
            AttributeValue::BodyStructure(b) => m.attachments = Some(has_attachment(b)),
            _ => {}
        }
    }
    has_uid.then_some(m)
}

/// Whether a BODYSTRUCTURE has a part the user would call an attachment.
fn has_attachment(b: &BodyStructure<'_>) -> bool {
    let common = match b {
        BodyStructure::Basic { common, .. }
        | BodyStructure::Text { common, .. }
        | BodyStructure::Message { common, .. } => common,
        BodyStructure::Multipart { bodies, .. } => return bodies.iter().any(has_attachment),
    };
    if let Some(d) = &common.disposition
        && d.ty.eq_ignore_ascii_case("attachment")
    {
        return true;
    }
    let named = common
        .ty
        .params
        .as_ref()
        .is_some_and(|p| p.iter().any(|(k, _)| k.eq_ignore_ascii_case("name")));
    matches!(
        b,
        BodyStructure::Basic { .. } | BodyStructure::Message { .. }
    ) && named
}

impl MailBackend for ImapBackend {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            folders: true,
            server_flags: true,
            push: true,
            move_messages: true,
            writable: true,
        }
    }

    async fn connect(&mut self) -> Result<(), BackendError> {
        self.imap().await.map(|_| ())
    }

    async fn list_folders(&mut self) -> Result<Vec<FolderInfo>, BackendError> {
        Ok(ImapBackend::list_folders(self)
            .await?
            .into_iter()
            .filter(|f| f.selectable)
            .map(|f| f.info)
            .collect())
    }

    async fn sync_folder(
        &mut self,
        cache: &mut Cache,
        folder: &str,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<SyncReport, BackendError> {
        let account = cache.ensure_account(&self.name, "imap")?;
        let folder_id = match cache.folder_by_name(account, folder)? {
            Some(f) => f.id,
            None => cache.ensure_folder(
                account,
                &FolderInfo {
                    name: folder.to_string(),
                    delimiter: None,
                    role: folder
                        .eq_ignore_ascii_case("INBOX")
                        .then_some(FolderRole::Inbox),
                },
            )?,
        };
        let mut known = cache.folder(folder_id)?.map(|f| f.sync).unwrap_or_default();
        let mut report = SyncReport::default();
        let sel = self.select(folder, known).await?;
        if known.uidvalidity.is_some() && sel.uidvalidity != known.uidvalidity {
            // RFC 4549 §4.1: every cached UID of this folder now means nothing.
            report.removed_messages += cache.clear_folder(folder_id)?;
            known = SyncState::default();
        }
        let fresh = known.uidnext.is_none();
        let last_known = known.uidnext.unwrap_or(1).saturating_sub(1);

        if !fresh {
            // Flag changes and expunges among the messages we already had.
            let updates = if sel.used_qresync {
                sel.changed.clone()
            } else {
                let condstore = self.imap().await?.has("CONDSTORE");
                match (condstore, known.highestmodseq, sel.highestmodseq) {
                    (true, Some(old), Some(now)) if old == now => Vec::new(),
                    (true, Some(old), Some(_)) => self.fetch_flags(Some(old), last_known).await?,
                    _ => self.fetch_flags(None, last_known).await?,
                }
            };
            let changes: Vec<(Uid, Flags, Option<u64>)> = updates
                .iter()
                .filter(|u| u.uid <= last_known)
                .map(|u| (Uid(u.uid), u.flags, u.modseq))
                .collect();
            report.flag_changes += cache.update_flags_by_uid(folder_id, &changes)?;

            let gone: Vec<Uid> = if sel.used_qresync {
                sel.vanished
                    .iter()
                    .flat_map(|r| r.clone())
                    .filter(|u| *u <= last_known)
                    .map(Uid)
                    .collect()
            } else {
                let cached = cache.uids(folder_id)?;
                let new_on_server = sel
                    .uidnext
                    .map(|n| n.saturating_sub(known.uidnext.unwrap_or(n)))
                    .unwrap_or(0);
                // NOTE: if the server holds exactly what we hold plus what is new, nothing
                // was expunged; only otherwise ask for the full UID list.
                if cached.len() as u64 + u64::from(new_on_server) == u64::from(sel.exists)
                    && sel.uidnext.is_some()
                {
                    Vec::new()
                } else {
                    let present = self.search_all().await?;
                    cached
                        .into_iter()
                        .filter(|u| !present.contains(&u.0))
                        .collect()
                }
            };
            report.removed_messages += cache.remove_by_uid(folder_id, &gone)?;
        }

        // New messages.
        let from = known.uidnext.unwrap_or(1).max(1);
        let maybe_new = match sel.uidnext {
            Some(n) => n > from,
            None => sel.exists > 0,
        };
        if maybe_new && sel.exists > 0 {
            let expected = u64::from(sel.uidnext.map_or(sel.exists, |n| n - from));
            let (n, bytes) = self
                .fetch_new(cache, folder_id, from, None, expected, progress)
                .await?;
            report.new_messages += n;
            report.bytes += bytes;
        }
        let uidnext = match sel.uidnext {
            Some(n) => Some(n),
            None => cache
                .uids(folder_id)?
                .last()
                .map(|u| u.0.saturating_add(1))
                .or(Some(from)),
        };
        cache.set_sync_state(
            folder_id,
            SyncState {
                uidvalidity: sel.uidvalidity,
                uidnext,
                highestmodseq: sel.highestmodseq,
            },
        )?;
        Ok(report)
    }

    async fn fetch_raw(&mut self, cache: &mut Cache, id: i64) -> Result<Vec<u8>, BackendError> {
        let row = cache.message(id)?.ok_or(CacheError::NoSuchMessage(id))?;
        if row.body != BodyLocation::None {
            return super::local::read_local(cache, id);
        }
        let folder = cache
            .folder(row.folder_id)?
            .ok_or(CacheError::NoSuchMessage(id))?;
        let uid = row.uid.ok_or(BackendError::NotSupported(
            "fetching a message without a UID",
        ))?;
        if self.imap.as_ref().and_then(|i| i.selected.as_deref()) != Some(folder.name.as_str()) {
            self.select(&folder.name, state_without_qresync(folder.sync))
                .await?;
        }
        // NOTE: the size is what the server claimed; never reserve more than one part on its word.
        let mut raw = Vec::with_capacity(row.envelope.size.min(BODY_PART) as usize);
        loop {
            let cmd = format!(
                "UID FETCH {} (BODY.PEEK[]<{}.{}>)",
                uid.0,
                raw.len(),
                BODY_PART
            );
            let imap = self.imap().await?;
            let mut part: Option<Vec<u8>> = None;
            let result = imap
                .run(&cmd, |r| {
                    if let Response::Fetch(_, attrs) = r {
                        for a in attrs {
                            if let AttributeValue::BodySection { data, .. } = a {
                                part = Some(data.as_deref().unwrap_or_default().to_vec());
                            }
                        }
                    }
                    Ok(())
                })
                .await;
            self.guarded(result).await?;
            let Some(part) = part else {
                return Err(BackendError::Protocol {
                    host: self.account.host.clone(),
                    reason: format!("the server sent no body for message {}", uid.0),
                });
            };
            let Some(last) = last_part(raw.len(), part.len(), row.envelope.size) else {
                return Err(BackendError::Protocol {
                    host: self.account.host.clone(),
                    reason: format!(
                        "the server sent more of message {} than was asked for",
                        uid.0
                    ),
                });
            };
            raw.extend_from_slice(&part);
            if last {
                break;
            }
        }
        let text = render::search_text(&raw);
        cache.store_body(id, &raw, &text)?;
        Ok(raw)
    }

    async fn apply_pending(&mut self, cache: &mut Cache) -> Result<u64, BackendError> {
        let account = cache.ensure_account(&self.name, "imap")?;
        let mut applied = 0;
        let queue = cache.pending(account)?;
        // NOTE: a move or delete undone before it ever reached the server: neither goes out.
        // Only one never tried counts; a failed try may have reached the server after all.
        let decoded: Vec<Option<QueuedOp>> =
            queue.iter().map(|p| QueuedOp::decode(&p.op)).collect();
        let mut cancelled = HashSet::new();
        for (j, restore) in decoded.iter().enumerate() {
            let Some(restore) = restore else { continue };
            let undone = decoded.iter().enumerate().take(j).position(|(i, op)| {
                !cancelled.contains(&i)
                    && queue.get(i).is_some_and(|p| p.attempts == 0)
                    && op.as_ref().is_some_and(|op| changes::undoes(restore, op))
            });
            if let Some(i) = undone {
                cancelled.insert(i);
                cancelled.insert(j);
            }
        }
        // NOTE: both halves of every cancelled pair leave the queue before anything is pushed,
        // so that a failed push can never leave a restore without its move.
        let mut rest = Vec::with_capacity(queue.len());
        for (i, (pending, op)) in queue.into_iter().zip(decoded).enumerate() {
            if cancelled.contains(&i) {
                cache.complete(pending.id)?;
            } else {
                rest.push((pending, op));
            }
        }
        for (pending, op) in rest {
            let Some(op) = op else {
                self.warnings
                    .push("a queued change could not be read and was dropped".into());
                cache.complete(pending.id)?;
                continue;
            };
            match self.push(cache, account, &op).await {
                Ok(None) => applied += 1,
                Ok(Some(warning)) => self.warnings.push(warning),
                Err(e) => {
                    cache.record_attempt(pending.id, &e.to_string())?;
                    return Err(e);
                }
            }
            cache.complete(pending.id)?;
        }
        Ok(applied)
    }

    async fn wait_for_changes(&mut self, folder: &str) -> Result<bool, BackendError> {
        let mut never = std::pin::pin!(std::future::pending::<()>());
        Ok(self.watch(folder, never.as_mut()).await? == Watched::Changed)
    }
}

/// How a [`ImapBackend::watch`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watched {
    /// The server reported a change in the folder.
    Changed,
    /// The wait ran its time without a change (the link was checked and is alive).
    Quiet,
    /// `interrupt` completed first; IDLE was ended cleanly, the connection is ready.
    Interrupted,
}

impl ImapBackend {
    /// Wait for changes in `folder` (IDLE, or NOOP polling without IDLE) for at most one
    /// IDLE period, or until `interrupt` completes — then end IDLE cleanly with DONE so the
    /// connection can be used at once (the engine interrupts when the user acts).
    pub async fn watch(
        &mut self,
        folder: &str,
        interrupt: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    ) -> Result<Watched, BackendError> {
        let use_idle = self.account.idle();
        let (idle, selected) = {
            let imap = self.imap().await?;
            (
                use_idle && imap.has("IDLE"),
                imap.selected.as_deref() == Some(folder),
            )
        };
        if !selected {
            self.select(folder, SyncState::default()).await?;
        }
        let imap = self.imap().await?;
        let result = if idle {
            idle_once(imap, interrupt).await
        } else {
            let wait = imap.timeouts.idle;
            let interrupted = tokio::select! {
                () = tokio::time::sleep(wait) => false,
                () = interrupt => true,
            };
            let mut changed = false;
            imap.run("NOOP", |r| {
                changed |= is_change(r);
                Ok(())
            })
            .await
            .map(|()| match (changed, interrupted) {
                (true, _) => Watched::Changed,
                (false, true) => Watched::Interrupted,
                (false, false) => Watched::Quiet,
            })
        };
        self.guarded(result).await
    }
}

/// Whether an untagged response says the selected folder changed.
fn is_change(r: &Response<'_>) -> bool {
    matches!(
        r,
        Response::MailboxData(MailboxDatum::Exists(_))
            | Response::MailboxData(MailboxDatum::Recent(_))
            | Response::Expunge(_)
            | Response::Vanished { .. }
            | Response::Fetch(..)
    )
}

/// One bounded IDLE: returns `true` as soon as the server reports a change, `false` when the
/// time is up; either way IDLE is ended with DONE and its reply read, which also proves the
/// link is alive.
async fn idle_once(
    imap: &mut Imap,
    mut interrupt: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> Result<Watched, BackendError> {
    let tag = imap.start("IDLE").await?;
    // The continuation (`+ idling`) first.
    loop {
        let step = imap
            .read(|r| match r {
                Response::Continue { .. } => Some(Ok(())),
                Response::Done { tag: t, status, .. } if *t == tag => {
                    Some(Err(format!("{status:?}")))
                }
                _ => None,
            })
            .await?;
        match step {
            Some(Ok(())) => break,
            Some(Err(status)) => {
                return Err(BackendError::Protocol {
                    host: imap.host.clone(),
                    reason: format!("IDLE was refused ({status})"),
                });
            }
            None => {}
        }
    }
    let deadline = tokio::time::Instant::now() + imap.timeouts.idle;
    let mut changed = false;
    let mut interrupted = false;
    while !changed {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        // NOTE: a read interrupted here loses nothing: the parser keeps partial input in its
        // own buffer, and the responses still to come are read after DONE below.
        let read = tokio::select! {
            r = imap.read_within(left, is_change) => r?,
            () = interrupt.as_mut() => {
                interrupted = true;
                break;
            }
        };
        match read {
            None => break,
            Some(c) => changed = c,
        }
    }
    imap.send_untagged("DONE").await?;
    loop {
        let (done, change) = imap
            .read(|r| {
                (
                    matches!(r, Response::Done { tag: t, .. } if *t == tag),
                    is_change(r),
                )
            })
            .await?;
        changed |= change;
        if done {
            return Ok(match (changed, interrupted) {
                (true, _) => Watched::Changed,
                (false, true) => Watched::Interrupted,
                (false, false) => Watched::Quiet,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_become_ranges() {
        assert_eq!(uid_ranges(&[]), Vec::<String>::new());
        assert_eq!(uid_ranges(&[5]), ["5"]);
        assert_eq!(uid_ranges(&[1, 2, 3, 7, 9, 10]), ["1:3", "7", "9:10"]);
        assert_eq!(
            uid_ranges(&[u32::MAX - 1, u32::MAX]),
            [format!("{}:{}", u32::MAX - 1, u32::MAX)]
        );
    }

    #[test]
    fn only_a_fresh_empty_folder_is_recorded_from_its_status() {
        let status = ListedStatus {
            messages: Some(0),
            uidnext: Some(7),
            uidvalidity: Some(42),
            highestmodseq: Some(9),
        };
        let new = SyncState::default();
        let expected = SyncState {
            uidvalidity: Some(42),
            uidnext: Some(7),
            highestmodseq: Some(9),
        };
        assert_eq!(status.empty_state(&new, 0), Some(expected));
        assert_eq!(status.empty_state(&expected, 0), Some(expected));
        // Messages in the cache (their expunges must be found), or on the server.
        assert_eq!(status.empty_state(&new, 3), None);
        let full = ListedStatus {
            messages: Some(1),
            ..status
        };
        assert_eq!(full.empty_state(&new, 0), None);
        // A new UIDVALIDITY, or a status that does not tell everything: a full sync.
        let old = SyncState {
            uidvalidity: Some(41),
            ..expected
        };
        assert_eq!(status.empty_state(&old, 0), None);
        let partial = ListedStatus {
            highestmodseq: None,
            ..status
        };
        assert_eq!(partial.empty_state(&new, 0), None);
    }

    #[test]
    fn only_a_matching_highestmodseq_proves_a_folder_unchanged() {
        let cached = SyncState {
            uidvalidity: Some(7),
            uidnext: Some(11),
            highestmodseq: Some(40),
        };
        let same = ListedStatus {
            messages: Some(10),
            uidnext: Some(11),
            uidvalidity: Some(7),
            highestmodseq: Some(40),
        };
        assert!(same.unchanged(&cached, 10));
        assert!(!same.unchanged(&cached, 9), "a message count that differs");
        for changed in [
            ListedStatus {
                highestmodseq: Some(41),
                ..same
            },
            ListedStatus {
                highestmodseq: None,
                ..same
            },
            ListedStatus {
                uidnext: Some(12),
                ..same
            },
            ListedStatus {
                uidvalidity: Some(8),
                ..same
            },
        ] {
            assert!(!changed.unchanged(&cached, 10), "{changed:?}");
        }
        let never_synced = SyncState::default();
        assert!(!ListedStatus::default().unchanged(&never_synced, 0));
    }

    #[test]
    fn a_server_that_ignores_the_partial_range_ends_the_body_fetch() {
        let part = BODY_PART as usize;
        let size = 3 * BODY_PART;
        assert_eq!(last_part(0, 10, size), Some(true));
        assert_eq!(last_part(0, part, size), Some(false), "more may follow");
        assert_eq!(last_part(part, 0, size), Some(true));
        assert_eq!(
            last_part(0, part + 1, size),
            Some(true),
            "the whole message at once"
        );
        assert_eq!(
            last_part(part, part + 1, size),
            None,
            "the same bytes again"
        );
        // A message of exactly one part, sent whole each time: the second time is one too many.
        let one = BODY_PART;
        assert_eq!(last_part(0, part, one), Some(false));
        assert_eq!(last_part(part, part, one), None, "past its size by a part");
        assert_eq!(last_part(part, part, 0), Some(false), "no size to go by");
    }

    #[test]
    fn flags_round_trip_between_names_and_bits() {
        let parsed = parse_flags(&["\\Seen".into(), "\\FLAGGED".into(), "$Junk".into()]);
        assert_eq!(parsed, Flags::SEEN | Flags::FLAGGED);
        assert_eq!(flag_list(parsed).as_deref(), Some("\\Seen \\Flagged"));
        assert_eq!(flag_list(Flags::default()), None);
    }

    #[test]
    fn moves_fall_back_to_copy_without_move() {
        assert_eq!(
            move_commands(7, "Archive", true, true).unwrap(),
            vec!["UID MOVE 7 \"Archive\""]
        );
        assert_eq!(
            move_commands(7, "A\"b", false, false).unwrap(),
            vec![
                "UID COPY 7 \"A\\\"b\"",
                "UID STORE 7 +FLAGS.SILENT (\\Deleted)"
            ]
        );
        assert!(move_commands(7, "evil\r\nA1 DELETE INBOX", true, true).is_err());
    }
}
