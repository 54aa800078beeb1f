//! The shared message cache: SQLite in WAL mode, one writer per profile.
//!
//! Both backends write here and the UI reads only from here, so browsing, reading and searching
//! are instant and work offline. It holds accounts; folders with their IMAP sync state
//! (UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ); messages (remote id, envelope, flags, size, thread,
//! where the body is); the pending-operation queue (RFC 4549 "disconnected" changes waiting for
//! the server); POP3 UIDL history; and an FTS5 index for local search.
//!
//! The schema is versioned with `PRAGMA user_version`; [`MIGRATIONS`] are applied in order, each
//! in its own transaction, so an old cache is upgraded in place.
//!
//! One writer at a time: [`Cache::open`] takes an exclusive lock on `lock` in the data directory
//! and a second process gets [`CacheError::InUse`] instead of a corrupted cache. Readers
//! ([`Cache::open_read_only`]) need no lock: WAL lets them read while the writer writes.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};
use thiserror::Error;

use crate::backend::{Envelope, Flags, FolderInfo, FolderRole, RemoteId, Uid};
use crate::store::mbox::Span;

/// A failure of the cache.
#[derive(Debug, Error)]
pub enum CacheError {
    #[error("cache {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cache {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the mailbag profile in {path} is already in use by another mailbag process; close it first"
    )]
    InUse { path: String },
    #[error("cache {path} was written by a newer mailbag (schema {found}, this one knows {known})")]
    TooNew {
        path: String,
        found: i64,
        known: i64,
    },
    #[error("no message with id {0} in the cache")]
    NoSuchMessage(i64),
    #[error("no account named {0} in the cache")]
    NoSuchAccount(String),
    #[error("an in-memory cache cannot be opened a second time")]
    InMemory,
}

/// Each entry upgrades the schema by one version.
pub const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    r#"
    CREATE TABLE accounts (
        id       INTEGER PRIMARY KEY,
        name     TEXT NOT NULL UNIQUE,
        protocol TEXT NOT NULL
    );
    CREATE TABLE folders (
        id            INTEGER PRIMARY KEY,
        account_id    INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        name          TEXT NOT NULL,
        delimiter     TEXT,
        role          TEXT,
        mbox_path     TEXT,
        uidvalidity   INTEGER,
        uidnext       INTEGER,
        highestmodseq INTEGER,
        mbox_scanned     INTEGER NOT NULL DEFAULT 0,
        mbox_append_from INTEGER,
        mbox_rewrite     TEXT,
        UNIQUE (account_id, name)
    );
    CREATE TABLE messages (
        id              INTEGER PRIMARY KEY,
        folder_id       INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
        uid             INTEGER,
        uidl            TEXT,
        message_id      TEXT,
        in_reply_to     TEXT,
        refs            TEXT,
        date            INTEGER,
        from_addr       TEXT NOT NULL DEFAULT '',
        to_addrs        TEXT NOT NULL DEFAULT '',
        cc_addrs        TEXT NOT NULL DEFAULT '',
        subject         TEXT NOT NULL DEFAULT '',
        flags           INTEGER NOT NULL DEFAULT 0,
        size            INTEGER NOT NULL DEFAULT 0,
        has_attachments INTEGER NOT NULL DEFAULT 0,
        modseq          INTEGER,
        thread_id       INTEGER,
        mbox_offset     INTEGER,
        mbox_length     INTEGER
    );
    CREATE UNIQUE INDEX messages_by_uid ON messages(folder_id, uid) WHERE uid IS NOT NULL;
    CREATE UNIQUE INDEX messages_by_uidl ON messages(folder_id, uidl) WHERE uidl IS NOT NULL;
    CREATE UNIQUE INDEX messages_by_mbox_offset ON messages(folder_id, mbox_offset)
        WHERE mbox_offset IS NOT NULL;
    CREATE INDEX messages_newest_first ON messages(folder_id, date DESC, id DESC);
    CREATE INDEX messages_unread ON messages(folder_id) WHERE (flags & 1) = 0;
    CREATE INDEX messages_by_message_id ON messages(message_id);
    CREATE INDEX messages_by_thread ON messages(thread_id);
    CREATE TABLE bodies (
        message_id INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
        raw        BLOB NOT NULL
    );
    CREATE TABLE pending_ops (
        id         INTEGER PRIMARY KEY,
        account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        message_id INTEGER,
        op         TEXT NOT NULL,
        created    INTEGER NOT NULL,
        attempts   INTEGER NOT NULL DEFAULT 0,
        last_error TEXT
    );
    CREATE TABLE pop3_uidls (
        account_id    INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        uidl          TEXT NOT NULL,
        downloaded_at INTEGER NOT NULL,
        PRIMARY KEY (account_id, uidl)
    ) WITHOUT ROWID;
    CREATE VIRTUAL TABLE search USING fts5(
        subject, sender, recipients, body,
        content = '', contentless_delete = 1, tokenize = 'unicode61 remove_diacritics 2'
    );
    "#,
    // 2: threading (JWZ): every Message-ID seen, as a message's own or in its References or
    // In-Reply-To, maps to a thread; messages that mention an id share its thread.
    r#"
    CREATE TABLE thread_refs (
        message_id TEXT PRIMARY KEY,
        thread_id  INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX thread_refs_by_thread ON thread_refs(thread_id);
    CREATE INDEX messages_by_folder_thread ON messages(folder_id, thread_id);
    "#,
    // 3: one row per conversation and folder (its newest message, size and unread count), so
    // the threaded list reads a window of conversations the way the flat list reads a window
    // of messages instead of grouping the whole folder. Triggers on `messages` keep it current
    // through deletions and updates; `insert_in`, the one place messages are inserted, adds
    // new ones itself (see ADD_TO_CONVERSATION). A message counts once its thread is assigned
    // (thread_id not NULL).
    // Two indexes go: nothing looks messages up by Message-ID (thread_refs does that), and a
    // conversation's messages are found per folder (messages_by_folder_thread); each cost a
    // b-tree insert per downloaded message.
    r#"
    DROP INDEX messages_by_message_id;
    DROP INDEX messages_by_thread;
    CREATE TABLE folder_threads (
        folder_id   INTEGER NOT NULL,
        thread_id   INTEGER NOT NULL,
        newest_id   INTEGER NOT NULL,
        newest_date INTEGER NOT NULL,
        count       INTEGER NOT NULL,
        unread      INTEGER NOT NULL,
        PRIMARY KEY (folder_id, thread_id)
    ) WITHOUT ROWID;
    CREATE INDEX folder_threads_newest_first
        ON folder_threads(folder_id, newest_date DESC, newest_id DESC);
    -- NOTE: the newest message is chosen as everywhere else (date, then id, descending); a
    -- bare column beside max(date) would take any of the messages that share the newest date.
    INSERT INTO folder_threads(folder_id, thread_id, newest_id, newest_date, count, unread)
        SELECT folder_id, thread_id,
               (SELECT n.id FROM messages n
                WHERE n.folder_id = m.folder_id AND n.thread_id = m.thread_id
                ORDER BY coalesce(n.date, 0) DESC, n.id DESC LIMIT 1),
               max(coalesce(date, 0)), count(*), sum((flags & 1) = 0)
        FROM messages m WHERE thread_id IS NOT NULL GROUP BY folder_id, thread_id;
    CREATE TRIGGER folder_threads_remove AFTER DELETE ON messages
    WHEN old.thread_id IS NOT NULL BEGIN
        UPDATE folder_threads SET count = count - 1, unread = unread - ((old.flags & 1) = 0)
            WHERE folder_id = old.folder_id AND thread_id = old.thread_id;
        DELETE FROM folder_threads
            WHERE folder_id = old.folder_id AND thread_id = old.thread_id AND count <= 0;
        UPDATE folder_threads SET (newest_id, newest_date) = (
                SELECT id, coalesce(date, 0) FROM messages
                WHERE folder_id = old.folder_id AND thread_id = old.thread_id
                ORDER BY coalesce(date, 0) DESC, id DESC LIMIT 1)
            WHERE folder_id = old.folder_id AND thread_id = old.thread_id
              AND newest_id = old.id;
    END;
    CREATE TRIGGER folder_threads_read AFTER UPDATE OF flags ON messages
    WHEN new.thread_id IS NOT NULL AND old.thread_id = new.thread_id
         AND old.folder_id = new.folder_id AND old.date IS new.date
         AND (old.flags & 1) != (new.flags & 1) BEGIN
        UPDATE folder_threads SET unread = unread + ((new.flags & 1) = 0) - ((old.flags & 1) = 0)
            WHERE folder_id = new.folder_id AND thread_id = new.thread_id;
    END;
    -- NOTE: a message that changes folder, thread or date leaves its old conversation row and
    -- joins its new one, with the flags it had before and has after.
    CREATE TRIGGER folder_threads_move AFTER UPDATE OF folder_id, thread_id, date ON messages
    WHEN old.folder_id IS NOT new.folder_id OR old.thread_id IS NOT new.thread_id
         OR old.date IS NOT new.date BEGIN
        UPDATE folder_threads SET count = count - 1, unread = unread - ((old.flags & 1) = 0)
            WHERE old.thread_id IS NOT NULL
              AND folder_id = old.folder_id AND thread_id = old.thread_id;
        DELETE FROM folder_threads
            WHERE folder_id = old.folder_id AND thread_id = old.thread_id AND count <= 0;
        UPDATE folder_threads SET (newest_id, newest_date) = (
                SELECT id, coalesce(date, 0) FROM messages
                WHERE folder_id = old.folder_id AND thread_id = old.thread_id
                ORDER BY coalesce(date, 0) DESC, id DESC LIMIT 1)
            WHERE folder_id = old.folder_id AND thread_id = old.thread_id
              AND newest_id = old.id;
        INSERT INTO folder_threads(folder_id, thread_id, newest_id, newest_date, count, unread)
        SELECT new.folder_id, new.thread_id, new.id, coalesce(new.date, 0), 1,
               (new.flags & 1) = 0
        WHERE new.thread_id IS NOT NULL
        ON CONFLICT(folder_id, thread_id) DO UPDATE SET
            count = count + 1,
            unread = unread + excluded.unread,
            newest_id = CASE WHEN (excluded.newest_date, excluded.newest_id)
                                  > (newest_date, newest_id)
                             THEN excluded.newest_id ELSE newest_id END,
            newest_date = max(newest_date, excluded.newest_date);
    END;
    "#,
    // 4: a message's search words wait here until they are indexed (`Cache::index_pending`).
    // Tokenising and merging FTS5 segments was a third of a download's cache work; the rows
    // are written in the download's own transaction (so nothing is lost to a crash), and the
    // index catches up after the sync, or at the latest before the next search.
    r#"
    CREATE TABLE search_pending (
        id         INTEGER PRIMARY KEY,
        subject    TEXT,
        sender     TEXT,
        recipients TEXT,
        body       TEXT
    );
    "#,
    // 5: the newest-first indexes run oldest first; queries walk them backwards, as fast.
    // Mail arrives roughly in date order, so a new message's entry now goes at the end of the
    // index, where SQLite appends it to the last page, instead of at the front, where every
    // full page had to be split and rebalanced (4 % of a download's cache work).
    r#"
    DROP INDEX messages_newest_first;
    CREATE INDEX messages_newest_first ON messages(folder_id, date, id);
    DROP INDEX folder_threads_newest_first;
    CREATE INDEX folder_threads_newest_first ON folder_threads(folder_id, newest_date, newest_id);
    "#,
];

/// How many pending messages `Cache::index_pending` indexes per transaction.
const INDEX_CHUNK: i64 = 2_000;

/// Count a new message in its conversation's row (`folder_threads`, schema 3).
///
/// NOTE: not an INSERT trigger: a trigger makes SQLite keep a statement journal for every
/// insert into `messages`, about a tenth of the cost of a download's cache writes.
const ADD_TO_CONVERSATION: &str = "
    INSERT INTO folder_threads(folder_id, thread_id, newest_id, newest_date, count, unread)
    VALUES (?1, ?2, ?3, coalesce(?4, 0), 1, ?5)
    ON CONFLICT(folder_id, thread_id) DO UPDATE SET
        count = count + 1,
        unread = unread + excluded.unread,
        newest_id = CASE WHEN (excluded.newest_date, excluded.newest_id)
                              > (newest_date, newest_id)
                         THEN excluded.newest_id ELSE newest_id END,
        newest_date = max(newest_date, excluded.newest_date)";

/// An account row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRow {
    pub id: i64,
    pub name: String,
    pub protocol: String,
}

/// IMAP synchronisation state of a folder (RFC 4549, RFC 7162).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncState {
    pub uidvalidity: Option<u32>,
    pub uidnext: Option<u32>,
    pub highestmodseq: Option<u64>,
}

/// A folder row with its counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderRow {
    pub id: i64,
    pub account_id: i64,
    pub name: String,
    pub delimiter: Option<char>,
    pub role: Option<FolderRole>,
    pub mbox_path: Option<PathBuf>,
    pub sync: SyncState,
    pub mbox: MboxState,
    pub total: u64,
    pub unread: u64,
}

/// Where a folder's mbox file stands, for crash recovery (see `backend::pop3`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MboxState {
    /// The file's existing messages were indexed (done once, before the first download).
    pub scanned: bool,
    /// Set while a batch is being appended: the file's length before it. Anything past this
    /// after a crash is an uncommitted append of ours.
    pub append_from: Option<u64>,
    /// Set while an expunge rewrite is being put in place: the new file, not yet renamed.
    pub rewrite: Option<PathBuf>,
}

/// Where a message's body is, if it is held locally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyLocation {
    /// Not held: fetch on demand.
    None,
    /// Held in the cache's `bodies` table.
    Cached,
    /// Held in the folder's mbox file.
    Mbox(Span),
}

/// A message to insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub remote: RemoteId,
    pub envelope: Envelope,
    pub flags: Flags,
    pub modseq: Option<u64>,
    pub mbox: Option<Span>,
    /// What the search index gets beside the envelope.
    pub body_text: BodyText,
}

/// The words of a message's body for the search index (see [`NewMessage`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyText {
    /// Not known (an IMAP message before its body is fetched); for a message the folder holds
    /// already, its indexed words stay as they are.
    Unknown,
    /// The body's plain text.
    Text(String),
    /// The body is in the folder's mbox at the message's span: [`Cache::index_pending`] reads
    /// it there (and corrects `has_attachments`, which a header alone can only guess).
    InMbox,
}

/// A message as the list and the reader see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRow {
    pub id: i64,
    pub folder_id: i64,
    pub uid: Option<Uid>,
    pub uidl: Option<String>,
    pub envelope: Envelope,
    pub flags: Flags,
    pub modseq: Option<u64>,
    pub thread_id: Option<i64>,
    pub body: BodyLocation,
}

