//! The command line: the TUI by default, and scripting commands that read the cache.
//!
//! `mailbag` with no command opens the TUI when stdout is a terminal; otherwise (a pipe, a
//! file, a test) it prints what it printed before the TUI existed: the newest messages, or how
//! to add an account. `mailbag --demo` opens the TUI on the demo account, whose changes (flags,
//! deletions) live in a session cache rebuilt at every start; the demo mbox is never written.
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

use crate::backend::changes::{Change, change_locally};
use crate::backend::imap::ImapBackend;
use crate::backend::local::{self, LocalBackend};
use crate::backend::pop3::Pop3Backend;
use crate::backend::{Backend, Flags, MailBackend, Progress, ProgressPacer};
use crate::config::{Paths, Protocol};
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
    /// Sync accounts with their servers (all by default): pushes local changes, then fetches.
    Sync {
        /// Only these accounts.
        accounts: Vec<String>,
    },
    /// Set or clear flags on messages (by the ids `list` prints).
    Flag {
        /// The messages' ids.
        #[arg(required = true)]
        ids: Vec<i64>,
        /// Mark read.
        #[arg(long, conflicts_with = "unseen")]
        seen: bool,
        /// Mark unread.
        #[arg(long)]
        unseen: bool,
        /// Flag (star).
        #[arg(long, conflicts_with = "unflagged")]
        flagged: bool,
        /// Remove the flag.
        #[arg(long)]
        unflagged: bool,
    },
    /// Move messages to another folder of their account.
    Move {
        /// The messages' ids, then the folder.
        #[arg(required = true, num_args = 2..)]
        args: Vec<String>,
    },
    /// Delete messages (by the ids `list` prints).
    Delete {
        /// The messages' ids.
        #[arg(required = true)]
        ids: Vec<i64>,
    },
    /// Add an account: discovers the server settings, tests the login, saves the account.
    Setup(Box<crate::wizard::scripted::SetupArgs>),
    /// Sign an account in with OAuth2 (auth = "oauth2"): the browser by default, or a code
    /// to enter on another device with --device. The refresh token goes to the OS keyring.
    Login {
        /// The account's name, as in [accounts.NAME].
        account: String,
        /// Show a code to enter on another device instead of using a browser here.
        #[arg(long)]
        device: bool,
        /// Do not start a browser; only print the address to open.
        #[arg(long, conflicts_with = "device")]
        no_browser: bool,
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
    match cli.command {
        Some(Command::Setup(args))
            if !args.non_interactive
                && args.discover.is_none()
                && std::io::stdout().is_terminal()
                && std::io::stdin().is_terminal() =>
        {
            return tui(&paths, false, Some(&args));
        }
        Some(Command::Setup(args)) => return crate::wizard::scripted::run(&paths, *args),
        Some(Command::Sync { accounts }) if !cli.demo => return sync(&paths, &accounts),
        Some(Command::Login {
            account,
            device,
            no_browser,
        }) if !cli.demo => return login(&paths, &account, device, no_browser),
        Some(Command::Flag {
            ids,
            seen,
            unseen,
            flagged,
            unflagged,
        }) if !cli.demo => {
            let mut add = Flags::default();
            let mut remove = Flags::default();
            for (on, off, flag) in [
                (seen, unseen, Flags::SEEN),
                (flagged, unflagged, Flags::FLAGGED),
            ] {
                if on {
                    add.insert(flag);
                }
                if off {
                    remove.insert(flag);
                }
            }
            if add == Flags::default() && remove == Flags::default() {
                return Err(Error::Usage(
                    "say which flag to change: --seen, --unseen, --flagged or --unflagged".into(),
                ));
            }
            return change(&paths, &ids, &Change::Flags { add, remove });
        }
        Some(Command::Delete { ids }) if !cli.demo => {
            return change(&paths, &ids, &Change::Delete);
        }
        Some(Command::Move { mut args }) if !cli.demo => {
            let to = args.pop().unwrap_or_default();
            let ids = args
                .iter()
                .map(|a| {
                    a.parse::<i64>().map_err(|_| {
                        Error::Usage(format!("{} is not a message id", sanitize::line(a)))
                    })
                })
                .collect::<Result<Vec<i64>>>()?;
            return change(&paths, &ids, &Change::Move { to });
        }
        Some(
            Command::Sync { .. }
            | Command::Flag { .. }
            | Command::Delete { .. }
            | Command::Move { .. }
            | Command::Login { .. },
        ) => {
            return Err(Error::Usage(
                "the demo account is read-only: it has no server to sync and keeps no changes"
                    .into(),
            ));
        }
        None if std::io::stdout().is_terminal() => return tui(&paths, cli.demo, None),
        _ => {}
    }
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
                     Add an account with `mailbag setup`, or by writing {} (see \
                     docs/configuration.md).",
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
        Some(
            Command::Sync { .. }
            | Command::Flag { .. }
            | Command::Delete { .. }
            | Command::Move { .. }
            | Command::Setup(_)
            | Command::Login { .. },
        ) => Ok(()),
    };
    match result {
        Ok(()) => Ok(0),
        // A closed pipe (`mailbag list | head`) is not an error.
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        Err(e) => Err(e),
    }
}

