//! The command line: the TUI by default, and scripting commands that read the cache.
//!
//! Every command reads the shared cache (opened read-only, so it works beside a running
//! mailbag). Output meant for a terminal passes [`crate::sanitize`]; `--json` prints one object
//! per line, where serde_json escapes every control character; `read --raw` writes exact bytes
//! only when stdout is not a terminal.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use serde::Serialize;

use crate::backend::local::{self, LocalBackend};
use crate::backend::{Flags, MailBackend};
use crate::config::Paths;
use crate::error::{Error, Result};
use crate::render;
use crate::sanitize;
use crate::store::cache::{Cache, MessageRow};

/// The demo mailbox, built into the binary so `--demo` works from anywhere.
pub const DEMO_MBOX: &[u8] = include_bytes!("../assets/demo.mbox");
/// The demo account's name.
pub const DEMO_ACCOUNT: &str = "demo";

/// mailbag: a terminal email client for IMAP and POP3.
#[derive(Debug, Parser)]
#[command(name = "mailbag", version, about, long_about = None)]
pub struct Cli {
    /// Use this config file instead of $XDG_CONFIG_HOME/mailbag/config.toml
    /// (also: MAILBAG_CONFIG).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Use the built-in demo account (no server, no config).
    #[arg(long, global = true)]
    pub demo: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The scripting commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List folders with total and unread counts.
    Folders {
        /// Only this account.
        #[arg(long)]
        account: Option<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// List messages, newest first.
    List {
        /// Only this account.
        #[arg(long)]
        account: Option<String>,
        /// Only this folder (e.g. INBOX).
        #[arg(long)]
        folder: Option<String>,
        /// Only unread messages.
        #[arg(long)]
        unread: bool,
        /// At most this many messages.
        #[arg(long, default_value_t = 50)]
        limit: u64,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Show one message (by the id `list` prints).
    Read {
        /// The message's id in the cache.
        id: i64,
        /// Write the exact raw bytes (only to a pipe or file, never to a terminal).
        #[arg(long)]
        raw: bool,
    },
}

/// Run the command line; returns the process exit code.
pub fn run(cli: Cli) -> Result<i32> {
    let paths = Paths::resolve(cli.config.as_deref());
    let cache = if cli.demo {
        demo_cache(&paths)?
    } else {
        Cache::open_read_only(&paths.data_dir)?
    };
    let mut out = std::io::stdout().lock();
    let result = match cli.command {
        None if cli.demo => list(&cache, &mut out, None, None, false, 50, false),
        None => {
            let config = crate::config::load(&paths.config_file)?;
            if config.accounts.is_empty() {
                writeln!(
                    out,
                    "mailbag has no account yet.\n\n\
                     Try it on the built-in demo account:  mailbag --demo\n\
                     Add an account by writing {} (see docs/configuration.md).",
                    paths.config_file.display()
                )
                .map_err(|e| Error::io("cannot write to stdout", e))
            } else {
                list(&cache, &mut out, None, None, false, 50, false)
            }
        }
        Some(Command::Folders { account, json }) => {
            folders(&cache, &mut out, account.as_deref(), json)
        }
        Some(Command::List {
            account,
            folder,
            unread,
            limit,
            json,
        }) => list(
            &cache,
            &mut out,
            account.as_deref(),
            folder.as_deref(),
            unread,
            limit,
            json,
        ),
        Some(Command::Read { id, raw }) => read(&cache, &mut out, id, raw),
    };
    match result {
        Ok(()) => Ok(0),
        // A closed pipe (`mailbag list | head`) is not an error.
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        Err(e) => Err(e),
    }
}

/// An in-memory cache holding the demo mailbox, written to the data directory for reading.
pub fn demo_cache(paths: &Paths) -> Result<Cache> {
    let path = write_demo_mbox(&paths.data_dir)?;
    let mut cache = Cache::open_in_memory()?;
    let mut backend = LocalBackend::new(DEMO_ACCOUNT, path);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| Error::io("cannot start the async runtime", e))?;
    runtime.block_on(backend.sync_folder(&mut cache, local::INBOX, &mut |_| {}))?;
    Ok(cache)
}

/// Write the built-in demo mbox to `data_dir/demo.mbox` unless it is already there, unchanged.
fn write_demo_mbox(data_dir: &Path) -> Result<PathBuf> {
    let path = data_dir.join("demo.mbox");
    if std::fs::read(&path).is_ok_and(|bytes| bytes == DEMO_MBOX) {
        return Ok(path);
    }
    std::fs::create_dir_all(data_dir)
        .map_err(|e| Error::io(format!("cannot create {}", data_dir.display()), e))?;
    let tmp = data_dir.join(".demo.mbox.tmp");
    std::fs::write(&tmp, DEMO_MBOX)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
    Ok(path)
}

/// Folder ids of the selected account (all when `None`), with account and folder names.
fn select_folders(
    cache: &Cache,
    account: Option<&str>,
    folder: Option<&str>,
) -> Result<HashMap<i64, (String, String)>> {
    let accounts = cache.accounts()?;
    if let Some(name) = account
        && !accounts.iter().any(|a| a.name == name)
    {
        let known: Vec<&str> = accounts.iter().map(|a| a.name.as_str()).collect();
        return Err(Error::Usage(format!(
            "no account named {} in the cache (known: {})",
            sanitize::line(name),
            if known.is_empty() {
                "none; run `mailbag sync` first".to_string()
            } else {
                known.join(", ")
            }
        )));
    }
    let mut selected = HashMap::new();
    for a in accounts
        .iter()
        .filter(|a| account.is_none_or(|n| n == a.name))
    {
        for f in cache.folders(a.id)? {
            if folder.is_none_or(|n| n == f.name) {
                selected.insert(f.id, (a.name.clone(), f.name));
            }
        }
    }
    if let Some(name) = folder
        && selected.is_empty()
    {
        return Err(Error::Usage(format!(
            "no folder named {} in the cache",
            sanitize::line(name)
        )));
    }
    Ok(selected)
}

#[derive(Serialize)]
struct FolderJson<'a> {
    account: &'a str,
    folder: &'a str,
    role: Option<&'static str>,
    total: u64,
    unread: u64,
}