/// A local change waiting to be pushed to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingOp {
    pub id: i64,
    pub account_id: i64,
    pub message_id: Option<i64>,
    /// The operation, as the backend encoded it (a small JSON object).
    pub op: String,
    pub attempts: u32,
    pub last_error: Option<String>,
}

const MESSAGE_COLUMNS: &str = "id, folder_id, uid, uidl, message_id, in_reply_to, refs, date, \
     from_addr, to_addrs, cc_addrs, subject, flags, size, has_attachments, modseq, thread_id, \
     mbox_offset, mbox_length, EXISTS(SELECT 1 FROM bodies b WHERE b.message_id = messages.id)";

fn message_from_row(row: &Row<'_>) -> rusqlite::Result<MessageRow> {
    let refs: Option<String> = row.get(6)?;
    let offset: Option<i64> = row.get(17)?;
    let length: Option<i64> = row.get(18)?;
    let cached: bool = row.get(19)?;
    let body = match (offset, length) {
        (Some(offset), Some(length)) => BodyLocation::Mbox(Span {
            offset: offset as u64,
            length: length as u64,
        }),
        _ if cached => BodyLocation::Cached,
        _ => BodyLocation::None,
    };
    Ok(MessageRow {
        id: row.get(0)?,
        folder_id: row.get(1)?,
        uid: row.get::<_, Option<u32>>(2)?.map(Uid),
        uidl: row.get(3)?,
        envelope: Envelope {
            message_id: row.get(4)?,
            in_reply_to: row.get(5)?,
            references: refs
                .map(|r| r.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default(),
            date: row.get(7)?,
            from: row.get(8)?,
            to: row.get(9)?,
            cc: row.get(10)?,
            subject: row.get(11)?,
            size: row.get::<_, i64>(13)? as u64,
            has_attachments: row.get(14)?,
        },
        flags: Flags(row.get::<_, u8>(12)?),
        modseq: row.get::<_, Option<i64>>(15)?.map(|m| m as u64),
        thread_id: row.get(16)?,
        body,
    })
}

fn folder_from_row(row: &Row<'_>) -> rusqlite::Result<FolderRow> {
    let delimiter: Option<String> = row.get(3)?;
    let role: Option<String> = row.get(4)?;
    let mbox: Option<String> = row.get(5)?;
    Ok(FolderRow {
        id: row.get(0)?,
        account_id: row.get(1)?,
        name: row.get(2)?,
        delimiter: delimiter.and_then(|d| d.chars().next()),
        role: role.as_deref().and_then(FolderRole::parse),
        mbox_path: mbox.map(PathBuf::from),
        sync: SyncState {
            uidvalidity: row.get(6)?,
            uidnext: row.get(7)?,
            highestmodseq: row.get::<_, Option<i64>>(8)?.map(|m| m as u64),
        },
        mbox: MboxState {
            scanned: row.get(11)?,
            append_from: row.get::<_, Option<i64>>(12)?.map(|v| v as u64),
            rewrite: row.get::<_, Option<String>>(13)?.map(PathBuf::from),
        },
        total: row.get::<_, i64>(9)? as u64,
        unread: row.get::<_, i64>(10)? as u64,
    })
}

const FOLDER_COLUMNS: &str = "f.id, f.account_id, f.name, f.delimiter, f.role, f.mbox_path, \
     f.uidvalidity, f.uidnext, f.highestmodseq, \
     (SELECT count(*) FROM messages m WHERE m.folder_id = f.id), \
     (SELECT count(*) FROM messages m WHERE m.folder_id = f.id AND (m.flags & 1) = 0), \
     f.mbox_scanned, f.mbox_append_from, f.mbox_rewrite";

/// When new messages join their conversations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Threads {
    /// As they are inserted.
    Now,
    /// Afterwards, by [`Cache::thread_pending`]: the rows are written with no thread
    /// (`thread_id` NULL). Downloads do this: threading was a third of their cache writes, and
    /// the flat list, reading and search do not need it.
    Later,
}

/// Insert or update messages inside a transaction; returns their ids in order.
fn insert_in(
    tx: &rusqlite::Transaction<'_>,
    folder: i64,
    messages: &[NewMessage],
    threads: Threads,
) -> rusqlite::Result<Vec<i64>> {
    let mut ids = Vec::with_capacity(messages.len());
    // NOTE: while older messages wait for their threads, new ones wait too: messages are
    // threaded in the order of their ids, whenever that happens, so the conversations come
    // out the same as if each had been threaded at once.
    let later = threads == Threads::Later || unthreaded_exist(tx)?;
    // NOTE: a new message's id is chosen here, above every message id and every thread id
    // ever recorded, so its thread is known before the row is written (one insert instead of
    // an insert and an update) and a new conversation never takes the id of an old one whose
    // first message was deleted. The transaction holds the write lock (it is IMMEDIATE), so
    // no other connection can take the same id meanwhile.
    let mut next_id: i64 = tx.query_row(
        "SELECT max(coalesce((SELECT max(id) FROM messages), 0),
                    coalesce((SELECT max(thread_id) FROM thread_refs), 0)) + 1",
        [],
        |r| r.get(0),
    )?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO messages(id, folder_id, uid, uidl, message_id, in_reply_to, refs,
             date, from_addr, to_addrs, cc_addrs, subject, flags, size,
             has_attachments, modseq, mbox_offset, mbox_length, thread_id)
         VALUES (?18, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                 ?17, ?19)
         ON CONFLICT DO NOTHING",
    )?;
    // A message the folder already holds (same UID, UIDL or mbox offset) keeps its id; only
    // what the server can change is updated.
    let mut update = tx.prepare_cached(
        "UPDATE messages SET flags = ?5, modseq = ?6,
             mbox_offset = coalesce(?7, mbox_offset), mbox_length = coalesce(?8, mbox_length)
         WHERE folder_id = ?1 AND (uid = ?2 OR uidl = ?3 OR mbox_offset = ?4)
         RETURNING id",
    )?;
    // NOTE: the message goes to `search_pending`, not to FTS5: indexing is left to
    // `Cache::index_pending`, off the path of a download (schema 4). Only the body's words
    // are written there (NULL: read them from the mbox); the envelope's are in the row. An
    // id found there already belonged to a deleted message never indexed; it is replaced.
    let mut index =
        tx.prepare_cached("INSERT OR REPLACE INTO search_pending(id, body) VALUES (?1, ?2)")?;
    let mut unindex = tx.prepare_cached("DELETE FROM search WHERE rowid = ?1")?;
    let mut add_to_conversation = tx.prepare_cached(ADD_TO_CONVERSATION)?;
    let mut threading = Threading::new(tx)?;
    // NOTE: new rows take the ids from `first_new` up; when they all wait with the same body
    // words (none yet, or "read them from the mbox": every IMAP and POP3 download), one
    // statement queues the whole range after the loop instead of one per message.
    let first_new = next_id;
    let uniform_body: Option<Option<&str>> = match messages.first().map(|m| queued_body(m)) {
        Some(first @ (Some("") | None)) if messages.iter().all(|m| queued_body(m) == first) => {
            Some(first)
        }
        _ => None,
    };
    for m in messages {
        let (uid, uidl) = match &m.remote {
            RemoteId::Uid(u) => (Some(u.0), None),
            RemoteId::Uidl(s) => (None, Some(s.as_str())),
            RemoteId::Local(_) => (None, None),
        };
        let e = &m.envelope;
        let refs = (!e.references.is_empty()).then(|| e.references.join(" "));
        let thread = if later {
            None
        } else {
            Some(threading.find(e)?)
        };
        let thread_id = thread.as_ref().map(|t| t.joined.unwrap_or(next_id));
        // NOTE: no RETURNING: the id is ours already, and RETURNING makes SQLite open a
        // temporary table for every row (a third of the cost of an insert).
        let inserted = insert.execute(params![
            folder,
            uid,
            uidl,
            e.message_id,
            e.in_reply_to,
            refs,
            e.date,
            e.from,
            e.to,
            e.cc,
            e.subject,
            m.flags.0,
            e.size as i64,
            e.has_attachments,
            m.modseq.map(|v| v as i64),
            m.mbox.map(|s| s.offset as i64),
            m.mbox.map(|s| s.length as i64),
            next_id,
            thread_id,
        ])?;
        let id = match inserted {
            1 => {
                let id = next_id;
                next_id += 1;
                if let (Some(thread), Some(thread_id)) = (&thread, thread_id) {
                    record_thread(tx, &mut threading, thread, id)?;
                    add_to_conversation.execute(params![
                        folder,
                        thread_id,
                        id,
                        e.date,
                        !m.flags.contains(Flags::SEEN),
                    ])?;
                }
                if uniform_body.is_some() {
                    ids.push(id);
                    continue;
                }
                id
            }
            _ => {
                let id: i64 = update.query_row(
                    params![
                        folder,
                        uid,
                        uidl,
                        m.mbox.map(|s| s.offset as i64),
                        m.flags.0,
                        m.modseq.map(|v| v as i64),
                        m.mbox.map(|s| s.offset as i64),
                        m.mbox.map(|s| s.length as i64),
                    ],
                    |r| r.get(0),
                )?;
                if m.body_text == BodyText::Unknown {
                    // Only flags or the body's place changed: the indexed words are the same.
                    ids.push(id);
                    continue;
                }
                unindex.execute(params![id])?;
                id
            }
        };
        index.execute(params![id, queued_body(m)])?;
        ids.push(id);
    }
    if let Some(body) = uniform_body
        && next_id > first_new
    {
        tx.prepare_cached(
            "INSERT OR REPLACE INTO search_pending(id, body)
             SELECT id, ?3 FROM messages WHERE id >= ?1 AND id < ?2",
        )?
        .execute(params![first_new, next_id, body])?;
    }
    Ok(ids)
}

/// Keep message `id`'s raw bytes and queue `text` for its search words; `false` (and
/// nothing written) when the cache no longer holds the message.
///
/// NOTE: the words wait for `index_pending` like a download's, replacing any that wait
/// already; an id is either indexed or pending, never both.
fn store_body_in(
    tx: &rusqlite::Transaction<'_>,
    id: i64,
    raw: &[u8],
    text: &str,
) -> rusqlite::Result<bool> {
    let stored = tx
        .prepare_cached(
            "INSERT OR REPLACE INTO bodies(message_id, raw)
             SELECT ?1, ?2 WHERE EXISTS (SELECT 1 FROM messages WHERE id = ?1)",
        )?
        .execute(params![id, raw])?
        == 1;
    if stored {
        tx.prepare_cached("DELETE FROM search WHERE rowid = ?1")?
            .execute(params![id])?;
        tx.prepare_cached("INSERT OR REPLACE INTO search_pending(id, body) VALUES (?1, ?2)")?
            .execute(params![id, text])?;
    }
    Ok(stored)
}

/// Whether any message waits for its thread ([`Threads::Later`]): one index lookup per
/// folder (`messages_by_folder_thread`).
fn unthreaded_exist(conn: &Connection) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM messages
                        WHERE folder_id IN (SELECT id FROM folders) AND thread_id IS NULL)",
    )?
    .query_row([], |r| r.get(0))
}

/// What `search_pending` holds for a message until it is indexed: its body's words, `""`
/// when there are none to add, or NULL when they are read back from its mbox.
fn queued_body(m: &NewMessage) -> Option<&str> {
    match &m.body_text {
        BodyText::Unknown => Some(""),
        BodyText::Text(t) => Some(t.as_str()),
        BodyText::InMbox if m.mbox.is_some() => None,
        BodyText::InMbox => Some(""),
    }
}

/// The words of a message whose body waits in an mbox ([`BodyText::InMbox`]), read before
/// the write lock is taken.
struct MboxWords {
    id: i64,
    body: String,
    /// `None` when the body could not be read: the header's guess stays.
    has_attachments: Option<bool>,
}

/// At most this much of a message is read from an mbox to index its body: the start of a
/// very large one holds its text; the rest is attachments.
const INDEX_READ_LIMIT: u64 = 4 * 1024 * 1024;