/// `mailbag sync`: one full pass over the chosen accounts; progress on stderr if a terminal.
fn sync(paths: &Paths, only: &[String]) -> Result<i32> {
    let config = crate::config::load(&paths.config_file)?;
    for name in only {
        if config.account(name).is_none() {
            return Err(Error::Usage(format!(
                "no account named {} in {}",
                sanitize::line(name),
                paths.config_file.display()
            )));
        }
    }
    if config.accounts.is_empty() {
        return Err(Error::Usage(format!(
            "no accounts configured in {}",
            paths.config_file.display()
        )));
    }
    // NOTE: the profile is claimed first (so that a second mailbag fails before it touches
    // the network), and its cache opened on another thread while the first account
    // connects: creating a new cache takes a dozen fsyncs.
    let claimed = Cache::claim(&paths.data_dir)?;
    let opening = std::thread::spawn(move || claimed.open());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the async runtime", e))?;
    let tty = std::io::stderr().is_terminal();
    let mut failed = 0;
    let mut opening = Some(opening);
    let mut cache_slot: Option<Cache> = None;
    for (name, account) in config
        .accounts
        .iter()
        .filter(|(n, _)| only.is_empty() || only.contains(n))
    {
        let mut backend = match account.protocol {
            Protocol::Pop3 => Backend::Pop3(Box::new(Pop3Backend::new(
                name.as_str(),
                account.clone(),
                &paths.data_dir,
            ))),
            Protocol::Imap => {
                Backend::Imap(Box::new(ImapBackend::new(name.as_str(), account.clone())))
            }
        };
        let started = std::time::Instant::now();
        let mut pacer = ProgressPacer::default();
        let mut show = |p: Progress| {
            if tty && pacer.due(&p) {
                eprint!(
                    "\r{}: {}/{} messages, {:.1} MB   ",
                    sanitize::line(name),
                    p.done,
                    p.total,
                    p.bytes as f64 / 1e6
                );
            }
        };
        let connected = match opening.take() {
            Some(opening) => {
                let connected = runtime.block_on(backend.connect());
                let opened = opening.join().map_err(|_| {
                    Error::io(
                        "cannot open the cache",
                        std::io::Error::other("its thread stopped unexpectedly"),
                    )
                })??;
                cache_slot = Some(opened);
                connected
            }
            None => Ok(()),
        };
        let Some(cache) = cache_slot.as_mut() else {
            return Err(Error::io(
                "cannot open the cache",
                std::io::Error::other("it was not opened"),
            ));
        };
        let result = runtime.block_on(async {
            connected?;
            backend.apply_pending(cache).await?;
            match &mut backend {
                Backend::Imap(imap) => {
                    let r = imap.sync_all(cache, &mut |_, p| show(p)).await;
                    imap.logout().await;
                    r
                }
                other => other.sync_folder(cache, "INBOX", &mut show).await,
            }
        });
        if tty {
            eprint!("\r\x1b[K");
        }
        for w in backend.take_warnings() {
            eprintln!("mailbag: warning: {}", sanitize::line(&w));
        }
        match result {
            Ok(report) => eprintln!(
                "{}: {} new, {} removed, {} flag changes, {:.1} MB in {:.1} s",
                sanitize::line(name),
                report.new_messages,
                report.removed_messages,
                report.flag_changes,
                report.bytes as f64 / 1e6,
                started.elapsed().as_secs_f64()
            ),
            Err(e) => {
                eprintln!(
                    "mailbag: {}: {}",
                    sanitize::line(name),
                    sanitize::line(&e.to_string())
                );
                failed += 1;
            }
        }
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

/// `mailbag flag` / `move` / `delete`: change the cache at once, then push to the server if
/// it can be reached; otherwise the change stays queued for the next sync.
fn change(paths: &Paths, ids: &[i64], change: &Change) -> Result<i32> {
    let config = crate::config::load(&paths.config_file)?;
    let mut cache = Cache::open(&paths.data_dir)?;
    let to_push = change_locally(&mut cache, ids, change, now_unix())?;
    if *change == Change::Delete && to_push.is_empty() {
        eprintln!(
            "marked {} message(s) deleted; the next `mailbag sync` removes them from the mbox",
            ids.len()
        );
    }
    if to_push.is_empty() {
        return Ok(0);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the async runtime", e))?;
    for name in to_push {
        let Some(account) = config.account(&name) else {
            eprintln!(
                "mailbag: {}: not in the config any more; the change stays queued",
                sanitize::line(&name)
            );
            continue;
        };
        let mut backend = ImapBackend::new(name.as_str(), account.clone());
        let result = runtime.block_on(async {
            let r = backend.apply_pending(&mut cache).await;
            backend.logout().await;
            r
        });
        for w in backend.take_warnings() {
            eprintln!("mailbag: warning: {}", sanitize::line(&w));
        }
        if let Err(e) = result {
            eprintln!(
                "mailbag: {}: queued, not sent yet ({}); the next `mailbag sync` sends it",
                sanitize::line(&name),
                sanitize::line(&e.to_string())
            );
        }
    }
    Ok(0)
}

/// Prints the sign-in steps: the address and code on stdout (a script may read them), status
/// lines on stderr. Also used by `mailbag setup --non-interactive --auth oauth2`.
pub(crate) struct PrintPrompt;

impl crate::oauth2::Prompt for PrintPrompt {
    fn show_url(&mut self, url: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "Open this address in a browser to sign in:\n\n  {}\n\nOn a computer without a \
             browser, open it elsewhere and paste the address the browser ends on here.",
            sanitize::line(url)
        );
        let _ = out.flush();
    }

    fn show_device_code(
        &mut self,
        user_code: &str,
        verification_uri: &str,
        verification_uri_complete: Option<&str>,
    ) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "On any device, open {} and enter the code:\n\n  {}\n",
            sanitize::line(verification_uri),
            sanitize::line(user_code)
        );
        if let Some(complete) = verification_uri_complete {
            let _ = writeln!(out, "(or open {})", sanitize::line(complete));
        }
        let _ = out.flush();
    }

    fn status(&mut self, text: &str) {
        eprintln!("{}", sanitize::line(text));
    }
}

