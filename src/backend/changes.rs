//! Changes the user makes here: applied to the cache at once, queued for the server.
//!
//! Local first (RFC 4549 §3): marking read, flagging, moving and deleting change what the user
//! sees immediately, then wait in the cache's persistent queue until the account's backend
//! pushes them. The queue survives restarts; offline, it simply waits. POP3 and local accounts
//! keep flags only here, so nothing is queued for them: a deletion is carried out on the mbox at
//! the next sync.
//!
//! Undo ([`undo_locally`]) is local first too: the message is back in its folder at once, and a
//! [`QueuedOp::Restore`] follows the move or delete in the queue. If the server never saw the
//! move, the backend drops both; otherwise it finds the message where it went by Message-ID and
//! moves it back.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{BackendError, Flags, FolderRole, RemoteId};
use crate::store::cache::{
    AccountRow, BodyText, Cache, CacheError, FolderRow, MessageRow, NewMessage,
};

/// One change waiting for an IMAP server, as stored in the queue.
///
/// It names the message by folder, UIDVALIDITY and UID, and keeps its Message-ID so that a
/// change recorded before a UIDVALIDITY reset can be re-targeted instead of hitting whatever
/// message now carries that UID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum QueuedOp {
    Flags {
        folder: String,
        uidvalidity: u32,
        uid: u32,
        message_id: Option<String>,
        add: u8,
        remove: u8,
    },
    Move {
        folder: String,
        uidvalidity: u32,
        uid: u32,
        message_id: Option<String>,
        to: String,
    },
    Delete {
        folder: String,
        uidvalidity: u32,
        uid: u32,
        message_id: Option<String>,
    },
    /// Undo a `Move` or `Delete` of the message that was `uid` in `to` (at `uidvalidity`):
    /// bring it back from `folder`, where that change put it (the same folder when the
    /// deletion expunged it).
    Restore {
        folder: String,
        uidvalidity: u32,
        uid: u32,
        message_id: Option<String>,
        to: String,
    },
}

impl QueuedOp {
    pub fn folder(&self) -> &str {
        match self {
            QueuedOp::Flags { folder, .. }
            | QueuedOp::Move { folder, .. }
            | QueuedOp::Delete { folder, .. }
            | QueuedOp::Restore { folder, .. } => folder,
        }
    }
    pub fn uidvalidity(&self) -> u32 {
        match self {
            QueuedOp::Flags { uidvalidity, .. }
            | QueuedOp::Move { uidvalidity, .. }
            | QueuedOp::Delete { uidvalidity, .. }
            | QueuedOp::Restore { uidvalidity, .. } => *uidvalidity,
        }
    }
    pub fn uid(&self) -> u32 {
        match self {
            QueuedOp::Flags { uid, .. }
            | QueuedOp::Move { uid, .. }
            | QueuedOp::Delete { uid, .. }
            | QueuedOp::Restore { uid, .. } => *uid,
        }
    }
    pub fn message_id(&self) -> Option<&str> {
        match self {
            QueuedOp::Flags { message_id, .. }
            | QueuedOp::Move { message_id, .. }
            | QueuedOp::Delete { message_id, .. }
            | QueuedOp::Restore { message_id, .. } => message_id.as_deref(),
        }
    }
    /// The queue's stored form (JSON).
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
    /// Read a stored operation; `None` if it is not one.
    pub fn decode(s: &str) -> Option<QueuedOp> {
        serde_json::from_str(s).ok()
    }
}

/// What the user asked to do to some messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Flags { add: Flags, remove: Flags },
    Move { to: String },
    Delete,
}

/// Whether this `Move` or `Delete` is the one that `restore` (a [`QueuedOp::Restore`]) undoes.
pub fn undoes(restore: &QueuedOp, op: &QueuedOp) -> bool {
    let QueuedOp::Restore {
        to,
        uidvalidity,
        uid,
        ..
    } = restore
    else {
        return false;
    };
    matches!(op, QueuedOp::Move { .. } | QueuedOp::Delete { .. })
        && op.folder() == to
        && op.uidvalidity() == *uidvalidity
        && op.uid() == *uid
}