/// The first id past the next [`INDEX_CHUNK`] pending messages (`i64::MAX` if fewer wait).
fn index_bound(conn: &Connection) -> rusqlite::Result<i64> {
    Ok(conn
        .query_row(
            "SELECT id FROM search_pending ORDER BY id LIMIT 1 OFFSET ?1",
            params![INDEX_CHUNK - 1],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(i64::MAX))
}

/// At most about this much body text is held for one chunk of [`Cache::index_pending`]: a
/// chunk of very large plain-text messages is cut short and the rest left for the next.
const INDEX_TEXT_BUDGET: usize = 64 * 1024 * 1024;

/// Read and parse the bodies that pending messages up to `bound` keep in their mbox, in id
/// order; with them the bound they cover, lower than `bound` when `budget` bytes of text cut
/// the reading short.
///
/// A body that can't be read (the file gone, a span that is no longer a message) gives no
/// words: the message is still found by its envelope.
fn read_mbox_words(
    conn: &Connection,
    bound: i64,
    budget: usize,
) -> rusqlite::Result<(Vec<MboxWords>, i64)> {
    let mut stmt = conn.prepare_cached(
        "SELECT p.id, f.mbox_path, m.mbox_offset, m.mbox_length, m.message_id
         FROM search_pending p JOIN messages m ON m.id = p.id JOIN folders f ON f.id = m.folder_id
         WHERE p.id <= ?1 AND p.body IS NULL
         ORDER BY p.id",
    )?;
    let rows = stmt
        .query_map(params![bound], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, Option<String>>(4)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut open: Option<(String, File)> = None;
    let mut words = Vec::with_capacity(rows.len());
    let mut held = 0;
    for (id, path, offset, length, message_id) in rows {
        if held >= budget {
            // NOTE: every row up to the last one read is covered; the rest waits.
            let covered = words.last().map_or(bound, |w: &MboxWords| w.id);
            return Ok((words, covered));
        }
        let raw = match (path, offset, length) {
            (Some(path), Some(offset), Some(length)) if offset >= 0 && length >= 0 => {
                if open.as_ref().is_none_or(|(p, _)| *p != path) {
                    open = File::open(&path).ok().map(|f| (path.clone(), f));
                }
                let span = Span {
                    offset: offset as u64,
                    length: (length as u64).min(INDEX_READ_LIMIT),
                };
                open.as_mut().and_then(|(p, file)| {
                    crate::store::mbox::read_span(file, Path::new(p), span).ok()
                })
            }
            _ => None,
        };
        let found = raw.map(|raw| crate::render::index_words(&raw));
        // NOTE: the file is read outside the cache's transactions; should another process
        // have rewritten it in between (an expunge), the span may hold another message. Its
        // words are not taken for this one's.
        let found = found.filter(|w| w.message_id == message_id);
        let (body, has_attachments) = found
            .map(|w| (w.body, Some(w.has_attachments)))
            .unwrap_or_default();
        held += body.len();
        words.push(MboxWords {
            id,
            body,
            has_attachments,
        });
    }
    Ok((words, bound))
}

/// Index the pending messages up to `bound`, with the bodies `from_mbox` read for those that
/// wait for theirs; returns how many rows left the queue.
///
/// Words of messages deleted before their turn are dropped, not indexed. A message queued
/// with its body from an mbox after `from_mbox` was read stays for the next round.
fn index_chunk(
    tx: &rusqlite::Transaction<'_>,
    bound: i64,
    from_mbox: &[MboxWords],
) -> rusqlite::Result<usize> {
    // NOTE: a contentless FTS5 table does not refuse a rowid it holds already; the cache keeps
    // an id either indexed or waiting, never both (see `insert_in` and `store_body`).
    let mut one = tx.prepare_cached(
        "INSERT INTO search(rowid, subject, sender, recipients, body)
         SELECT m.id, m.subject, m.from_addr, m.to_addrs || ' ' || m.cc_addrs, ?2
         FROM search_pending p JOIN messages m ON m.id = p.id
         WHERE p.id = ?1 AND p.body IS NULL",
    )?;
    let mut attachments = tx.prepare_cached(
        "UPDATE messages SET has_attachments = ?2 WHERE id = ?1 AND has_attachments IS NOT ?2",
    )?;
    let mut done =
        tx.prepare_cached("DELETE FROM search_pending WHERE id = ?1 AND body IS NULL")?;
    let mut n = 0;
    for w in from_mbox {
        if one.execute(params![w.id, w.body])? == 1
            && let Some(has) = w.has_attachments
        {
            attachments.execute(params![w.id, has])?;
        }
        n += done.execute(params![w.id])?;
    }
    // NOTE: one statement puts the rest of the chunk into FTS5. Rows of schema 4 carry the
    // envelope's words themselves; newer ones leave them to the message row.
    tx.execute(
        "INSERT INTO search(rowid, subject, sender, recipients, body)
         SELECT p.id, coalesce(p.subject, m.subject), coalesce(p.sender, m.from_addr),
                coalesce(p.recipients, m.to_addrs || ' ' || m.cc_addrs), p.body
         FROM search_pending p JOIN messages m ON m.id = p.id
         WHERE p.id <= ?1 AND p.body IS NOT NULL",
        params![bound],
    )?;
    n += tx.execute(
        "DELETE FROM search_pending WHERE id <= ?1
         AND (body IS NOT NULL OR id NOT IN (SELECT id FROM messages))",
        params![bound],
    )?;
    Ok(n)
}

/// Put message `id` into a thread, JWZ style, incrementally.
///
/// Every Message-ID the message names (its own, its References, its In-Reply-To) is looked up
/// in `thread_refs`. None known: the message starts a thread (its id is the thread id). One or
/// more known: it joins them, and if it links threads that were separate so far (a reply that
/// arrived before its parent, or a missing middle message), they are merged into the oldest.
/// Ids of messages not (yet) held are recorded too: they are JWZ's empty containers, and let
/// two replies to a missing parent share a thread. Each step is an indexed lookup.
fn assign_thread(tx: &rusqlite::Transaction<'_>, id: i64, e: &Envelope) -> rusqlite::Result<()> {
    let mut threading = Threading::new(tx)?;
    let thread = threading.find(e)?;
    tx.prepare_cached("UPDATE messages SET thread_id = ?1 WHERE id = ?2")?
        .execute(params![thread.joined.unwrap_or(id), id])?;
    record_thread(tx, &mut threading, &thread, id)
}

/// Thread every message of a cache from before threading (schema 1), oldest first.
fn thread_existing(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    let rows = tx
        .prepare("SELECT id, message_id, in_reply_to, refs FROM messages ORDER BY id")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<rusqlite::Result<_>>()?;
    thread_rows(tx, rows)
}

/// How many unthreaded messages [`Cache::thread_pending`] threads per transaction.
const THREAD_CHUNK: u64 = 2_000;

/// Thread the oldest [`THREAD_CHUNK`] messages that wait for it; returns how many.
fn thread_chunk(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<u64> {
    // NOTE: folder by folder, so that messages_by_folder_thread finds the rows.
    let rows: Vec<ThreadIds> = tx
        .prepare_cached(
            "SELECT id, message_id, in_reply_to, refs FROM messages
             WHERE folder_id IN (SELECT id FROM folders) AND thread_id IS NULL
             ORDER BY id LIMIT ?1",
        )?
        .query_map(params![THREAD_CHUNK as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let n = rows.len() as u64;
    thread_rows(tx, rows)?;
    Ok(n)
}

/// A message's id, Message-ID, In-Reply-To and References, as threading reads them.
type ThreadIds = (i64, Option<String>, Option<String>, Option<String>);

/// Give each of `rows` (oldest first) its conversation.
fn thread_rows(tx: &rusqlite::Transaction<'_>, rows: Vec<ThreadIds>) -> rusqlite::Result<()> {
    for (id, message_id, in_reply_to, refs) in rows {
        let e = Envelope {
            message_id,
            in_reply_to,
            references: refs
                .map(|r| r.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default(),
            ..Envelope::default()
        };
        assign_thread(tx, id, &e)?;
    }
    Ok(())
}

/// The conversations a message's ids (its own, References, In-Reply-To) already belong to.
struct ThreadLookup<'e> {
    names: Vec<&'e str>,
    /// The conversation it joins: the oldest of those found.
    joined: Option<i64>,
    /// Other conversations it links to the joined one (they merge).
    merged: Vec<i64>,
}

/// The statements threading runs for every message, prepared once per transaction rather
/// than looked up in the statement cache for each message.
struct Threading<'c> {
    lookup: rusqlite::CachedStatement<'c>,
    record: rusqlite::CachedStatement<'c>,
}

impl<'c> Threading<'c> {
    fn new(tx: &'c rusqlite::Transaction<'_>) -> rusqlite::Result<Self> {
        Ok(Threading {
            lookup: tx.prepare_cached("SELECT thread_id FROM thread_refs WHERE message_id = ?1")?,
            record: tx.prepare_cached(
                "INSERT INTO thread_refs(message_id, thread_id) VALUES (?1, ?2)
                 ON CONFLICT(message_id) DO UPDATE SET thread_id = excluded.thread_id",
            )?,
        })
    }

    fn find<'e>(&mut self, e: &'e Envelope) -> rusqlite::Result<ThreadLookup<'e>> {
        let mut names: Vec<&'e str> = Vec::with_capacity(e.references.len() + 2);
        for n in e
            .message_id
            .iter()
            .chain(e.references.iter())
            .chain(e.in_reply_to.iter())
        {
            let n = n.trim();
            if !n.is_empty() && !names.contains(&n) {
                names.push(n);
            }
        }
        let mut threads: Vec<i64> = Vec::new();
        for n in &names {
            if let Some(t) = self.lookup.query_row(params![n], |r| r.get(0)).optional()?
                && !threads.contains(&t)
            {
                threads.push(t);
            }
        }
        let joined = threads.iter().copied().min();
        let merged = threads.into_iter().filter(|t| Some(*t) != joined).collect();
        Ok(ThreadLookup {
            names,
            joined,
            merged,
        })
    }
}

/// Record message `id`'s place in its conversation: merge the conversations it links and map
/// its ids to the conversation.
fn record_thread(
    tx: &rusqlite::Transaction<'_>,
    threading: &mut Threading<'_>,
    found: &ThreadLookup<'_>,
    id: i64,
) -> rusqlite::Result<()> {
    let thread = found.joined.unwrap_or(id);
    for other in &found.merged {
        // NOTE: folder by folder, so messages_by_folder_thread finds the rows.
        tx.prepare_cached(
            "UPDATE messages SET thread_id = ?1
             WHERE folder_id IN (SELECT id FROM folders) AND thread_id = ?2",
        )?
        .execute(params![thread, other])?;
        tx.prepare_cached("UPDATE thread_refs SET thread_id = ?1 WHERE thread_id = ?2")?
            .execute(params![thread, other])?;
    }
    for n in &found.names {
        threading.record.execute(params![n, thread])?;
    }
    Ok(())
}

/// One conversation in a folder, as the threaded list shows it collapsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadSummary {
    /// The thread id (a message's own id when it is alone).
    pub thread_id: i64,
    /// The newest message of the thread in this folder.
    pub newest: i64,
    /// How many of the thread's messages are in this folder.
    pub count: u64,
    /// How many of them are unread.
    pub unread: u64,
}

/// The cache of one mailbag profile.
pub struct Cache {
    conn: Connection,
    path: PathBuf,
    /// Held for the life of a writer: the profile lock.
    _lock: Option<File>,
    /// Opened with [`Cache::open_read_only`].
    read_only: bool,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").field("path", &self.path).finish()
    }
}

/// The cache file's name inside the data directory.
pub const CACHE_FILE: &str = "cache.sqlite3";
/// The profile lock's name inside the data directory.
pub const LOCK_FILE: &str = "lock";

/// A profile whose lock is taken and whose cache is not opened yet (see [`Cache::claim`]).
#[derive(Debug)]
pub struct Claimed {
    lock: File,
    path: PathBuf,
}

impl Claimed {
    /// Open (creating or upgrading) the cache of the claimed profile.
    pub fn open(self) -> Result<Cache, CacheError> {
        let conn = Connection::open(&self.path).map_err(|source| CacheError::Sqlite {
            path: self.path.display().to_string(),
            source,
        })?;
        let mut cache = Cache {
            conn,
            path: self.path,
            _lock: Some(self.lock),
            read_only: false,
        };
        cache.configure(true)?;
        cache.migrate()?;
        Ok(cache)
    }
}

impl Cache {
    /// Open the profile in `data_dir` for writing: take the profile lock, create or upgrade.
    pub fn open(data_dir: &Path) -> Result<Cache, CacheError> {
        Cache::claim(data_dir)?.open()
    }

    /// Take the profile lock of `data_dir` (creating the directory), so that the cache can be
    /// opened later or on another thread: a new cache's creation takes a dozen fsyncs, which
    /// `mailbag sync` overlaps with connecting.
    pub fn claim(data_dir: &Path) -> Result<Claimed, CacheError> {
        let io = |source| CacheError::Io {
            path: data_dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(io)?;
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(data_dir.join(LOCK_FILE))
            .map_err(io)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(CacheError::InUse {
                    path: data_dir.display().to_string(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        Ok(Claimed {
            lock,
            path: data_dir.join(CACHE_FILE),
        })
    }

    /// Open the profile in `data_dir` for reading only, alongside a running writer.
    ///
    /// A profile that has never been written answers as an empty cache.
    pub fn open_read_only(data_dir: &Path) -> Result<Cache, CacheError> {
        let path = data_dir.join(CACHE_FILE);
        if !path.exists() {
            let mut cache = Cache::open_in_memory()?;
            cache.path = path;
            return Ok(cache);
        }
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| CacheError::Sqlite {
            path: path.display().to_string(),
            source,
        })?;
        let cache = Cache {
            conn,
            path,
            _lock: None,
            read_only: true,
        };
        cache.configure(false)?;
        let version = cache.schema_version()?;
        if version > MIGRATIONS.len() as i64 {
            return Err(CacheError::TooNew {
                path: cache.path.display().to_string(),
                found: version,
                known: MIGRATIONS.len() as i64,
            });
        }
        Ok(cache)
    }

    /// A private cache in memory (tests, the demo account).
    pub fn open_in_memory() -> Result<Cache, CacheError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|source| CacheError::Sqlite {
            path: path.display().to_string(),
            source,
        })?;
        let mut cache = Cache {
            conn,
            path,
            _lock: None,
            read_only: false,
        };
        cache.configure(true)?;
        cache.migrate()?;
        Ok(cache)
    }

    /// Another connection to the same cache file, for another task of this process.
    ///
    /// The engine gives each account task its own connection and the UI reads through yet
    /// another. The profile lock is not taken again: this process already holds it through
    /// `self` (and a read-only cache opens another read-only one). SQLite's WAL mode lets the
    /// connections read while one writes; writers wait for each other (`busy_timeout`).
    pub fn open_another(&self) -> Result<Cache, CacheError> {
        if self.path == Path::new(":memory:") {
            return Err(CacheError::InMemory);
        }
        let flags = if self.read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
        };
        let conn = Connection::open_with_flags(&self.path, flags).map_err(|source| {
            CacheError::Sqlite {
                path: self.path.display().to_string(),
                source,
            }
        })?;
        let cache = Cache {
            conn,
            path: self.path.clone(),
            _lock: None,
            read_only: self.read_only,
        };
        cache.configure(!self.read_only)?;
        Ok(cache)
    }

    /// Stop fsyncing at each commit on this connection (`synchronous = NORMAL`), for a
    /// connection that writes only copies of what a server holds (the IMAP initial sync's
    /// headers). Commits stay atomic and the cache consistent; a power loss may undo the
    /// last of them, and the next sync fetches those again. The first commit with full
    /// durability on any connection (the folder's sync state, written after the download)
    /// syncs the write-ahead log, and with it everything written here before.
    pub fn relax_durability(&self) -> Result<(), CacheError> {
        self.conn
            .execute_batch("PRAGMA synchronous = NORMAL;")
            .map_err(|e| self.err(e))
    }