/// `mailbag login NAME`: the interactive OAuth2 sign-in for one account.
fn login(paths: &Paths, name: &str, device: bool, no_browser: bool) -> Result<i32> {
    let config = crate::config::load(&paths.config_file)?;
    let Some(account) = config.account(name) else {
        return Err(Error::Usage(format!(
            "no account named {} in {}",
            sanitize::line(name),
            paths.config_file.display()
        )));
    };
    if !account.uses_oauth2() {
        return Err(Error::Usage(format!(
            "account {} does not use OAuth2: set auth = \"oauth2\" and the oauth2_* keys (see \
             docs/oauth2.md)",
            sanitize::line(name)
        )));
    }
    let method = if device {
        crate::oauth2::Method::Device
    } else {
        crate::oauth2::Method::Browser {
            open_browser: !no_browser,
            pasted: Some(stdin_lines()),
        }
    };
    let runtime = runtime()?;
    runtime.block_on(crate::oauth2::sign_in(
        name,
        account,
        method,
        &mut PrintPrompt,
    ))?;
    Ok(0)
}

/// The lines typed or pasted on stdin (a redirect URL from a headless box), for a sign-in.
pub(crate) fn stdin_lines() -> tokio::sync::mpsc::Receiver<String> {
    // NOTE: a thread reads pasted lines; it blocks on stdin and ends with the process.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut line = String::new();
        while matches!(stdin.read_line(&mut line), Ok(n) if n > 0) {
            if tx.blocking_send(std::mem::take(&mut line)).is_err() {
                break;
            }
        }
    });
    rx
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A multi-threaded runtime for the TUI and the engine.
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the async runtime", e))
}