/// Message `id` with its folder and account.
fn locate(cache: &Cache, id: i64) -> Result<(MessageRow, FolderRow, AccountRow), CacheError> {
    let row = cache.message(id)?.ok_or(CacheError::NoSuchMessage(id))?;
    let folder = cache
        .folder(row.folder_id)?
        .ok_or(CacheError::NoSuchMessage(id))?;
    let account = cache
        .account_by_id(folder.account_id)?
        .ok_or(CacheError::NoSuchMessage(id))?;
    Ok((row, folder, account))
}

/// A message as it was just before a move or delete, so that it can be undone.
#[derive(Debug, Clone)]
pub struct Snapshot {
    row: MessageRow,
    folder: String,
    uidvalidity: Option<u32>,
    /// The account's Trash, where an IMAP deletion moves the message.
    trash: Option<String>,
    imap: bool,
}

/// The messages `ids` as they are now, to undo a change to them later.
pub fn snapshot(cache: &Cache, ids: &[i64]) -> Result<Vec<Snapshot>, BackendError> {
    let mut out = Vec::with_capacity(ids.len());
    for &id in ids {
        let (row, folder, account) = locate(cache, id)?;
        let trash = cache
            .folders(account.id)?
            .into_iter()
            .find(|f| f.role == Some(FolderRole::Trash))
            .map(|f| f.name);
        out.push(Snapshot {
            row,
            folder: folder.name,
            uidvalidity: folder.sync.uidvalidity,
            trash,
            imap: account.protocol == "imap",
        });
    }
    Ok(out)
}

/// Undo `change` (a move or delete) of the messages in `before`, taken with [`snapshot`] just
/// before it: they are back in the cache at once and, for IMAP, a [`QueuedOp::Restore`] is
/// queued. Returns the accounts that have something to push and the folders that changed.
pub fn undo_locally(
    cache: &mut Cache,
    before: &[Snapshot],
    change: &Change,
    now: i64,
) -> Result<(BTreeSet<String>, BTreeSet<i64>), BackendError> {
    let mut to_push = BTreeSet::new();
    let mut folders = BTreeSet::new();
    for snap in before {
        let row = &snap.row;
        folders.insert(row.folder_id);
        if !snap.imap {
            // POP3 and local accounts only marked it deleted.
            if let Change::Delete = change
                && let Some(now_row) = cache.message(row.id)?
            {
                let mut flags = now_row.flags;
                flags.remove(Flags::DELETED);
                cache.set_flags(row.id, flags)?;
            }
            continue;
        }
        let (Some(uidvalidity), Some(uid)) = (snap.uidvalidity, row.uid) else {
            continue;
        };
        let went_to = match change {
            // NOTE: a move to the folder it was in changed nothing (see change_locally), so
            // there is nothing to undo either.
            Change::Move { to } if *to == snap.folder => continue,
            Change::Move { to } => to.clone(),
            Change::Delete => match &snap.trash {
                Some(trash) if *trash != snap.folder => trash.clone(),
                _ => snap.folder.clone(),
            },
            Change::Flags { .. } => continue,
        };
        let folder = cache
            .folder(row.folder_id)?
            .ok_or_else(|| BackendError::NoSuchFolder(snap.folder.clone()))?;
        // NOTE: back under its old UID, which is right if the server never saw the change;
        // otherwise the backend replaces it with the message's new UID when it restores it.
        let ids = cache.insert_messages(
            folder.id,
            &[NewMessage {
                remote: RemoteId::Uid(uid),
                envelope: row.envelope.clone(),
                flags: row.flags,
                modseq: row.modseq,
                mbox: None,
                body_text: BodyText::Unknown,
            }],
        )?;
        let op = QueuedOp::Restore {
            folder: went_to,
            uidvalidity,
            uid: uid.0,
            message_id: row.envelope.message_id.clone(),
            to: snap.folder.clone(),
        };
        cache.enqueue(folder.account_id, ids.first().copied(), &op.encode(), now)?;
        if let Some(account) = cache.account_by_id(folder.account_id)? {
            to_push.insert(account.name);
        }
    }
    Ok((to_push, folders))
}

