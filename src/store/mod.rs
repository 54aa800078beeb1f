//! The store: the single source of truth for what the user sees.
//!
//! - [`cache`]: SQLite (WAL) with folders, messages, flags, sync state, the pending-operation
//!   queue, POP3 UIDL history and an FTS5 search index.
//! - [`mbox`]: mboxrd files holding POP3 and local mail, appended durably.

pub mod cache;
pub mod mbox;