/// The full-screen TUI, on the demo account or the configured ones.
///
/// The setup wizard opens first when no account is configured (or for `mailbag setup`); `A`
/// in the TUI opens it again. After an account is saved the config is read again and the
/// engine restarted on a fresh runtime, so the new account syncs at once like any other.
fn tui(
    paths: &Paths,
    demo: bool,
    setup: Option<&crate::wizard::scripted::SetupArgs>,
) -> Result<i32> {
    use crate::engine::{self, AccountSpec};
    use crate::ui::{self, App, Exit, Options, wizard};
    let mut config = if demo {
        // NOTE: the demo needs no config; the user's [ui] and [keys] apply if it reads.
        crate::config::load(&paths.config_file).unwrap_or_default()
    } else {
        crate::config::load(&paths.config_file)?
    };
    let term_err = |e| Error::io("terminal", e);
    let mut tty = ui::Tty::enter(config.ui.mouse).map_err(term_err)?;
    let mut open_wizard = !demo && (setup.is_some() || config.accounts.is_empty());
    let mut notice = None;
    loop {
        let runtime = runtime()?;
        if open_wizard {
            let mut options = wizard::WizardOptions::new(
                paths.config_file.clone(),
                config.accounts.keys().cloned().collect(),
            );
            if let Some(args) = setup {
                options.discovery.nameserver = args.dns_server;
                options.discovery.trust.ca_file = args.tls_ca_file.clone();
                options.tls_ca_file = args.tls_ca_file.clone();
                options.oauth2_ca_file = args.oauth2_ca_file.clone();
                options.open_browser = !args.no_browser;
                options.email = args.email.clone();
                options.display_name = args.display_name.clone();
                options.account_name = args.name.clone();
            }
            // NOTE: on leaving, a keyring save or a password command may still hold a blocking
            // thread: the runtime is shut down without waiting for it (dropping it would wait).
            let finish = match runtime.block_on(wizard::run(&mut tty, wizard::Wizard::new(options)))
            {
                Ok(finish) => finish,
                Err(e) => {
                    runtime.shutdown_background();
                    return Err(term_err(e));
                }
            };
            match finish {
                wizard::Finish::Saved { notice: n, .. } => {
                    notice = Some(n);
                    config = crate::config::load(&paths.config_file)?;
                }
                wizard::Finish::Cancelled if !config.accounts.is_empty() => {}
                wizard::Finish::Cancelled | wizard::Finish::Quit => {
                    runtime.shutdown_background();
                    return Ok(0);
                }
            }
        }
        let options = Options {
            keymap: ui::keymap::Keymap::from_config(&config.keys)
                .map_err(|e| Error::Usage(format!("keys.{}: {}", e.action, e.message)))?,
            ui: config.ui.clone(),
            download_dir: ui::download_dir(),
            add_account: !demo,
        };
        let (cache, specs, warnings) = if demo {
            let (cache, mbox) = demo_session(paths)?;
            let spec = AccountSpec {
                name: DEMO_ACCOUNT.into(),
                backend: Backend::Local(LocalBackend::new(DEMO_ACCOUNT, mbox)),
            };
            (cache, vec![spec], Vec::new())
        } else {
            let cache = Cache::open(&paths.data_dir)?;
            let (specs, warnings) = engine::accounts_from_config(&config, paths);
            (cache, specs, warnings)
        };
        let result = runtime.block_on(async {
            let (handle, events) = engine::start(specs, &cache)?;
            let mut app = App::new(cache.open_another()?, handle, options)?;
            for w in warnings {
                app.notify(w);
            }
            if let Some(n) = notice.take() {
                app.notify(n);
            }
            ui::run(&mut tty, app, events).await.map_err(term_err)
        });
        drop(cache);
        // NOTE: account tasks may be inside a blocking cache call; do not wait for them (on an
        // error either: dropping the runtime would). The runtime's tasks end here, so a
        // restarted engine never runs beside the old one.
        runtime.shutdown_background();
        match result? {
            Exit::Quit => return Ok(0),
            Exit::AddAccount => open_wizard = true,
        }
    }
}

/// The demo's session cache: `data_dir/demo/`, emptied and filled from the bundled mbox at
/// every start, so flags changed in the TUI last for the session only.
pub fn demo_session(paths: &Paths) -> Result<(Cache, PathBuf)> {
    let mbox = write_demo_mbox(&paths.data_dir)?;
    let mut cache = Cache::open(&paths.data_dir.join("demo"))?;
    cache.clear_all()?;
    let mut backend = LocalBackend::new(DEMO_ACCOUNT, &mbox);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| Error::io("cannot start the async runtime", e))?;
    runtime.block_on(backend.sync_folder(&mut cache, local::INBOX, &mut |_| {}))?;
    Ok((cache, mbox))
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
        (row.flags.contains(Flags::DELETED), 'D'),
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