/// Apply `change` to messages in the cache now and queue it for their servers.
///
/// Returns the names of the accounts that have something new to push.
pub fn change_locally(
    cache: &mut Cache,
    ids: &[i64],
    change: &Change,
    now: i64,
) -> Result<BTreeSet<String>, BackendError> {
    let mut to_push = BTreeSet::new();
    for &id in ids {
        let (row, folder, account) = locate(cache, id)?;
        if account.protocol != "imap" {
            match change {
                Change::Flags { add, remove } => {
                    let mut flags = row.flags;
                    flags.insert(*add);
                    flags.remove(*remove);
                    cache.set_flags(id, flags)?;
                }
                Change::Delete => {
                    let mut flags = row.flags;
                    flags.insert(Flags::DELETED);
                    cache.set_flags(id, flags)?;
                }
                Change::Move { .. } => {
                    return Err(BackendError::NotSupported(
                        "moving messages between folders (this account has one folder)",
                    ));
                }
            }
            continue;
        }
        let (Some(uidvalidity), Some(uid)) = (folder.sync.uidvalidity, row.uid) else {
            return Err(BackendError::NotSupported(
                "changing a message that was never synced",
            ));
        };
        let message_id = row.envelope.message_id.clone();
        let op = match change {
            Change::Flags { add, remove } => {
                let mut flags = row.flags;
                flags.insert(*add);
                flags.remove(*remove);
                cache.set_flags(id, flags)?;
                QueuedOp::Flags {
                    folder: folder.name.clone(),
                    uidvalidity,
                    uid: uid.0,
                    message_id,
                    add: add.0,
                    remove: remove.0,
                }
            }
            Change::Move { to } => {
                if *to == folder.name {
                    continue;
                }
                if cache.folder_by_name(account.id, to)?.is_none() {
                    return Err(BackendError::NoSuchFolder(to.clone()));
                }
                cache.remove_messages(&[id])?;
                QueuedOp::Move {
                    folder: folder.name.clone(),
                    uidvalidity,
                    uid: uid.0,
                    message_id,
                    to: to.clone(),
                }
            }
            Change::Delete => {
                cache.remove_messages(&[id])?;
                QueuedOp::Delete {
                    folder: folder.name.clone(),
                    uidvalidity,
                    uid: uid.0,
                    message_id,
                }
            }
        };
        cache.enqueue(account.id, Some(id), &op.encode(), now)?;
        to_push.insert(account.name);
    }
    Ok(to_push)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_ops_round_trip_through_json() {
        let op = QueuedOp::Move {
            folder: "INBOX".into(),
            uidvalidity: 7,
            uid: 42,
            message_id: Some("a@b".into()),
            to: "Archive".into(),
        };
        let s = op.encode();
        assert!(s.contains("\"op\":\"move\""), "{s}");
        assert_eq!(QueuedOp::decode(&s), Some(op));
        assert_eq!(QueuedOp::decode("{\"op\":\"nope\"}"), None);
    }

    #[test]
    fn undoing_a_move_to_the_same_folder_queues_nothing() {
        use crate::backend::{Envelope, FolderInfo, Uid};
        use crate::store::cache::SyncState;
        let mut cache = Cache::open_in_memory().unwrap();
        let account = cache.ensure_account("work", "imap").unwrap();
        let inbox = cache.ensure_folder(account, &FolderInfo::inbox()).unwrap();
        cache
            .set_sync_state(
                inbox,
                SyncState {
                    uidvalidity: Some(7),
                    uidnext: Some(2),
                    highestmodseq: None,
                },
            )
            .unwrap();
        let ids = cache
            .insert_messages(
                inbox,
                &[NewMessage {
                    remote: RemoteId::Uid(Uid(1)),
                    envelope: Envelope::default(),
                    flags: Flags::DELETED,
                    modseq: None,
                    mbox: None,
                    body_text: BodyText::Unknown,
                }],
            )
            .unwrap();
        let change = Change::Move { to: "INBOX".into() };
        let before = snapshot(&cache, &ids).unwrap();
        assert!(
            change_locally(&mut cache, &ids, &change, 0)
                .unwrap()
                .is_empty()
        );
        let (push, _) = undo_locally(&mut cache, &before, &change, 0).unwrap();
        assert!(push.is_empty(), "{push:?}");
        assert!(cache.pending(account).unwrap().is_empty());
    }
}