fn folders(cache: &Cache, out: &mut impl Write, account: Option<&str>, json: bool) -> Result<()> {
    let io = |e| Error::io("cannot write to stdout", e);
    for a in cache
        .accounts()?
        .iter()
        .filter(|a| account.is_none_or(|n| n == a.name))
    {
        for f in cache.folders(a.id)? {
            if json {
                let line = serde_json::to_string(&FolderJson {
                    account: &a.name,
                    folder: &f.name,
                    role: f.role.map(|r| r.as_str()),
                    total: f.total,
                    unread: f.unread,
                })
                .map_err(|e| Error::Usage(e.to_string()))?;
                writeln!(out, "{line}").map_err(io)?;
            } else {
                writeln!(
                    out,
                    "{}/{}\t{} messages\t{} unread",
                    sanitize::line(&a.name),
                    sanitize::line(&f.name),
                    f.total,
                    f.unread
                )
                .map_err(io)?;
            }
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct MessageJson<'a> {
    id: i64,
    account: &'a str,
    folder: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uidl: Option<&'a str>,
    message_id: Option<&'a str>,
    date: Option<String>,
    from: &'a str,
    subject: &'a str,
    flags: Vec<&'static str>,
    size: u64,
}

fn list(
    cache: &Cache,
    out: &mut impl Write,
    account: Option<&str>,
    folder: Option<&str>,
    unread: bool,
    limit: u64,
    json: bool,
) -> Result<()> {
    let io = |e| Error::io("cannot write to stdout", e);
    let folders = select_folders(cache, account, folder)?;
    let ids: Vec<i64> = folders.keys().copied().collect();
    let rows = cache.list(&ids, unread, limit)?;
    for row in &rows {
        let (account, folder) = folders
            .get(&row.folder_id)
            .map(|(a, f)| (a.as_str(), f.as_str()))
            .unwrap_or(("", ""));
        if json {
            let line = serde_json::to_string(&message_json(row, account, folder))
                .map_err(|e| Error::Usage(e.to_string()))?;
            writeln!(out, "{line}").map_err(io)?;
        } else {
            writeln!(out, "{}", list_line(row)).map_err(io)?;
        }
    }
    Ok(())
}

fn message_json<'a>(row: &'a MessageRow, account: &'a str, folder: &'a str) -> MessageJson<'a> {
    MessageJson {
        id: row.id,
        account,
        folder,
        uid: row.uid.map(|u| u.0),
        uidl: row.uidl.as_deref(),
        message_id: row.envelope.message_id.as_deref(),
        date: row.envelope.date.map(render::rfc3339),
        from: &row.envelope.from,
        subject: &row.envelope.subject,
        flags: row.flags.names(),
        size: row.envelope.size,
    }
}

/// One line of `mailbag list`: id, date, marks, sender, subject (sanitised).
fn list_line(row: &MessageRow) -> String {
    let date = row
        .envelope
        .date
        .map(|d| {
            let s = render::rfc3339(d);
            s.get(..16).unwrap_or(&s).replace('T', " ")
        })
        .unwrap_or_else(|| "-".repeat(16));
    let marks: String = [
        (!row.flags.contains(Flags::SEEN), 'N'),
        (row.flags.contains(Flags::FLAGGED), 'F'),
        (row.flags.contains(Flags::ANSWERED), 'A'),
        (row.envelope.has_attachments, '@'),
    ]
    .iter()
    .map(|&(on, c)| if on { c } else { ' ' })
    .collect();
    let subject = match row.envelope.subject.trim() {
        "" => "(no subject)",
        s => s,
    };
    format!(
        "{:>6}  {date}  {marks}  {}  {}",
        row.id,
        sanitize::line(&row.envelope.from),
        sanitize::line(subject)
    )
}

fn read(cache: &Cache, out: &mut impl Write, id: i64, raw: bool) -> Result<()> {
    let io = |e| Error::io("cannot write to stdout", e);
    let bytes = local::read_local(cache, id)?;
    if raw {
        if std::io::stdout().is_terminal() {
            return Err(Error::Usage(
                "refusing to write raw message bytes to a terminal: redirect to a file or a pipe"
                    .into(),
            ));
        }
        return out.write_all(&bytes).map_err(io);
    }
    let r = render::render(&bytes);
    for (name, value) in &r.headers {
        writeln!(out, "{name}: {value}").map_err(io)?;
    }
    writeln!(out).map_err(io)?;
    writeln!(out, "{}", r.body.trim_end()).map_err(io)?;
    if !r.attachments.is_empty() {
        writeln!(out, "\nAttachments:").map_err(io)?;
        for a in &r.attachments {
            writeln!(out, "  {}  ({}, {} bytes)", a.name, a.content_type, a.size).map_err(io)?;
        }
    }
    Ok(())
}