    /// Where the cache lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, source: rusqlite::Error) -> CacheError {
        CacheError::Sqlite {
            path: self.path.display().to_string(),
            source,
        }
    }

    fn configure(&self, writer: bool) -> Result<(), CacheError> {
        let sql = if writer {
            // NOTE: synchronous=FULL makes every commit durable (the WAL is fsynced), also
            // across a power loss: a POP3 batch's UIDLs must be on disk before its DELEs are
            // sent, or a lost commit would mean a message downloaded twice. Commits are
            // batched (hundreds of messages each), so this costs a few fsyncs per sync.
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA temp_store = MEMORY; \
             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;"
        } else {
            "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;"
        };
        self.conn.execute_batch(sql).map_err(|e| self.err(e))?;
        if writer {
            // NOTE: the last connection to close would copy the whole WAL into the database
            // and fsync it, on the way out of every `mailbag sync` (10 ms after a large
            // download). The WAL is durable as it is; the next writer's automatic checkpoint
            // (every 1,000 pages) copies it instead, and the next open reads it back.
            self.conn
                .set_db_config(
                    rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
                    true,
                )
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    fn schema_version(&self) -> Result<i64, CacheError> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    fn migrate(&mut self) -> Result<(), CacheError> {
        let version = self.schema_version()?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(CacheError::TooNew {
                path: self.path.display().to_string(),
                found: version,
                known,
            });
        }
        if version == known {
            return Ok(());
        }
        // NOTE: all pending migrations in one transaction: one durable commit for a new
        // cache instead of one per step, and an upgrade either happens whole or not at all.
        // The threading of an old cache belongs to it: committed apart, a crash in between
        // would leave a current schema with unthreaded messages that no list shows.
        self.transaction(|tx| {
            for sql in MIGRATIONS.iter().skip(version as usize) {
                tx.execute_batch(sql)?;
            }
            if version == 1 {
                thread_existing(tx)?;
            }
            tx.pragma_update(None, "user_version", known)
        })
    }

    /// Forget everything: accounts, folders, messages, queue, history, search index.
    ///
    /// The demo uses this to start every session from its bundled mbox afresh.
    pub fn clear_all(&mut self) -> Result<(), CacheError> {
        self.transaction(|tx| {
            tx.execute_batch(
                "DELETE FROM search; DELETE FROM search_pending; DELETE FROM thread_refs;
                 DELETE FROM bodies;
                 DELETE FROM pending_ops; DELETE FROM pop3_uidls; DELETE FROM folder_threads;
                 DELETE FROM messages;
                 DELETE FROM folders; DELETE FROM accounts;",
            )
        })
    }

    // ---- accounts -------------------------------------------------------------------------

    /// The id of the account `name`, creating it if new.
    pub fn ensure_account(&mut self, name: &str, protocol: &str) -> Result<i64, CacheError> {
        self.conn
            .execute(
                "INSERT INTO accounts(name, protocol) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET protocol = excluded.protocol
                 WHERE protocol IS NOT excluded.protocol",
                params![name, protocol],
            )
            .map_err(|e| self.err(e))?;
        self.conn
            .query_row(
                "SELECT id FROM accounts WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// Every account in the cache, by name.
    pub fn accounts(&self) -> Result<Vec<AccountRow>, CacheError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, name, protocol FROM accounts ORDER BY name")
            .map_err(|e| self.err(e))?;
        stmt.query_map([], |r| {
            Ok(AccountRow {
                id: r.get(0)?,
                name: r.get(1)?,
                protocol: r.get(2)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }

    /// The account with this id.
    pub fn account_by_id(&self, id: i64) -> Result<Option<AccountRow>, CacheError> {
        Ok(self.accounts()?.into_iter().find(|a| a.id == id))
    }

    /// The account called `name`, if the cache knows it.
    pub fn account(&self, name: &str) -> Result<Option<AccountRow>, CacheError> {
        Ok(self.accounts()?.into_iter().find(|a| a.name == name))
    }

    // ---- folders --------------------------------------------------------------------------

    /// The id of `info.name` in `account`, creating it or updating its delimiter and role.
    pub fn ensure_folder(&mut self, account: i64, info: &FolderInfo) -> Result<i64, CacheError> {
        let ids = self.ensure_folders(account, std::slice::from_ref(info))?;
        ids.first()
            .copied()
            .ok_or_else(|| self.err(rusqlite::Error::QueryReturnedNoRows))
    }

    /// [`Cache::ensure_folder`] for a whole folder list, in one transaction (one durable
    /// commit rather than one per folder); ids in the order given.
    pub fn ensure_folders(
        &mut self,
        account: i64,
        infos: &[FolderInfo],
    ) -> Result<Vec<i64>, CacheError> {
        self.transaction(|tx| {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO folders(account_id, name, delimiter, role) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(account_id, name)
                 DO UPDATE SET delimiter = excluded.delimiter, role = excluded.role
                 WHERE delimiter IS NOT excluded.delimiter OR role IS NOT excluded.role",
            )?;
            let mut id =
                tx.prepare_cached("SELECT id FROM folders WHERE account_id = ?1 AND name = ?2")?;
            let mut ids = Vec::with_capacity(infos.len());
            for info in infos {
                let delimiter = info.delimiter.map(|c| c.to_string());
                let role = info.role.map(FolderRole::as_str);
                upsert.execute(params![account, info.name, delimiter, role])?;
                ids.push(id.query_row(params![account, info.name], |r| r.get(0))?);
            }
            Ok(ids)
        })
    }

    /// Record which mbox file holds a folder's messages.
    pub fn set_folder_mbox(&mut self, folder: i64, path: &Path) -> Result<(), CacheError> {
        self.conn
            .execute(
                "UPDATE folders SET mbox_path = ?2 WHERE id = ?1",
                params![folder, path.to_string_lossy()],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The folders of `account`, INBOX first, then by name; with total and unread counts.
    pub fn folders(&self, account: i64) -> Result<Vec<FolderRow>, CacheError> {
        let sql = format!(
            "SELECT {FOLDER_COLUMNS} FROM folders f WHERE f.account_id = ?1
             ORDER BY upper(f.name) <> 'INBOX', f.name"
        );
        let mut stmt = self.conn.prepare_cached(&sql).map_err(|e| self.err(e))?;
        stmt.query_map(params![account], folder_from_row)
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }

    /// One folder by id.
    pub fn folder(&self, id: i64) -> Result<Option<FolderRow>, CacheError> {
        let sql = format!("SELECT {FOLDER_COLUMNS} FROM folders f WHERE f.id = ?1");
        self.conn
            .query_row(&sql, params![id], folder_from_row)
            .optional()
            .map_err(|e| self.err(e))
    }

    /// One folder of `account` by name.
    pub fn folder_by_name(
        &self,
        account: i64,
        name: &str,
    ) -> Result<Option<FolderRow>, CacheError> {
        let sql = format!(
            "SELECT {FOLDER_COLUMNS} FROM folders f WHERE f.account_id = ?1 AND f.name = ?2"
        );
        self.conn
            .query_row(&sql, params![account, name], folder_from_row)
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Forget a folder and everything in it (it was deleted on the server).
    pub fn delete_folder(&mut self, folder: i64) -> Result<(), CacheError> {
        self.transaction(|tx| {
            tx.execute(
                "DELETE FROM search WHERE rowid IN (SELECT id FROM messages WHERE folder_id = ?1)",
                params![folder],
            )?;
            tx.execute(
                "DELETE FROM folder_threads WHERE folder_id = ?1",
                params![folder],
            )?;
            tx.execute("DELETE FROM folders WHERE id = ?1", params![folder])?;
            Ok(())
        })
    }

    /// Rename a folder (it was renamed on the server), keeping its messages.
    pub fn rename_folder(&mut self, folder: i64, new_name: &str) -> Result<(), CacheError> {
        self.conn
            .execute(
                "UPDATE folders SET name = ?2 WHERE id = ?1",
                params![folder, new_name],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Save a folder's IMAP sync state.
    pub fn set_sync_state(&mut self, folder: i64, state: SyncState) -> Result<(), CacheError> {
        self.set_sync_states(&[(folder, state)])
    }

    /// Save the IMAP sync state of several folders in one transaction.
    pub fn set_sync_states(&mut self, states: &[(i64, SyncState)]) -> Result<(), CacheError> {
        if states.is_empty() {
            return Ok(());
        }
        self.transaction(|tx| {
            let mut update = tx.prepare_cached(
                "UPDATE folders SET uidvalidity = ?2, uidnext = ?3, highestmodseq = ?4
                 WHERE id = ?1",
            )?;
            for (folder, state) in states {
                update.execute(params![
                    folder,
                    state.uidvalidity,
                    state.uidnext,
                    state.highestmodseq.map(|m| m as i64)
                ])?;
            }
            Ok(())
        })
    }

    /// Drop every cached message of a folder (its UIDVALIDITY changed) and reset its state.
    pub fn clear_folder(&mut self, folder: i64) -> Result<u64, CacheError> {
        self.transaction(|tx| {
            tx.execute(
                "DELETE FROM search WHERE rowid IN (SELECT id FROM messages WHERE folder_id = ?1)",
                params![folder],
            )?;
            // NOTE: the folder's conversation rows go at once rather than one trigger per row.
            tx.execute(
                "DELETE FROM folder_threads WHERE folder_id = ?1",
                params![folder],
            )?;
            let n = tx.execute("DELETE FROM messages WHERE folder_id = ?1", params![folder])?;
            tx.execute(
                "UPDATE folders SET uidvalidity = NULL, uidnext = NULL, highestmodseq = NULL
                 WHERE id = ?1",
                params![folder],
            )?;
            Ok(n as u64)
        })
    }

    // ---- messages -------------------------------------------------------------------------

    /// Insert messages into a folder in one transaction; returns their new ids in order.
    ///
    /// A message whose remote id the folder already holds is updated in place (flags, modseq,
    /// body location) and keeps its id, so a repeated sync never duplicates.
    pub fn insert_messages(
        &mut self,
        folder: i64,
        messages: &[NewMessage],
    ) -> Result<Vec<i64>, CacheError> {
        self.transaction(|tx| insert_in(tx, folder, messages, Threads::Now))
    }

    /// [`Cache::insert_messages`] for a download from a server: the messages join their
    /// conversations afterwards, in [`Cache::thread_pending`], not in this transaction.
    pub fn insert_download(
        &mut self,
        folder: i64,
        messages: &[NewMessage],
    ) -> Result<Vec<i64>, CacheError> {
        self.transaction(|tx| insert_in(tx, folder, messages, Threads::Later))
    }

    /// Whether any message waits for [`Cache::thread_pending`].
    pub fn has_unthreaded(&self) -> Result<bool, CacheError> {
        unthreaded_exist(&self.conn).map_err(|e| self.err(e))
    }

    /// Thread every message a download left without a conversation ([`Threads::Later`]),
    /// oldest first, a chunk per transaction so that other writers are not held up; returns
    /// how many. A read-only cache cannot: it does nothing (its threaded list shows what is
    /// threaded; the flat list shows everything).
    pub fn thread_pending(&self) -> Result<u64, CacheError> {
        // NOTE: no write transaction (and no wait for the write lock) when nothing waits: the
        // threaded list calls this on every reload, the engine after every sync.
        if self.read_only || !self.has_unthreaded()? {
            return Ok(0);
        }
        let mut done = 0;
        loop {
            // NOTE: IMMEDIATE, as in index_pending: the rows are read and written under one
            // write lock, so no other writer threads the same messages meanwhile.
            let tx = rusqlite::Transaction::new_unchecked(
                &self.conn,
                rusqlite::TransactionBehavior::Immediate,
            )
            .map_err(|e| self.err(e))?;
            let n = thread_chunk(&tx).map_err(|e| self.err(e))?;
            tx.commit().map_err(|e| self.err(e))?;
            done += n;
            if n < THREAD_CHUNK {
                return Ok(done);
            }
        }
    }

    /// Record a POP3 download batch in one transaction: the messages (already durable in the
    /// mbox), their UIDLs in the account's history, and the new append mark: `append_from` is
    /// where the next batch will start (the end of this one), or `None` when the download is
    /// over (see [`Cache::set_mbox_append_from`]).
    ///
    /// NOTE: one transaction is what makes a crash harmless: either the batch is in both the
    /// index and the history, or in neither (and is downloaded again; the mbox tail is cut).
    /// Moving the mark in the same transaction saves a durable commit per batch.
    pub fn commit_downloads(
        &mut self,
        account: i64,
        folder: i64,
        messages: &[NewMessage],
        now: i64,
        append_from: Option<u64>,
    ) -> Result<Vec<i64>, CacheError> {
        self.transaction(|tx| {
            let before: i64 =
                tx.query_row("SELECT coalesce(max(id), 0) FROM messages", [], |r| {
                    r.get(0)
                })?;
            let ids = insert_in(tx, folder, messages, Threads::Later)?;
            let all_new = ids.first().is_some_and(|&first| first > before)
                && ids.windows(2).all(|w| w[1] == w[0] + 1);
            if let (true, Some(first), Some(last)) = (all_new, ids.first(), ids.last()) {
                // NOTE: the usual case, every row new: their ids are a range of this
                // transaction's own, rows written with exactly these messages' UIDLs, and
                // one statement records those from the rows instead of one statement (and
                // three bound values) per message.
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO pop3_uidls(account_id, uidl, downloaded_at)
                     SELECT ?1, uidl, ?2 FROM messages
                     WHERE id BETWEEN ?3 AND ?4 AND uidl IS NOT NULL",
                )?
                .execute(params![account, now, first, last])?;
            } else {
                let mut history = tx.prepare_cached(
                    "INSERT OR IGNORE INTO pop3_uidls(account_id, uidl, downloaded_at)
                     VALUES (?1, ?2, ?3)",
                )?;
                for m in messages {
                    if let RemoteId::Uidl(u) = &m.remote {
                        history.execute(params![account, u, now])?;
                    }
                }
            }
            tx.execute(
                "UPDATE folders SET mbox_append_from = ?2 WHERE id = ?1",
                params![folder, append_from.map(|l| l as i64)],
            )?;
            Ok(ids)
        })
    }

    /// Index messages found in an existing mbox and mark the file as scanned, in one go.
    pub fn import_mbox(
        &mut self,
        folder: i64,
        messages: &[NewMessage],
    ) -> Result<Vec<i64>, CacheError> {
        self.transaction(|tx| {
            let ids = insert_in(tx, folder, messages, Threads::Now)?;
            tx.execute(
                "UPDATE folders SET mbox_scanned = 1 WHERE id = ?1",
                params![folder],
            )?;
            Ok(ids)
        })
    }

    /// Note that a batch is about to be appended to the folder's mbox from `len` on.
    pub fn set_mbox_append_from(
        &mut self,
        folder: i64,
        len: Option<u64>,
    ) -> Result<(), CacheError> {
        self.conn
            .execute(
                "UPDATE folders SET mbox_append_from = ?2 WHERE id = ?1",
                params![folder, len.map(|l| l as i64)],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The messages a folder holds in its mbox, in file order: (id, span, flags).
    pub fn mbox_messages(&self, folder: i64) -> Result<Vec<(i64, Span, Flags)>, CacheError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, mbox_offset, mbox_length, flags FROM messages
                 WHERE folder_id = ?1 AND mbox_offset IS NOT NULL ORDER BY mbox_offset",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map(params![folder], |r| {
            Ok((
                r.get(0)?,
                Span {
                    offset: r.get::<_, i64>(1)? as u64,
                    length: r.get::<_, i64>(2)? as u64,
                },
                Flags(r.get(3)?),
            ))
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }

    /// Record an mbox rewrite (expunge) before the new file is renamed into place: remove
    /// `removed`, move `moved` to their new spans, and remember the new file's path.
    pub fn begin_mbox_rewrite(
        &mut self,
        folder: i64,
        removed: &[i64],
        moved: &[(i64, Span)],
        new_file: &Path,
    ) -> Result<(), CacheError> {
        self.transaction(|tx| {
            let mut unindex = tx.prepare_cached("DELETE FROM search WHERE rowid = ?1")?;
            let mut delete = tx.prepare_cached("DELETE FROM messages WHERE id = ?1")?;
            for id in removed {
                unindex.execute(params![id])?;
                delete.execute(params![id])?;
            }
            // NOTE: offsets are unique per folder; park them out of the way first so that
            // moving one message onto another's old offset never collides.
            tx.execute(
                "UPDATE messages SET mbox_offset = -1 - mbox_offset
                 WHERE folder_id = ?1 AND mbox_offset IS NOT NULL",
                params![folder],
            )?;
            let mut update = tx.prepare_cached(
                "UPDATE messages SET mbox_offset = ?2, mbox_length = ?3 WHERE id = ?1",
            )?;
            for (id, span) in moved {
                update.execute(params![id, span.offset as i64, span.length as i64])?;
            }
            tx.execute(
                "UPDATE folders SET mbox_rewrite = ?2 WHERE id = ?1",
                params![folder, new_file.to_string_lossy()],
            )?;
            Ok(())
        })
    }

    /// The rewritten mbox is in place: forget the rewrite marker.
    pub fn finish_mbox_rewrite(&mut self, folder: i64) -> Result<(), CacheError> {
        self.conn
            .execute(
                "UPDATE folders SET mbox_rewrite = NULL WHERE id = ?1",
                params![folder],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Forget every message of a folder that lives in its mbox (the file changed under us).
    pub fn forget_mbox_messages(&mut self, folder: i64) -> Result<u64, CacheError> {
        self.transaction(|tx| {
            tx.execute(
                "DELETE FROM search WHERE rowid IN
                 (SELECT id FROM messages WHERE folder_id = ?1 AND mbox_offset IS NOT NULL)",
                params![folder],
            )?;
            let n = tx.execute(
                "DELETE FROM messages WHERE folder_id = ?1 AND mbox_offset IS NOT NULL",
                params![folder],
            )?;
            tx.execute(
                "UPDATE folders SET mbox_scanned = 0, mbox_append_from = NULL WHERE id = ?1",
                params![folder],
            )?;
            Ok(n as u64)
        })
    }

    /// One message by its cache id.
    pub fn message(&self, id: i64) -> Result<Option<MessageRow>, CacheError> {
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?1");
        self.conn
            .query_row(&sql, params![id], message_from_row)
            .optional()
            .map_err(|e| self.err(e))
    }

    /// A window of a folder's messages, newest first: `limit` rows from `offset`.
    pub fn window(
        &self,
        folder: i64,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<MessageRow>, CacheError> {
        // NOTE: find the window's ids on the (folder, date, id) index alone, then read only
        // those rows; skipping 50,000 index entries is cheap, skipping 50,000 rows is not.
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE id IN (
                 SELECT id FROM messages WHERE folder_id = ?1
                 ORDER BY date DESC, id DESC LIMIT ?2 OFFSET ?3)
             ORDER BY date DESC, id DESC"
        );
        let mut stmt = self.conn.prepare_cached(&sql).map_err(|e| self.err(e))?;
        stmt.query_map(
            params![folder, limit as i64, offset as i64],
            message_from_row,
        )
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }

    /// Only the ids of [`Cache::window`]'s rows: the bare index walk, for benchmarks.
    pub fn window_ids(&self, folder: i64, offset: u64, limit: u64) -> Result<Vec<i64>, CacheError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id FROM messages WHERE folder_id = ?1
                 ORDER BY date DESC, id DESC LIMIT ?2 OFFSET ?3",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map(params![folder, limit as i64, offset as i64], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }

    /// Messages by id, in the order given (ids not in the cache are left out).
    pub fn messages(&self, ids: &[i64]) -> Result<Vec<MessageRow>, CacheError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders = vec!["?"; ids.len()].join(",");
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id IN ({placeholders})");
        let mut stmt = self.conn.prepare_cached(&sql).map_err(|e| self.err(e))?;
        let rows: Vec<MessageRow> = stmt
            .query_map(rusqlite::params_from_iter(ids.iter()), message_from_row)
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))?;
        let mut by_id: std::collections::HashMap<i64, MessageRow> =
            rows.into_iter().map(|r| (r.id, r)).collect();
        Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
    }

    /// How many conversations a folder holds.
    pub fn thread_count(&self, folder: i64) -> Result<u64, CacheError> {
        self.conn
            .prepare_cached("SELECT count(*) FROM folder_threads WHERE folder_id = ?1")
            .and_then(|mut s| s.query_row(params![folder], |r| r.get::<_, i64>(0)))
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    /// `limit` conversations of a folder from position `offset`, the one with the newest
    /// message first.
    ///
    /// NOTE: `folder_threads` is kept current by triggers, so this costs what a window of the
    /// flat list costs (an index walk), not a pass over the whole folder.
    pub fn thread_window(
        &self,
        folder: i64,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<ThreadSummary>, CacheError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT thread_id, newest_id, count, unread FROM folder_threads
                 WHERE folder_id = ?1 ORDER BY newest_date DESC, newest_id DESC
                 LIMIT ?2 OFFSET ?3",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map(params![folder, limit as i64, offset as i64], |r| {
            Ok(ThreadSummary {
                thread_id: r.get(0)?,
                newest: r.get(1)?,
                count: r.get::<_, i64>(2)? as u64,
                unread: r.get::<_, i64>(3)? as u64,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }

    /// The position of conversation `thread` in [`Cache::thread_window`]'s order, if the
    /// folder has it.
    pub fn thread_position(&self, folder: i64, thread: i64) -> Result<Option<u64>, CacheError> {
        let newest: Option<(i64, i64)> = self
            .conn
            .prepare_cached(
                "SELECT newest_date, newest_id FROM folder_threads
                 WHERE folder_id = ?1 AND thread_id = ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![folder, thread], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(|e| self.err(e))?;
        let Some((date, id)) = newest else {
            return Ok(None);
        };
        self.conn
            .prepare_cached(
                "SELECT count(*) FROM folder_threads
                 WHERE folder_id = ?1 AND (newest_date, newest_id) > (?2, ?3)",
            )
            .and_then(|mut s| s.query_row(params![folder, date, id], |r| r.get::<_, i64>(0)))
            .map(|n| Some(n as u64))
            .map_err(|e| self.err(e))
    }

    /// The messages of one thread in a folder, oldest first.
    pub fn thread_messages(&self, folder: i64, thread: i64) -> Result<Vec<MessageRow>, CacheError> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages
             WHERE folder_id = ?1 AND thread_id = ?2
             ORDER BY date, id"
        );
        let mut stmt = self.conn.prepare_cached(&sql).map_err(|e| self.err(e))?;
        stmt.query_map(params![folder, thread], message_from_row)
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }

    /// Messages across folders for the command line: newest first, optionally unread only.
    pub fn list(
        &self,
        folders: &[i64],
        unread_only: bool,
        limit: u64,
    ) -> Result<Vec<MessageRow>, CacheError> {
        let placeholders = vec!["?"; folders.len()].join(",");
        let unread = if unread_only {
            " AND (flags & 1) = 0"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE folder_id IN ({placeholders}){unread}
             ORDER BY date DESC, id DESC LIMIT {limit}"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        stmt.query_map(rusqlite::params_from_iter(folders.iter()), message_from_row)
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }

    /// How many messages a folder holds.
    pub fn count(&self, folder: i64) -> Result<u64, CacheError> {
        self.conn
            .query_row(
                "SELECT count(*) FROM messages WHERE folder_id = ?1",
                params![folder],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    /// How many messages of a folder are unread.
    pub fn unread_count(&self, folder: i64) -> Result<u64, CacheError> {
        self.conn
            .query_row(
                "SELECT count(*) FROM messages WHERE folder_id = ?1 AND (flags & 1) = 0",
                params![folder],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    /// Set a message's flags.
    pub fn set_flags(&mut self, id: i64, flags: Flags) -> Result<(), CacheError> {
        let n = self
            .conn
            .execute(
                "UPDATE messages SET flags = ?2 WHERE id = ?1",
                params![id, flags.0],
            )
            .map_err(|e| self.err(e))?;
        if n == 0 {
            return Err(CacheError::NoSuchMessage(id));
        }
        Ok(())
    }

    /// Set flags (and modseq) by UID for many messages of a folder in one transaction.
    pub fn update_flags_by_uid(
        &mut self,
        folder: i64,
        changes: &[(Uid, Flags, Option<u64>)],
    ) -> Result<u64, CacheError> {
        self.transaction(|tx| {
            let mut stmt = tx.prepare_cached(
                "UPDATE messages SET flags = ?3, modseq = coalesce(?4, modseq)
                 WHERE folder_id = ?1 AND uid = ?2 AND flags <> ?3",
            )?;
            let mut changed = 0;
            for (uid, flags, modseq) in changes {
                changed +=
                    stmt.execute(params![folder, uid.0, flags.0, modseq.map(|m| m as i64)])? as u64;
            }
            Ok(changed)
        })
    }

    /// The UIDs a folder holds, ascending.
    pub fn uids(&self, folder: i64) -> Result<Vec<Uid>, CacheError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT uid FROM messages WHERE folder_id = ?1 AND uid IS NOT NULL ORDER BY uid",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map(params![folder], |r| r.get(0).map(Uid))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }

    /// The UIDLs a folder holds.
    pub fn uidls(&self, folder: i64) -> Result<Vec<String>, CacheError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT uidl FROM messages WHERE folder_id = ?1 AND uidl IS NOT NULL")
            .map_err(|e| self.err(e))?;
        stmt.query_map(params![folder], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }

    /// The UIDLs of a folder's messages that are not marked deleted.
    pub fn live_uidls(&self, folder: i64) -> Result<Vec<String>, CacheError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT uidl FROM messages WHERE folder_id = ?1 AND uidl IS NOT NULL
                 AND (flags & 8) = 0",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map(params![folder], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }

    /// Remove messages of a folder by UID (expunged on the server).
    pub fn remove_by_uid(&mut self, folder: i64, uids: &[Uid]) -> Result<u64, CacheError> {
        self.transaction(|tx| {
            let mut unindex = tx.prepare_cached(
                "DELETE FROM search WHERE rowid =
                 (SELECT id FROM messages WHERE folder_id = ?1 AND uid = ?2)",
            )?;
            let mut delete =
                tx.prepare_cached("DELETE FROM messages WHERE folder_id = ?1 AND uid = ?2")?;
            let mut removed = 0;
            for uid in uids {
                unindex.execute(params![folder, uid.0])?;
                removed += delete.execute(params![folder, uid.0])? as u64;
            }
            Ok(removed)
        })
    }

    /// Remove messages by cache id.
    pub fn remove_messages(&mut self, ids: &[i64]) -> Result<u64, CacheError> {
        self.transaction(|tx| {
            let mut unindex = tx.prepare_cached("DELETE FROM search WHERE rowid = ?1")?;
            let mut delete = tx.prepare_cached("DELETE FROM messages WHERE id = ?1")?;
            let mut removed = 0;
            for id in ids {
                unindex.execute(params![id])?;
                removed += delete.execute(params![id])? as u64;
            }
            Ok(removed)
        })
    }

    /// The mbox offsets a folder's messages start at.
    pub fn mbox_offsets(&self, folder: i64) -> Result<HashSet<u64>, CacheError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT mbox_offset FROM messages WHERE folder_id = ?1 AND mbox_offset IS NOT NULL",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map(params![folder], |r| r.get::<_, i64>(0).map(|o| o as u64))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }

    /// Keep a message's raw bytes in the cache (fetched on demand) and index its text.
    pub fn store_body(&mut self, id: i64, raw: &[u8], text: &str) -> Result<(), CacheError> {
        self.message(id)?.ok_or(CacheError::NoSuchMessage(id))?;
        self.transaction(|tx| store_body_in(tx, id, raw, text).map(|_| ()))
    }

    /// [`Cache::store_body`] for several messages in one transaction: `(id, raw bytes,
    /// search text)`. A message no longer in the cache is passed over.
    pub fn store_bodies(&mut self, bodies: &[(i64, Vec<u8>, String)]) -> Result<(), CacheError> {
        if bodies.is_empty() {
            return Ok(());
        }
        self.transaction(|tx| {
            for (id, raw, text) in bodies {
                store_body_in(tx, *id, raw, text)?;
            }
            Ok(())
        })
    }

    /// A message's raw bytes if the cache holds them (not the mbox: see `store::mbox`).
    pub fn cached_body(&self, id: i64) -> Result<Option<Vec<u8>>, CacheError> {
        self.conn
            .query_row(
                "SELECT raw FROM bodies WHERE message_id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// The end of the last message recorded in a folder's mbox (0 if none).
    pub fn mbox_committed_end(&self, folder: i64) -> Result<u64, CacheError> {
        self.conn
            .query_row(
                "SELECT coalesce(max(mbox_offset + mbox_length), 0) FROM messages
                 WHERE folder_id = ?1",
                params![folder],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    /// How many messages wait for their words to be indexed (for tests).
    #[cfg(test)]
    fn pending_index(&self) -> Result<u64, CacheError> {
        self.conn
            .query_row("SELECT count(*) FROM search_pending", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    /// Whether any message waits for its words to be indexed. A read-only cache written by
    /// an older mailbag (before schema 4) has no queue: nothing waits.
    fn has_pending_index(&self) -> Result<bool, CacheError> {
        if self.schema_version()? < 4 {
            return Ok(false);
        }
        self.conn
            .query_row("SELECT EXISTS (SELECT 1 FROM search_pending)", [], |r| {
                r.get(0)
            })
            .map_err(|e| self.err(e))
    }

    /// Index the words of every message downloaded since the last call (see schema 4), a
    /// chunk per transaction so that other writers are not held up; returns how many.
    ///
    /// Bodies kept in an mbox are read and parsed before each chunk's write transaction, so
    /// the write lock is held only for the index's own writes.
    pub fn index_pending(&self) -> Result<u64, CacheError> {
        self.index_pending_within(INDEX_TEXT_BUDGET)
    }

    /// [`Cache::index_pending`], holding about `budget` bytes of body text at a time.
    fn index_pending_within(&self, budget: usize) -> Result<u64, CacheError> {
        if !self.has_pending_index()? {
            // NOTE: no write transaction (and no write lock) when nothing waits.
            return Ok(0);
        }
        let mut done = 0;
        loop {
            let bound = index_bound(&self.conn).map_err(|e| self.err(e))?;
            let (from_mbox, covered) =
                read_mbox_words(&self.conn, bound, budget).map_err(|e| self.err(e))?;
            // NOTE: IMMEDIATE takes the write lock now, not at the first write: a deferred
            // transaction that read first could not upgrade if another connection wrote.
            let tx = rusqlite::Transaction::new_unchecked(
                &self.conn,
                rusqlite::TransactionBehavior::Immediate,
            )
            .map_err(|e| self.err(e))?;
            let n = index_chunk(&tx, covered, &from_mbox).map_err(|e| self.err(e))?;
            tx.commit().map_err(|e| self.err(e))?;
            done += n as u64;
            if covered == i64::MAX || !self.has_pending_index()? {
                return Ok(done);
            }
        }
    }

    /// Ids of messages in a folder whose subject, sender, recipients or cached text match.
    ///
    /// `query` is taken as plain words (every word must match, as a prefix); FTS syntax
    /// characters in it are not interpreted, so user input can never make the query fail.
    /// Words still waiting to be indexed are indexed first; a read-only cache, which cannot,
    /// also matches them as plain substrings.
    pub fn search(&self, folder: i64, query: &str, limit: u64) -> Result<Vec<i64>, CacheError> {
        let words: Vec<&str> = query.split_whitespace().collect();
        let fts: Vec<String> = words
            .iter()
            .map(|w| format!("\"{}\"*", w.replace('"', "\"\"")))
            .collect();
        if fts.is_empty() {
            return Ok(Vec::new());
        }
        let pending = self.has_pending_index()?;
        if pending && (self.read_only || self.index_pending().is_err()) {
            return self.search_with_pending(folder, &fts.join(" "), &words, limit);
        }
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT m.id FROM search s JOIN messages m ON m.id = s.rowid
                 WHERE search MATCH ?1 AND m.folder_id = ?2
                 ORDER BY m.date DESC, m.id DESC LIMIT ?3",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map(params![fts.join(" "), folder, limit as i64], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }

    /// [`Cache::search`] when words wait to be indexed and cannot be: the index, and the
    /// waiting rows matched word by word as case-insensitive substrings.
    fn search_with_pending(
        &self,
        folder: i64,
        fts: &str,
        words: &[&str],
        limit: u64,
    ) -> Result<Vec<i64>, CacheError> {
        let mut sql = String::from(
            "SELECT m.id FROM messages m WHERE m.folder_id = ?2 AND (
                 m.id IN (SELECT rowid FROM search WHERE search MATCH ?1)
                 OR EXISTS (SELECT 1 FROM search_pending p WHERE p.id = m.id",
        );
        let mut patterns: Vec<String> = Vec::with_capacity(words.len());
        for w in words {
            patterns.push(format!(
                "%{}%",
                w.replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            ));
            let n = patterns.len() + 3;
            sql.push_str(&format!(
                " AND (coalesce(p.subject, m.subject) || ' ' || coalesce(p.sender, m.from_addr)
                       || ' ' || coalesce(p.recipients, m.to_addrs || ' ' || m.cc_addrs)
                       || ' ' || coalesce(p.body, '')) LIKE ?{n} ESCAPE '\\'"
            ));
        }
        sql.push_str(")) ORDER BY m.date DESC, m.id DESC LIMIT ?3");
        let mut values: Vec<rusqlite::types::Value> =
            vec![fts.to_string().into(), folder.into(), (limit as i64).into()];
        values.extend(patterns.into_iter().map(rusqlite::types::Value::from));
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        stmt.query_map(rusqlite::params_from_iter(values), |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }

    // ---- the pending-operation queue ------------------------------------------------------

    /// Append an operation to the account's queue; returns its id.
    pub fn enqueue(
        &mut self,
        account: i64,
        message: Option<i64>,
        op: &str,
        now: i64,
    ) -> Result<i64, CacheError> {
        self.conn
            .execute(
                "INSERT INTO pending_ops(account_id, message_id, op, created) VALUES (?1,?2,?3,?4)",
                params![account, message, op, now],
            )
            .map_err(|e| self.err(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// The account's queued operations, oldest first.
    pub fn pending(&self, account: i64) -> Result<Vec<PendingOp>, CacheError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, account_id, message_id, op, attempts, last_error FROM pending_ops
                 WHERE account_id = ?1 ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map(params![account], |r| {
            Ok(PendingOp {
                id: r.get(0)?,
                account_id: r.get(1)?,
                message_id: r.get(2)?,
                op: r.get(3)?,
                attempts: r.get(4)?,
                last_error: r.get(5)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }

    /// Remove an operation that the server has applied.
    pub fn complete(&mut self, op: i64) -> Result<(), CacheError> {
        self.conn
            .execute("DELETE FROM pending_ops WHERE id = ?1", params![op])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Record a failed attempt at an operation, keeping it queued.
    pub fn record_attempt(&mut self, op: i64, error: &str) -> Result<(), CacheError> {
        self.conn
            .execute(
                "UPDATE pending_ops SET attempts = attempts + 1, last_error = ?2 WHERE id = ?1",
                params![op, error],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    // ---- POP3 UIDL history ----------------------------------------------------------------

    /// Whether this account already downloaded the message with `uidl`.
    pub fn uidl_downloaded(&self, account: i64, uidl: &str) -> Result<bool, CacheError> {
        self.conn
            .query_row(
                "SELECT 1 FROM pop3_uidls WHERE account_id = ?1 AND uidl = ?2",
                params![account, uidl],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
            .map_err(|e| self.err(e))
    }

    /// Every UIDL this account downloaded, with the time of download.
    pub fn uidl_history(&self, account: i64) -> Result<Vec<(String, i64)>, CacheError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT uidl, downloaded_at FROM pop3_uidls WHERE account_id = ?1")
            .map_err(|e| self.err(e))?;
        stmt.query_map(params![account], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }

    /// Remember that `uidl` was downloaded at `when`.
    pub fn record_uidl(&mut self, account: i64, uidl: &str, when: i64) -> Result<(), CacheError> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO pop3_uidls(account_id, uidl, downloaded_at)
                 VALUES (?1, ?2, ?3)",
                params![account, uidl, when],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Forget UIDLs the server no longer lists.
    pub fn forget_uidls(&mut self, account: i64, uidls: &[String]) -> Result<(), CacheError> {
        self.transaction(|tx| {
            let mut stmt =
                tx.prepare_cached("DELETE FROM pop3_uidls WHERE account_id = ?1 AND uidl = ?2")?;
            for u in uidls {
                stmt.execute(params![account, u])?;
            }
            Ok(())
        })
    }

    /// Run `f` inside one transaction on the raw connection (for backends' group commits).
    pub fn transaction<T>(
        &mut self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, CacheError> {
        let path = self.path.display().to_string();
        let sqlite = |source| CacheError::Sqlite {
            path: path.clone(),
            source,
        };
        // NOTE: IMMEDIATE takes the write lock at BEGIN: a transaction that read first and
        // wrote later could otherwise fail when another connection wrote in between, and
        // insert_in relies on it to choose new ids.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sqlite)?;
        let value = f(&tx).map_err(sqlite)?;
        tx.commit().map_err(sqlite)?;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;
    use std::collections::HashMap;

    fn msg(uid: u32, date: i64, subject: &str) -> NewMessage {
        NewMessage {
            remote: RemoteId::Uid(Uid(uid)),
            envelope: Envelope {
                message_id: Some(format!("<{uid}@test>")),
                date: Some(date),
                from: "Ann <ann@example.com>".into(),
                subject: subject.into(),
                size: 100,
                ..Envelope::default()
            },
            flags: Flags::default(),
            modseq: None,
            mbox: None,
            body_text: BodyText::Unknown,
        }
    }

    /// The `search_pending` queue: (id, body) in id order.
    fn queued(cache: &Cache) -> Vec<(i64, Option<String>)> {
        cache
            .conn
            .prepare("SELECT id, body FROM search_pending ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    #[test]
    fn new_messages_are_queued_for_indexing_alike_in_uniform_and_mixed_batches() {
        let mut cache = Cache::open_in_memory().unwrap();
        let f = inbox(&mut cache);
        let span = |offset| Some(Span { offset, length: 10 });
        // All alike: queued in one statement after the loop.
        let uniform: Vec<NewMessage> = (1..=3).map(|u| msg(u, 10, "alpha")).collect();
        let first = cache.insert_messages(f, &uniform).unwrap();
        // Mixed (no words yet, and words in an mbox span): queued one by one.
        let mut mixed: Vec<NewMessage> = (4..=6).map(|u| msg(u, 10, "bravo")).collect();
        mixed[1].mbox = span(0);
        mixed[1].body_text = BodyText::InMbox;
        let second = cache.insert_messages(f, &mixed).unwrap();
        let expected: Vec<(i64, Option<String>)> = first
            .iter()
            .chain(&second)
            .enumerate()
            .map(|(i, id)| (*id, (i != 4).then(String::new)))
            .collect();
        assert_eq!(queued(&cache), expected);
        // A message already held is not queued again.
        cache.insert_messages(f, &uniform).unwrap();
        assert_eq!(queued(&cache).len(), 6);
        assert_eq!(cache.index_pending().unwrap(), 6);
        assert_eq!(cache.search(f, "alpha", 10).unwrap(), {
            let mut newest_first = first.clone();
            newest_first.reverse();
            newest_first
        });
    }

    fn inbox(cache: &mut Cache) -> i64 {
        let acct = cache.ensure_account("work", "imap").unwrap();
        cache
            .ensure_folder(
                acct,
                &FolderInfo {
                    name: "INBOX".into(),
                    delimiter: Some('/'),
                    role: Some(FolderRole::Inbox),
                },
            )
            .unwrap()
    }

    #[test]
    fn window_is_newest_first_and_counts_unread() {
        let mut cache = Cache::open_in_memory().unwrap();
        let f = inbox(&mut cache);
        let msgs: Vec<_> = (1..=10).map(|i| msg(i, 1000 + i as i64, "s")).collect();
        cache.insert_messages(f, &msgs).unwrap();
        let w = cache.window(f, 2, 3).unwrap();
        let uids: Vec<u32> = w.iter().map(|m| m.uid.unwrap().0).collect();
        assert_eq!(uids, vec![8, 7, 6]);
        assert_eq!(cache.unread_count(f).unwrap(), 10);
        let id = w[0].id;
        cache.set_flags(id, Flags::SEEN).unwrap();
        assert_eq!(cache.unread_count(f).unwrap(), 9);
        assert_eq!(cache.folders(1).unwrap()[0].unread, 9);
    }

    #[test]
    fn reinserting_the_same_uid_updates_instead_of_duplicating() {
        let mut cache = Cache::open_in_memory().unwrap();
        let f = inbox(&mut cache);
        let a = cache.insert_messages(f, &[msg(7, 1, "a")]).unwrap();
        let mut again = msg(7, 1, "a");
        again.flags = Flags::FLAGGED;
        let b = cache.insert_messages(f, &[again]).unwrap();
        assert_eq!(a, b);
        assert_eq!(cache.count(f).unwrap(), 1);
        assert_eq!(cache.message(a[0]).unwrap().unwrap().flags, Flags::FLAGGED);
    }

    #[test]
    fn search_matches_words_and_survives_fts_syntax() {
        let mut cache = Cache::open_in_memory().unwrap();
        let f = inbox(&mut cache);
        let ids = cache
            .insert_messages(f, &[msg(1, 1, "Quarterly report"), msg(2, 2, "Lunch?")])
            .unwrap();
        assert_eq!(cache.search(f, "quart", 10).unwrap(), vec![ids[0]]);
        assert_eq!(cache.search(f, "ann", 10).unwrap().len(), 2);
        assert!(cache.search(f, "\"AND OR (*", 10).unwrap().is_empty());
        cache
            .store_body(ids[1], b"raw", "sandwiches at noon")
            .unwrap();
        assert_eq!(cache.search(f, "sandwich", 10).unwrap(), vec![ids[1]]);
        cache.remove_by_uid(f, &[Uid(2)]).unwrap();
        assert!(cache.search(f, "sandwich", 10).unwrap().is_empty());
    }

    #[test]
    fn search_words_wait_until_indexed_and_are_never_lost() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = Cache::open(dir.path()).unwrap();
        let f = inbox(&mut cache);
        let ids = cache
            .insert_messages(
                f,
                &[
                    msg(1, 1, "Quarterly report"),
                    msg(2, 2, "Lunch 100% sure"),
                    msg(3, 3, "Gone soon"),
                ],
            )
            .unwrap();
        assert_eq!(cache.pending_index().unwrap(), 3);
        // A message deleted before its turn is dropped from the queue, not indexed.
        cache.remove_messages(&[ids[2]]).unwrap();

        // Another process, reading only, cannot index: it still finds the waiting words.
        let reader = Cache::open_read_only(dir.path()).unwrap();
        assert_eq!(reader.search(f, "QUARTER", 10).unwrap(), vec![ids[0]]);
        assert_eq!(reader.search(f, "100%", 10).unwrap(), vec![ids[1]]);
        assert!(reader.search(f, "1_0", 10).unwrap().is_empty());
        assert!(reader.search(f, "gone", 10).unwrap().is_empty());
        assert_eq!(reader.pending_index().unwrap(), 3);

        // The writer indexes them on its first search.
        assert_eq!(cache.search(f, "quart", 10).unwrap(), vec![ids[0]]);
        assert_eq!(cache.pending_index().unwrap(), 0);
        assert_eq!(cache.search(f, "ann", 10).unwrap(), vec![ids[1], ids[0]]);

        // A body stored later waits in the queue too, and replaces the indexed words.
        cache.store_body(ids[1], b"raw", "sandwiches").unwrap();
        assert_eq!(cache.pending_index().unwrap(), 1);
        assert_eq!(cache.index_pending().unwrap(), 1);
        assert_eq!(reader.search(f, "sandwich", 10).unwrap(), vec![ids[1]]);
        assert_eq!(reader.search(f, "lunch", 10).unwrap(), vec![ids[1]]);

        assert!(reader.search(f, "gone", 10).unwrap().is_empty());
        assert_eq!(cache.pending_index().unwrap(), 0);
    }

    #[test]
    fn words_kept_in_an_mbox_are_read_from_it_when_indexed() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = Cache::open(dir.path()).unwrap();
        let f = inbox(&mut cache);
        let path = dir.path().join("mbox");
        cache.set_folder_mbox(f, &path).unwrap();
        let mut mbox = crate::store::mbox::Mbox::open(&path).unwrap();
        let plain = b"Message-ID: <p@x>\nSubject: Plain\nContent-Type: multipart/mixed; \
boundary=b\n\n--b\nContent-Type: text/plain\n\nzebras at noon\n--b--\n";
        let attached = b"Message-ID: <a@x>\nSubject: Attached\nContent-Type: multipart/report; \
boundary=b\n\n--b\nContent-Type: text/plain\n\nsee the giraffe\n--b\n\
Content-Type: application/pdf; name=a.pdf\n\nPDF\n--b--\n";
        let moved = b"Message-ID: <other@x>\nSubject: Other\nContent-Type: multipart/mixed; \
boundary=b\n\n--b\n\nlions\n--b--\n";
        let mut batch = Vec::new();
        for (uid, raw) in [(1, &plain[..]), (2, &attached[..]), (3, &moved[..])] {
            let span = mbox.append(raw, "a@x", 0).unwrap();
            let mut envelope = crate::render::parse_head(raw).envelope;
            if uid == 3 {
                // The span holds another message than the row (a file rewritten meanwhile).
                envelope.message_id = Some("m3@x".into());
            }
            batch.push(NewMessage {
                remote: RemoteId::Local(span.offset),
                envelope,
                flags: Flags::default(),
                modseq: None,
                mbox: Some(span),
                body_text: BodyText::InMbox,
            });
        }
        mbox.sync().unwrap();
        let ids = cache.insert_messages(f, &batch).unwrap();
        // The header's guesses, until the bodies are read.
        let attachments = |cache: &Cache| {
            ids.iter()
                .map(|&id| cache.message(id).unwrap().unwrap().envelope.has_attachments)
                .collect::<Vec<_>>()
        };
        assert_eq!(attachments(&cache), [true, false, true]);

        // Not yet read: a reader finds the envelope's words only.
        let reader = Cache::open_read_only(dir.path()).unwrap();
        assert_eq!(reader.search(f, "plain", 10).unwrap(), vec![ids[0]]);
        assert!(reader.search(f, "zebras", 10).unwrap().is_empty());

        // A budget of one byte of text holds one body at a time: three rounds, all indexed.
        assert_eq!(cache.index_pending_within(1).unwrap(), 3);
        assert_eq!(cache.pending_index().unwrap(), 0);
        assert_eq!(cache.search(f, "zebra", 10).unwrap(), vec![ids[0]]);
        assert_eq!(cache.search(f, "giraffe", 10).unwrap(), vec![ids[1]]);
        assert!(cache.search(f, "lions", 10).unwrap().is_empty());
        assert_eq!(cache.search(f, "other", 10).unwrap(), vec![ids[2]]);
        // The third could not be read: its guess stays.
        assert_eq!(attachments(&cache), [false, true, true]);
    }

    #[test]
    fn indexing_goes_chunk_by_chunk() {
        let mut cache = Cache::open_in_memory().unwrap();
        let f = inbox(&mut cache);
        let n = INDEX_CHUNK as u32 * 2 + 7;
        let batch: Vec<NewMessage> = (1..=n)
            .map(|u| msg(u, i64::from(u), &format!("word{u}")))
            .collect();
        cache.insert_messages(f, &batch).unwrap();
        assert_eq!(cache.index_pending().unwrap(), u64::from(n));
        assert_eq!(cache.pending_index().unwrap(), 0);
        assert_eq!(cache.search(f, "word4005", 10).unwrap().len(), 1);
        assert_eq!(cache.search(f, "ann", 100_000).unwrap().len(), n as usize);
    }

    #[test]
    fn queue_is_ordered_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut cache = Cache::open(dir.path()).unwrap();
            let acct = cache.ensure_account("work", "imap").unwrap();
            cache.enqueue(acct, Some(1), r#"{"a":1}"#, 0).unwrap();
            let second = cache.enqueue(acct, Some(2), r#"{"a":2}"#, 0).unwrap();
            cache.record_attempt(second, "offline").unwrap();
        }
        let mut cache = Cache::open(dir.path()).unwrap();
        let ops = cache.pending(1).unwrap();
        assert_eq!(ops.len(), 2);
        assert_eq!(ops[0].op, r#"{"a":1}"#);
        assert_eq!(ops[1].attempts, 1);
        assert_eq!(ops[1].last_error.as_deref(), Some("offline"));
        cache.complete(ops[0].id).unwrap();
        assert_eq!(cache.pending(1).unwrap().len(), 1);
    }

    #[test]
    fn a_second_writer_is_refused_but_a_reader_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = Cache::open(dir.path()).unwrap();
        let f = inbox(&mut first);
        first.insert_messages(f, &[msg(1, 1, "x")]).unwrap();
        match Cache::open(dir.path()) {
            Err(CacheError::InUse { .. }) => {}
            other => panic!("expected InUse, got {other:?}"),
        }
        let err = Cache::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("already in use"), "{err}");
        let reader = Cache::open_read_only(dir.path()).unwrap();
        assert_eq!(reader.count(f).unwrap(), 1);
        drop(first);
        assert!(Cache::open(dir.path()).is_ok());
    }

    #[test]
    fn threads_join_by_references_in_any_arrival_order() {
        let mut cache = Cache::open_in_memory().unwrap();
        let f = inbox(&mut cache);
        let mut root = msg(1, 10, "plan");
        root.envelope.message_id = Some("root@x".into());
        let mut reply = msg(2, 20, "Re: plan");
        reply.envelope.message_id = Some("reply@x".into());
        reply.envelope.in_reply_to = Some("root@x".into());
        reply.envelope.references = vec!["root@x".into()];
        // A reply to the reply, but naming only its direct parent, arrives first.
        let mut late = msg(3, 30, "Re: plan");
        late.envelope.message_id = Some("late@x".into());
        late.envelope.in_reply_to = Some("reply@x".into());
        let other = msg(4, 40, "unrelated");
        let ids = cache.insert_messages(f, &[late, other, root]).unwrap();
        let t = |c: &Cache, id| c.message(id).unwrap().unwrap().thread_id;
        assert_ne!(t(&cache, ids[0]), t(&cache, ids[2]), "not linked yet");
        let r = cache.insert_messages(f, &[reply]).unwrap();
        assert_eq!(t(&cache, ids[0]), t(&cache, ids[2]));
        assert_eq!(t(&cache, r[0]), t(&cache, ids[2]));
        assert_ne!(t(&cache, ids[1]), t(&cache, ids[2]));
        let threads = cache.thread_window(f, 0, 10).unwrap();
        assert_eq!(threads.len(), 2);
        assert_eq!(cache.thread_count(f).unwrap(), 2);
        assert_eq!(
            cache.thread_position(f, threads[1].thread_id).unwrap(),
            Some(1)
        );
        assert_eq!(
            cache.thread_window(f, 1, 10).unwrap(),
            threads[1..].to_vec()
        );
        assert_eq!(threads[0].newest, ids[1], "newest thread first");
        assert_eq!(threads[1].count, 3);
        assert_eq!(threads[1].newest, ids[0]);
        let members = cache.thread_messages(f, threads[1].thread_id).unwrap();
        let subjects: Vec<u32> = members.iter().map(|m| m.uid.unwrap().0).collect();
        assert_eq!(subjects, vec![1, 2, 3], "oldest first");
        let picked = cache.messages(&[ids[2], 999, ids[0]]).unwrap();
        assert_eq!(
            picked.iter().map(|m| m.id).collect::<Vec<_>>(),
            vec![ids[2], ids[0]]
        );
    }

    /// The conversations of a folder computed from `messages` alone, as `folder_threads`
    /// must hold them: newest (date, id) first.
    fn threads_by_grouping(cache: &Cache, folder: i64) -> Vec<ThreadSummary> {
        let mut by_thread: HashMap<i64, (ThreadSummary, i64)> = HashMap::new();
        let rows: Vec<(i64, i64, i64, u32)> = cache
            .conn
            .prepare(
                "SELECT id, thread_id, coalesce(date, 0), flags FROM messages
                 WHERE folder_id = ?1 AND thread_id IS NOT NULL",
            )
            .unwrap()
            .query_map(params![folder], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        for (id, thread, date, flags) in rows {
            let e = by_thread.entry(thread).or_insert((
                ThreadSummary {
                    thread_id: thread,
                    newest: id,
                    count: 0,
                    unread: 0,
                },
                date,
            ));
            e.0.count += 1;
            e.0.unread += u64::from(flags & 1 == 0);
            if (date, id) > (e.1, e.0.newest) {
                e.0.newest = id;
                e.1 = date;
            }
        }
        let mut out: Vec<(ThreadSummary, i64)> = by_thread.into_values().collect();
        out.sort_by_key(|(t, date)| std::cmp::Reverse((*date, t.newest)));
        out.into_iter().map(|(t, _)| t).collect()
    }

    #[derive(Debug, Clone)]
    enum ThreadOp {
        /// A message dated `date`, replying to the `parent`-th message inserted so far.
        Insert { date: i64, parent: Option<usize> },
        /// Mark the `n`-th inserted message read or unread.
        Seen { n: usize, seen: bool },
        /// Remove the `n`-th inserted message.
        Remove { n: usize },
        /// Move the `n`-th inserted message to the other folder.
        Move { n: usize },
        /// As `Insert`, but as a download: its thread is assigned later.
        Download { date: i64, parent: Option<usize> },
        /// Thread what downloads left unthreaded.
        Thread,
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Whatever happens to the messages, the trigger-kept conversation rows equal a
        /// grouping of the messages, in both folders.
        #[test]
        fn conversation_rows_follow_every_change(ops in proptest::collection::vec(
            proptest::prop_oneof![
                (0i64..20, proptest::option::of(0usize..40))
                    .prop_map(|(date, parent)| ThreadOp::Insert { date, parent }),
                (0usize..40, proptest::bool::ANY).prop_map(|(n, seen)| ThreadOp::Seen { n, seen }),
                (0usize..40).prop_map(|n| ThreadOp::Remove { n }),
                (0usize..40).prop_map(|n| ThreadOp::Move { n }),
                (0i64..20, proptest::option::of(0usize..40))
                    .prop_map(|(date, parent)| ThreadOp::Download { date, parent }),
                proptest::strategy::Just(ThreadOp::Thread),
            ],
            1..60,
        )) {
            let mut cache = Cache::open_in_memory().unwrap();
            let f = inbox(&mut cache);
            let acct = cache.ensure_account("work", "imap").unwrap();
            let other = cache
                .ensure_folder(acct, &FolderInfo { name: "Archive".into(), delimiter: None, role: None })
                .unwrap();
            let mut ids: Vec<i64> = Vec::new();
            let mut uid = 0;
            for op in ops {
                match op {
                    ThreadOp::Insert { date, parent } | ThreadOp::Download { date, parent } => {
                        uid += 1;
                        let mut m = msg(uid, date, "s");
                        if let Some(p) = parent.filter(|p| *p < ids.len()) {
                            m.envelope.in_reply_to = Some(format!("<{}@test>", p + 1));
                        }
                        let new = if matches!(op, ThreadOp::Download { .. }) {
                            cache.insert_download(f, &[m]).unwrap()
                        } else {
                            cache.insert_messages(f, &[m]).unwrap()
                        };
                        ids.extend(new);
                    }
                    ThreadOp::Thread => {
                        cache.thread_pending().unwrap();
                        proptest::prop_assert!(!cache.has_unthreaded().unwrap());
                    }
                    ThreadOp::Seen { n, seen } => {
                        if let Some(id) = ids.get(n)
                            && cache.message(*id).unwrap().is_some()
                        {
                            let flags = if seen { Flags::SEEN } else { Flags::default() };
                            cache.set_flags(*id, flags).unwrap();
                        }
                    }
                    ThreadOp::Remove { n } => {
                        if let Some(id) = ids.get(n) {
                            cache.remove_messages(&[*id]).unwrap();
                        }
                    }
                    ThreadOp::Move { n } => {
                        if let Some(id) = ids.get(n) {
                            cache
                                .conn
                                .execute(
                                    "UPDATE messages SET folder_id = ?2 WHERE id = ?1",
                                    params![id, other],
                                )
                                .unwrap();
                        }
                    }
                }
                for folder in [f, other] {
                    let kept = cache.thread_window(folder, 0, 1000).unwrap();
                    proptest::prop_assert_eq!(&kept, &threads_by_grouping(&cache, folder));
                    proptest::prop_assert_eq!(cache.thread_count(folder).unwrap(), kept.len() as u64);
                }
            }
            cache.thread_pending().unwrap();
            let unthreaded: i64 = cache
                .conn
                .query_row("SELECT count(*) FROM messages WHERE thread_id IS NULL", [], |r| r.get(0))
                .unwrap();
            proptest::prop_assert_eq!(unthreaded, 0);
            for folder in [f, other] {
                let kept = cache.thread_window(folder, 0, 1000).unwrap();
                proptest::prop_assert_eq!(&kept, &threads_by_grouping(&cache, folder));
            }
        }
    }

    /// Which messages (by UID) share a conversation, folder by folder.
    fn conversations_by_uid(cache: &Cache) -> Vec<Vec<u32>> {
        let mut by_thread: HashMap<(i64, i64), Vec<u32>> = HashMap::new();
        let rows: Vec<(i64, i64, u32)> = cache
            .conn
            .prepare("SELECT folder_id, thread_id, uid FROM messages")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        for (folder, thread, uid) in rows {
            by_thread.entry((folder, thread)).or_default().push(uid);
        }
        let mut out: Vec<Vec<u32>> = by_thread
            .into_values()
            .map(|mut v| {
                v.sort_unstable();
                v
            })
            .collect();
        out.sort();
        out
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Threading a download afterwards, in any number of steps and with more mail coming
        /// in between, makes the same conversations as threading each message at once.
        #[test]
        fn threading_later_makes_the_same_conversations(
            parents in proptest::collection::vec(proptest::option::of(0usize..30), 1..40),
            later in proptest::collection::vec(proptest::bool::ANY, 40),
            catch_up in proptest::collection::vec(proptest::bool::ANY, 40),
        ) {
            let mut now = Cache::open_in_memory().unwrap();
            let mut then = Cache::open_in_memory().unwrap();
            let (fa, fb) = (inbox(&mut now), inbox(&mut then));
            for (i, parent) in parents.iter().enumerate() {
                let uid = i as u32 + 1;
                let mut m = msg(uid, 100 - i as i64, "s");
                // A parent later in the list arrives after its reply: conversations merge.
                if let Some(p) = parent.filter(|p| *p != i) {
                    m.envelope.references = vec![format!("<{}@test>", p + 1)];
                }
                now.insert_messages(fa, std::slice::from_ref(&m)).unwrap();
                if later[i] {
                    then.insert_download(fb, &[m]).unwrap();
                } else {
                    then.insert_messages(fb, &[m]).unwrap();
                }
                if catch_up[i] {
                    then.thread_pending().unwrap();
                }
            }
            then.thread_pending().unwrap();
            proptest::prop_assert!(!then.has_unthreaded().unwrap());
            proptest::prop_assert_eq!(conversations_by_uid(&then), conversations_by_uid(&now));
            proptest::prop_assert_eq!(
                then.thread_window(fb, 0, 100).unwrap().len(),
                now.thread_window(fa, 0, 100).unwrap().len()
            );
        }
    }

    #[test]
    fn with_nothing_to_thread_no_write_lock_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = Cache::open(dir.path()).unwrap();
        let f = inbox(&mut cache);
        cache.insert_messages(f, &[msg(1, 10, "threaded")]).unwrap();
        let mut other = cache.open_another().unwrap();
        // Another connection holds the write lock: the list's reload must not wait for it.
        let n = other
            .transaction(|_| Ok(cache.thread_pending()))
            .unwrap()
            .unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn a_download_is_threaded_afterwards_and_counted_then() {
        let mut cache = Cache::open_in_memory().unwrap();
        let f = inbox(&mut cache);
        let root = msg(1, 10, "plan");
        let mut reply = msg(2, 20, "Re: plan");
        reply.envelope.references = vec!["<1@test>".into()];
        let ids = cache.insert_download(f, &[root, reply]).unwrap();
        assert_eq!(cache.count(f).unwrap(), 2, "the flat list has them at once");
        assert_eq!(cache.message(ids[1]).unwrap().unwrap().thread_id, None);
        assert_eq!(cache.thread_count(f).unwrap(), 0);
        assert!(cache.has_unthreaded().unwrap());
        // A message inserted meanwhile waits its turn rather than threading ahead of them.
        let mut late = msg(3, 30, "Re: plan");
        late.envelope.in_reply_to = Some("<2@test>".into());
        let late = cache.insert_messages(f, &[late]).unwrap();
        assert_eq!(cache.message(late[0]).unwrap().unwrap().thread_id, None);
        assert_eq!(cache.thread_pending().unwrap(), 3);
        assert!(!cache.has_unthreaded().unwrap());
        let threads = cache.thread_window(f, 0, 10).unwrap();
        assert_eq!(threads.len(), 1);
        assert_eq!(threads[0].count, 3);
        assert_eq!(threads[0].unread, 3);
        assert_eq!(threads[0].newest, late[0]);
        assert_eq!(threads[0].thread_id, ids[0], "the oldest message names it");
        assert_eq!(cache.thread_pending().unwrap(), 0, "nothing twice");
    }

    #[test]
    fn a_new_message_never_takes_the_conversation_of_a_deleted_one() {
        let mut cache = Cache::open_in_memory().unwrap();
        let f = inbox(&mut cache);
        let mut x = msg(1, 10, "x");
        x.envelope.message_id = Some("x@t".into());
        let x = cache.insert_messages(f, &[x]).unwrap();
        cache.remove_messages(&x).unwrap();
        // SQLite would hand the same rowid out again; the conversation of x lives on in
        // thread_refs, so an unrelated message must not get x's id as its conversation.
        let mut y = msg(2, 20, "y");
        y.envelope.message_id = Some("y@t".into());
        let y = cache.insert_messages(f, &[y]).unwrap();
        let mut z = msg(3, 30, "Re: x");
        z.envelope.message_id = Some("z@t".into());
        z.envelope.in_reply_to = Some("x@t".into());
        let z = cache.insert_messages(f, &[z]).unwrap();
        let t = |id: i64| cache.message(id).unwrap().unwrap().thread_id;
        assert_ne!(t(y[0]), t(z[0]), "y and the reply to x are unrelated");
        assert_eq!(
            t(y[0]),
            Some(y[0]),
            "a new conversation is its first message's id"
        );
        assert_eq!(cache.thread_count(f).unwrap(), 2);
    }

    /// A cache file in `dir` at schema `version`, with account 1 and folder 1, then `rows`.
    fn old_cache(dir: &Path, version: usize, rows: &str) {
        let conn = Connection::open(dir.join(CACHE_FILE)).unwrap();
        for sql in &MIGRATIONS[..version] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", version as i64)
            .unwrap();
        conn.execute_batch(
            "INSERT INTO accounts(id, name, protocol) VALUES (1, 'a', 'imap');
             INSERT INTO folders(id, account_id, name) VALUES (1, 1, 'INBOX');",
        )
        .unwrap();
        conn.execute_batch(rows).unwrap();
    }

    #[test]
    fn relaxed_durability_stays_on_its_own_connection() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let other = cache.open_another().unwrap();
        other.relax_durability().unwrap();
        let level = |c: &Cache| -> i64 {
            c.conn
                .query_row("PRAGMA synchronous", [], |r| r.get(0))
                .unwrap()
        };
        // 1 = NORMAL on the relaxed connection; 2 = FULL everywhere else, new ones included.
        assert_eq!(level(&other), 1);
        assert_eq!(level(&cache), 2);
        assert_eq!(level(&cache.open_another().unwrap()), 2);
    }

    #[test]
    fn a_version_4_cache_keeps_its_order_with_the_oldest_first_indexes() {
        let dir = tempfile::tempdir().unwrap();
        old_cache(
            dir.path(),
            4,
            "INSERT INTO messages(id, folder_id, thread_id, date, flags)
                 VALUES (1, 1, 1, 10, 1), (2, 1, 2, 30, 0), (3, 1, 3, 20, 0), (4, 1, 4, 30, 0);
             INSERT INTO folder_threads(folder_id, thread_id, newest_id, newest_date, count,
                                        unread)
                 VALUES (1, 1, 1, 10, 1, 0), (1, 2, 2, 30, 1, 1), (1, 3, 3, 20, 1, 1),
                        (1, 4, 4, 30, 1, 1);",
        );
        let cache = Cache::open(dir.path()).unwrap();
        assert_eq!(cache.window_ids(1, 0, 10).unwrap(), vec![4, 2, 3, 1]);
        let ids: Vec<i64> = cache
            .window(1, 1, 2)
            .unwrap()
            .iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(ids, vec![2, 3]);
        let threads: Vec<i64> = cache
            .thread_window(1, 0, 10)
            .unwrap()
            .iter()
            .map(|t| t.newest)
            .collect();
        assert_eq!(threads, vec![4, 2, 3, 1]);
        // Both windows walk their index backwards: no sort of the whole folder.
        for sql in [
            "SELECT id FROM messages WHERE folder_id = 1 ORDER BY date DESC, id DESC LIMIT 5",
            "SELECT thread_id FROM folder_threads WHERE folder_id = 1
             ORDER BY newest_date DESC, newest_id DESC LIMIT 5",
        ] {
            let plan: Vec<String> = cache
                .conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map([], |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            assert!(plan.iter().any(|p| p.contains("newest_first")), "{plan:?}");
            assert!(!plan.iter().any(|p| p.contains("TEMP B-TREE")), "{plan:?}");
        }
    }

    #[test]
    fn a_version_2_cache_gets_its_conversation_rows_on_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        old_cache(
            dir.path(),
            2,
            "INSERT INTO messages(id, folder_id, thread_id, date, flags)
                 VALUES (1, 1, 1, 10, 1), (2, 1, 1, 30, 0), (3, 1, 3, 20, 0);",
        );
        let cache = Cache::open(dir.path()).unwrap();
        let threads = cache.thread_window(1, 0, 100).unwrap();
        assert_eq!(threads, threads_by_grouping(&cache, 1));
        assert_eq!(
            threads.first().map(|t| (t.newest, t.count, t.unread)),
            Some((2, 2, 1))
        );
    }

    #[test]
    fn the_upgrade_picks_the_newest_of_messages_sharing_a_date_as_everywhere_else() {
        let dir = tempfile::tempdir().unwrap();
        old_cache(
            dir.path(),
            2,
            "INSERT INTO messages(id, folder_id, thread_id, date, flags)
                 VALUES (1, 1, 1, 20, 0), (2, 1, 1, 20, 0), (3, 1, 1, NULL, 0);",
        );
        let cache = Cache::open(dir.path()).unwrap();
        let threads = cache.thread_window(1, 0, 100).unwrap();
        assert_eq!(threads, threads_by_grouping(&cache, 1));
        assert_eq!(threads.first().map(|t| t.newest), Some(2));
    }

    const VERSION_1_THREAD: &str = "
        INSERT INTO messages(id, folder_id, message_id) VALUES (1, 1, 'p@x');
        INSERT INTO messages(id, folder_id, message_id, in_reply_to, refs)
            VALUES (2, 1, 'c@x', 'p@x', 'p@x');
        INSERT INTO messages(id, folder_id, message_id) VALUES (3, 1, 'o@x');";

    #[test]
    fn a_version_1_cache_is_threaded_once_on_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        old_cache(dir.path(), 1, VERSION_1_THREAD);
        let cache = Cache::open(dir.path()).unwrap();
        let t = |id| cache.message(id).unwrap().unwrap().thread_id;
        assert_eq!(t(1), Some(1));
        assert_eq!(t(2), Some(1));
        assert_eq!(t(3), Some(3));
        assert_eq!(
            cache.thread_window(1, 0, 100).unwrap(),
            threads_by_grouping(&cache, 1),
            "the conversation rows are built on upgrade"
        );
        assert_eq!(cache.thread_count(1).unwrap(), 2);
    }

    #[test]
    fn an_upgrade_that_fails_while_threading_leaves_the_old_version() {
        let dir = tempfile::tempdir().unwrap();
        old_cache(dir.path(), 1, VERSION_1_THREAD);
        let boom = "CREATE TRIGGER boom BEFORE UPDATE OF thread_id ON messages
                    BEGIN SELECT RAISE(ABORT, 'boom'); END;";
        let file = dir.path().join(CACHE_FILE);
        Connection::open(&file)
            .unwrap()
            .execute_batch(boom)
            .unwrap();
        assert!(Cache::open(dir.path()).is_err());
        // Nothing of the upgrade stayed: the next start (here without the fault) does it all.
        let conn = Connection::open(&file).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, 1);
        conn.execute_batch("DROP TRIGGER boom").unwrap();
        drop(conn);
        let cache = Cache::open(dir.path()).unwrap();
        assert_eq!(cache.message(2).unwrap().unwrap().thread_id, Some(1));
        assert_eq!(cache.thread_count(1).unwrap(), 2);
    }

    #[test]
    fn another_connection_shares_the_file_without_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = Cache::open(dir.path()).unwrap();
        let f = inbox(&mut first);
        let mut second = first.open_another().unwrap();
        second.insert_messages(f, &[msg(1, 1, "x")]).unwrap();
        assert_eq!(first.count(f).unwrap(), 1);
        assert!(matches!(
            Cache::open_in_memory().unwrap().open_another(),
            Err(CacheError::InMemory)
        ));
        drop(first);
        // The lock went with the first connection.
        assert!(Cache::open(dir.path()).is_ok());
    }

    #[test]
    fn uidvalidity_reset_clears_a_folder() {
        let mut cache = Cache::open_in_memory().unwrap();
        let f = inbox(&mut cache);
        cache
            .set_sync_state(
                f,
                SyncState {
                    uidvalidity: Some(5),
                    uidnext: Some(3),
                    highestmodseq: Some(9),
                },
            )
            .unwrap();
        cache
            .insert_messages(f, &[msg(1, 1, "a"), msg(2, 2, "b")])
            .unwrap();
        assert_eq!(cache.clear_folder(f).unwrap(), 2);
        assert_eq!(cache.count(f).unwrap(), 0);
        assert_eq!(cache.folder(f).unwrap().unwrap().sync, SyncState::default());
    }

    /// A cache with a POP3 account and its INBOX: (cache, account, folder).
    fn pop_inbox() -> (Cache, i64, i64) {
        let mut cache = Cache::open_in_memory().unwrap();
        let acct = cache.ensure_account("pop", "pop3").unwrap();
        let f = cache
            .ensure_folder(
                acct,
                &FolderInfo {
                    name: "INBOX".into(),
                    delimiter: None,
                    role: Some(FolderRole::Inbox),
                },
            )
            .unwrap();
        (cache, acct, f)
    }

    #[test]
    fn uidl_history_and_mbox_spans() {
        let (mut cache, acct, f) = pop_inbox();
        let mut m = msg(0, 5, "pop");
        m.remote = RemoteId::Uidl("abc".into());
        m.mbox = Some(Span {
            offset: 100,
            length: 50,
        });
        let ids = cache.insert_messages(f, &[m]).unwrap();
        cache.record_uidl(acct, "abc", 5).unwrap();
        assert!(cache.uidl_downloaded(acct, "abc").unwrap());
        assert!(!cache.uidl_downloaded(acct, "abd").unwrap());
        assert_eq!(cache.mbox_committed_end(f).unwrap(), 150);
        let row = cache.message(ids[0]).unwrap().unwrap();
        assert_eq!(row.uidl.as_deref(), Some("abc"));
        assert_eq!(
            row.body,
            BodyLocation::Mbox(Span {
                offset: 100,
                length: 50
            })
        );
        cache.forget_uidls(acct, &["abc".to_string()]).unwrap();
        assert!(!cache.uidl_downloaded(acct, "abc").unwrap());
    }
    /// Every downloaded UIDL lands in the history, whether its batch is all new rows (one
    /// statement from the rows) or holds a message the folder had already (one per message).
    #[test]
    fn a_download_batch_records_every_uidl_new_rows_or_not() {
        let (mut cache, acct, f) = pop_inbox();
        let download = |n: u32, uidl: &str| {
            let mut m = msg(0, i64::from(n), "pop");
            m.envelope.message_id = Some(format!("<{uidl}@test>"));
            m.remote = RemoteId::Uidl(uidl.into());
            m.mbox = Some(Span {
                offset: u64::from(n) * 100,
                length: 50,
            });
            m.body_text = BodyText::InMbox;
            m
        };
        let history = |cache: &Cache| {
            let mut h: Vec<String> = cache
                .uidl_history(acct)
                .unwrap()
                .into_iter()
                .map(|(u, at)| {
                    assert_eq!(at, 7);
                    u
                })
                .collect();
            h.sort();
            h
        };
        cache
            .commit_downloads(acct, f, &[download(0, "a"), download(1, "b")], 7, None)
            .unwrap();
        assert_eq!(history(&cache), ["a", "b"]);
        // An mbox message indexed before (no UIDL) at the offset the next download reuses.
        let mut imported = msg(0, 9, "imported");
        imported.remote = RemoteId::Local(0);
        imported.mbox = Some(Span {
            offset: 200,
            length: 50,
        });
        cache.insert_messages(f, &[imported]).unwrap();
        cache
            .commit_downloads(acct, f, &[download(2, "c"), download(3, "d")], 7, None)
            .unwrap();
        assert_eq!(history(&cache), ["a", "b", "c", "d"]);
        assert_eq!(cache.count(f).unwrap(), 4);
    }
}
