//! A local mbox file as a read-only account: it serves the demo and exercises the trait.
//!
//! Syncing scans the file (RFC 4155 mboxrd, see [`crate::store::mbox`]) and indexes every
//! message not yet in the cache by its byte offset; flags come from the `Status:`/`X-Status:`
//! headers that mutt and others write. Bodies are read back from the file on demand.

use std::path::PathBuf;

use super::{BackendError, Capabilities, FolderInfo, MailBackend, Progress, RemoteId, SyncReport};
use crate::render;
use crate::store::cache::{BodyLocation, BodyText, Cache, NewMessage};
use crate::store::mbox;

/// The one folder a local account has.
pub use super::INBOX;

/// How many messages go into one cache transaction while scanning.
const BATCH: usize = 500;

/// A local mbox file, read-only.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    name: String,
    path: PathBuf,
}

impl LocalBackend {
    /// An account called `name` that reads the mbox at `path`.
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        LocalBackend {
            name: name.into(),
            path: path.into(),
        }
    }

    fn folder_id(&self, cache: &mut Cache) -> Result<i64, BackendError> {
        Ok(super::mbox_account(cache, &self.name, "local", &self.path)?.1)
    }
}

impl MailBackend for LocalBackend {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            folders: false,
            server_flags: false,
            push: false,
            move_messages: false,
            writable: false,
        }
    }

    async fn connect(&mut self) -> Result<(), BackendError> {
        Ok(())
    }

    async fn list_folders(&mut self) -> Result<Vec<FolderInfo>, BackendError> {
        Ok(vec![FolderInfo::inbox()])
    }

    async fn sync_folder(
        &mut self,
        cache: &mut Cache,
        folder: &str,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<SyncReport, BackendError> {
        if folder != INBOX {
            return Err(BackendError::NoSuchFolder(folder.to_string()));
        }
        let folder = self.folder_id(cache)?;
        let file_len = std::fs::metadata(&self.path)
            .map_err(|source| BackendError::Io {
                context: format!("cannot read {}", self.path.display()),
                source,
            })?
            .len();
        let mut report = SyncReport::default();
        // NOTE: if another tool rewrote the file shorter than what we indexed, our offsets mean
        // nothing any more: start over rather than show messages from the wrong bytes.
        if cache.mbox_committed_end(folder)? > file_len {
            report.removed_messages = cache.clear_folder(folder)?;
        }
        let known = cache.mbox_offsets(folder)?;
        let mut batch = Vec::with_capacity(BATCH);
        let mut done = Progress {
            total: file_len,
            ..Progress::default()
        };
        let flush = |cache: &mut Cache, batch: &mut Vec<NewMessage>| {
            let n = batch.len() as u64;
            cache.insert_messages(folder, batch).map(|_| {
                batch.clear();
                n
            })
        };
        let mut failure = None;
        mbox::scan(&self.path, |found| {
            done.bytes = found.span.end();
            done.done += 1;
            if known.contains(&found.span.offset) {
                return Ok(());
            }
            // NOTE: the header only; the body's words are read when the cache indexes them.
            let head = render::parse_head(&found.raw);
            batch.push(NewMessage {
                remote: RemoteId::Local(found.span.offset),
                flags: render::mbox_flags(&found.raw),
                body_text: BodyText::InMbox,
                envelope: head.envelope,
                modseq: None,
                mbox: Some(found.span),
            });
            if batch.len() >= BATCH {
                match flush(cache, &mut batch) {
                    Ok(n) => report.new_messages += n,
                    Err(e) => failure = Some(e),
                }
                progress(done);
            }
            Ok(())
        })?;
        if let Some(e) = failure {
            return Err(e.into());
        }
        report.new_messages += flush(cache, &mut batch)?;
        report.bytes = file_len;
        progress(done);
        Ok(report)
    }

    async fn fetch_raw(&mut self, cache: &mut Cache, id: i64) -> Result<Vec<u8>, BackendError> {
        read_local(cache, id)
    }
}

/// The raw bytes of a message the cache or an mbox holds locally.
pub fn read_local(cache: &Cache, id: i64) -> Result<Vec<u8>, BackendError> {
    let row = cache
        .message(id)?
        .ok_or(crate::store::cache::CacheError::NoSuchMessage(id))?;
    match row.body {
        BodyLocation::Mbox(span) => {
            let folder = cache
                .folder(row.folder_id)?
                .ok_or(crate::store::cache::CacheError::NoSuchMessage(id))?;
            let path = folder
                .mbox_path
                .ok_or(BackendError::NotSupported("reading this message offline"))?;
            Ok(mbox::read_message(&path, span)?)
        }
        BodyLocation::Cached => cache
            .cached_body(id)?
            .ok_or(BackendError::NotSupported("reading this message offline")),
        BodyLocation::None => Err(BackendError::NotSupported("reading this message offline")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Flags;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn syncs_an_existing_mbox_once_and_reads_bytes_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.mbox");
        let first = b"From: a@example.com\nSubject: one\nStatus: RO\n\nFrom the body\n";
        let second = b"From: b@example.com\nSubject: two\n\nsecond\n";
        {
            let mut m = mbox::Mbox::open(&path).unwrap();
            m.append(first, "a@example.com", 0).unwrap();
            m.append(second, "b@example.com", 60).unwrap();
            m.sync().unwrap();
        }
        let mut cache = Cache::open_in_memory().unwrap();
        let mut backend = LocalBackend::new("local", &path);
        let report = block_on(backend.sync_folder(&mut cache, INBOX, &mut |_| {})).unwrap();
        assert_eq!(report.new_messages, 2);
        let again = block_on(backend.sync_folder(&mut cache, INBOX, &mut |_| {})).unwrap();
        assert_eq!(again.new_messages, 0);
        let rows = cache.window(1, 0, 10).unwrap();
        assert_eq!(rows.len(), 2);
        let one = rows.iter().find(|r| r.envelope.subject == "one").unwrap();
        assert_eq!(one.flags, Flags::SEEN);
        let raw = block_on(backend.fetch_raw(&mut cache, one.id)).unwrap();
        assert_eq!(raw, first.to_vec());
        assert_eq!(cache.search(1, "body", 10).unwrap(), vec![one.id]);
    }

    #[test]
    fn a_missing_file_is_a_clear_error() {
        let mut cache = Cache::open_in_memory().unwrap();
        let mut backend = LocalBackend::new("local", "/nonexistent/x.mbox");
        let err = block_on(backend.sync_folder(&mut cache, INBOX, &mut |_| {})).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x.mbox"), "{err}");
    }
}
