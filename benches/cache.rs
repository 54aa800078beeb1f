//! Cache benchmark: the UI's queries on a folder of 100,000 messages.
//!
//! Run with `cargo bench --bench cache`. It builds a cache on disk (in a temporary directory),
//! then times, over many repetitions, the queries the list view makes: a window of 50 rows at
//! offset 50,000 newest first, the first window, and the unread count. The floor it compares
//! against, in the same run, is the bare index walk: the same ORDER BY/LIMIT/OFFSET selecting
//! only the row id, which is the least work SQLite can do to find those 50 rows.
//! Results go into docs/performance.md.

use std::time::Instant;

use mailbag::backend::{Envelope, Flags, FolderInfo, FolderRole, RemoteId, Uid};
use mailbag::store::cache::{Cache, NewMessage};

const MESSAGES: u32 = 100_000;
const REPEAT: usize = 200;

#[path = "common/timing.rs"]
mod timing;

fn time(f: impl FnMut()) -> timing::Stats {
    timing::time(10, REPEAT, f)
}

fn report(name: &str, stats: timing::Stats) {
    timing::report(name, 48, stats);
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut cache = Cache::open(dir.path())?;
    let account = cache.ensure_account("bench", "imap")?;
    let folder = cache.ensure_folder(
        account,
        &FolderInfo {
            name: "INBOX".into(),
            delimiter: Some('/'),
            role: Some(FolderRole::Inbox),
        },
    )?;
    let started = Instant::now();
    let batch: Vec<NewMessage> = (1..=MESSAGES)
        .map(|uid| NewMessage {
            remote: RemoteId::Uid(Uid(uid)),
            envelope: Envelope {
                message_id: Some(format!("<{uid}@bench.example>")),
                date: Some(1_700_000_000 + i64::from(uid) * 37 % 9_000_000),
                from: format!("Sender {} <s{}@example.com>", uid % 500, uid % 500),
                to: "me@example.com".into(),
                subject: format!("Message number {uid} about topic {}", uid % 97),
                size: 2_000 + u64::from(uid % 5_000),
                ..Envelope::default()
            },
            flags: if uid % 3 == 0 {
                Flags::default()
            } else {
                Flags::SEEN
            },
            modseq: None,
            mbox: None,
            body_text: mailbag::store::cache::BodyText::Unknown,
        })
        .collect();
    for chunk in batch.chunks(5_000) {
        cache.insert_messages(folder, chunk)?;
    }
    println!(
        "inserted {MESSAGES} messages in {:.2} s ({:.0} messages/s)",
        started.elapsed().as_secs_f64(),
        f64::from(MESSAGES) / started.elapsed().as_secs_f64()
    );
    // NOTE: since schema 4 the search words wait in `search_pending` after an insert; index
    // them here, timed on their own, so that the insert rate above is not read as including
    // them and the first timed search below does not pay for them.
    let indexing = Instant::now();
    let indexed = cache.index_pending()?;
    println!(
        "indexed {indexed} messages for search in {:.2} s",
        indexing.elapsed().as_secs_f64()
    );

    report(
        "window: 50 rows at offset 50,000, newest first",
        time(|| {
            let rows = cache.window(folder, 50_000, 50).expect("window");
            assert_eq!(rows.len(), 50);
        }),
    );
    report(
        "floor: index walk to the same 50 row ids",
        time(|| {
            let ids = cache.window_ids(folder, 50_000, 50).expect("ids");
            assert_eq!(ids.len(), 50);
        }),
    );
    report(
        "window: first 50 rows",
        time(|| {
            let rows = cache.window(folder, 0, 50).expect("window");
            assert_eq!(rows.len(), 50);
        }),
    );
    report(
        "unread count",
        time(|| {
            assert!(cache.unread_count(folder).expect("unread") > 0);
        }),
    );
    report(
        "search: one word over 100,000 subjects",
        time(|| {
            assert!(
                !cache
                    .search(folder, "topic", 50)
                    .expect("search")
                    .is_empty()
            );
        }),
    );
    Ok(())
}
