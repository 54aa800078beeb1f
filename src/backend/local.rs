//! A read-only local mbox as an account: serves the demo and exercises the trait.

use super::{BackendError, Capabilities, FolderInfo, MailBackend, Progress, SyncReport};
use crate::store::cache::Cache;

/// A local mbox file, read-only.
pub struct LocalBackend;

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
        Err(BackendError::NotSupported("folders"))
    }
    async fn sync_folder(
        &mut self,
        _cache: &mut Cache,
        _folder: &str,
        _progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<SyncReport, BackendError> {
        Err(BackendError::NotSupported("sync"))
    }
    async fn fetch_raw(&mut self, _cache: &mut Cache, _id: i64) -> Result<Vec<u8>, BackendError> {
        Err(BackendError::NotSupported("fetch"))
    }
}
