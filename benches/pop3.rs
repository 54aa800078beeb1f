//! POP3 benchmark: download 10,000 messages into an mbox, mailbag against its peers and a floor.
//!
//! Run with `cargo bench --bench pop3` (Cargo builds the `mailbag` binary in the same profile
//! for a bench target and hands its path over as `CARGO_BIN_EXE_mailbag`). It starts the test
//! harness's private Dovecot (tests/common), seeds 10,000 messages for alice and then runs, over
//! implicit TLS (RFC 8314 §3.3) on loopback, trusting the harness's certificate:
//!
//! - **floor**: a minimal pipelined client written here (RFC 1939 USER/PASS, UIDL, RETR in
//!   windows as RFC 2449 §6.6 PIPELINING allows), which dot-unstuffs each reply into an mboxrd
//!   file and fsyncs once at the end: the least work that produces the same file;
//! - **mailbag**: `mailbag sync` with a fresh profile, leaving mail on the server;
//! - **getmail6**: `SimplePOP3SSLRetriever` into an `Mboxrd` destination, `delete = false`;
//! - **fetchmail**: `--ssl --sslcertck --keep --uidl`, delivering through `formail` appending to
//!   an mbox.
//!
//! Each client runs as a child process under `/usr/bin/time -f %M` (peak RSS in kB), from a
//! fresh state into its own fresh mbox, [`FAST_RUNS`] times (the floor and mailbag) or [`RUNS`]
//! times (the peers, which take seconds each), interleaved round by round. A run only
//! counts if its mbox then holds exactly the 10,000 seeded Message-IDs. A peer that is not
//! installed and cannot be installed with apt-get is reported as SKIPPED, loudly, never dropped.
//! Results go into docs/performance.md.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use common::{ALICE, Dovecot};

/// How many messages are seeded and must arrive.
const MESSAGES: usize = 10_000;
/// Timed runs per peer (getmail6 and fetchmail take seconds each).
const RUNS: usize = 3;
/// Timed runs of the floor and mailbag, whose ratio is the goal: more, for a steadier median.
const FAST_RUNS: usize = 9;
/// Any single run that takes longer than this is killed and reported as failed.
const RUN_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// Set (to anything) to make the bench binary act as the floor client.
const FLOOR_ENV: &str = "MAILBAG_BENCH_POP3_FLOOR";
/// How many RETRs the floor keeps outstanding at most.
const FLOOR_WINDOW: usize = 64;

fn main() -> ExitCode {
    if std::env::var_os(FLOOR_ENV).is_some() {
        return match floor::main(std::env::args().skip(1).collect()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                let _ = writeln!(io::stderr(), "floor client: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match orchestrate() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(io::stderr(), "pop3 bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The peers and the floor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Client {
    Floor,
    Mailbag,
    Getmail,
    Fetchmail,
}

impl Client {
    const ALL: [Client; 4] = [
        Client::Floor,
        Client::Mailbag,
        Client::Getmail,
        Client::Fetchmail,
    ];

    /// How many timed runs this client gets.
    fn runs(self) -> usize {
        match self {
            Client::Floor | Client::Mailbag => FAST_RUNS,
            Client::Getmail | Client::Fetchmail => RUNS,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Client::Floor => "floor (raw pipelined)",
            Client::Mailbag => "mailbag sync",
            Client::Getmail => "getmail6 (Mboxrd)",
            Client::Fetchmail => "fetchmail (formail mda)",
        }
    }
}

/// What every run needs to know about the server.
struct Server {
    port: u16,
    ca: PathBuf,
    /// Message-IDs that must be in each mbox.
    expected: HashSet<String>,
    /// Size of the seeded messages as Dovecot stores them (CRLF, not dot-stuffed).
    bytes: u64,
    /// When running as root: uid/gid of `nobody`, for getmail6 (which refuses to deliver as root).
    nobody: Option<(u32, u32)>,
    /// The getmail executable (see `MAILBAG_BENCH_GETMAIL`).
    getmail: PathBuf,
}

/// One timed run.
#[derive(Clone, Copy, Debug)]
struct Sample {
    wall: Duration,
    rss_kb: u64,
    /// User plus system CPU time of the client and the children it waited for.
    cpu: Duration,
    /// mailbag only: how long building the search index took afterwards.
    indexed: Option<Duration>,
    /// mailbag only: how long sorting the mail into conversations took afterwards.
    threaded: Option<Duration>,
}

/// The outcome of all runs of one client.
enum Outcome {
    Skipped(String),
    Failed(String),
    Done(Vec<Sample>),
}

fn orchestrate() -> Result<(), String> {
    println!(
        "POP3 benchmark: {MESSAGES} messages over implicit TLS on loopback, {FAST_RUNS} runs of \
         the floor and mailbag, {RUNS} of each peer"
    );
    ensure_tool("/usr/bin/time", "time").map_err(|e| format!("/usr/bin/time is required: {e}"))?;
    let mailbag = PathBuf::from(env!("CARGO_BIN_EXE_mailbag"));
    let fetchmail = ensure_tool("/usr/bin/fetchmail", "fetchmail")
        .and_then(|f| ensure_tool("/usr/bin/formail", "procmail").map(|_| f));
    // NOTE: Debian's getmail6 6.18 loses SIGCHLD now and then (it installs its handler after
    // fork; getmail6/getmail6#226) and aborts after a 60 s wait, so 10,000 one-fork-per-message
    // deliveries rarely finish. MAILBAG_BENCH_GETMAIL points at a newer getmail, e.g. from
    // `python3 -m venv DIR && DIR/bin/pip install getmail6`.
    let getmail = match std::env::var("MAILBAG_BENCH_GETMAIL") {
        Ok(path) if Path::new(&path).is_file() => Ok(PathBuf::from(path)),
        Ok(path) => Err(format!("MAILBAG_BENCH_GETMAIL={path} does not exist")),
        Err(_) => ensure_tool("/usr/bin/getmail", "getmail6"),
    };
    for found in [&getmail, &fetchmail].into_iter().flatten() {
        let out = Command::new(found).arg("--version").output();
        if let Ok(out) = out {
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            let version = text.lines().find(|l| l.contains("mail")).unwrap_or("?");
            println!("{}: {}", found.display(), version.trim());
        }
    }
    for (name, found) in [("getmail6", &getmail), ("fetchmail", &fetchmail)] {
        if let Err(e) = found {
            println!("!!!!! SKIPPED {name}: {e} !!!!!");
        }
    }

    let Some(dovecot) = Dovecot::start() else {
        return Err("dovecot is not installed (apt-get install -y dovecot-pop3d)".into());
    };
    let t = Instant::now();
    let ids = dovecot
        .seed(ALICE.name, "INBOX", MESSAGES)
        .map_err(|e| format!("seeding failed: {e}"))?;
    println!(
        "dovecot {} seeded {MESSAGES} messages in {:.1} s",
        dovecot.version(),
        t.elapsed().as_secs_f64()
    );
    let server = Server {
        port: dovecot.pop3_tls_port(),
        ca: dovecot.ca_path(),
        expected: ids.iter().map(|id| bare_id(id)).collect(),
        bytes: maildir_bytes(&dovecot.maildir(ALICE.name, "INBOX"))?,
        nobody: nobody_ids()?,
        getmail: getmail
            .clone()
            .unwrap_or_else(|_| PathBuf::from("/usr/bin/getmail")),
    };
    if server.expected.len() != MESSAGES {
        return Err(format!(
            "seeding returned {} distinct Message-IDs",
            server.expected.len()
        ));
    }

    if let Some(secs) = std::env::var("MAILBAG_BENCH_POP3_HOLD")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        // NOTE: a profiling aid: keep the seeded server up to run a client by hand.
        println!(
            "holding for {secs} s: POP3 over TLS on {}:{}, CA {}, user {} password {}",
            common::TLS_NAME,
            server.port,
            server.ca.display(),
            ALICE.name,
            ALICE.password
        );
        std::thread::sleep(Duration::from_secs(secs));
        return Ok(());
    }

    // NOTE: the first POP3 session makes Dovecot compute and cache every message's size and
    // UIDL; a warm-up run keeps that one-time cost out of whichever client would go first.
    print!("warm-up (floor, not timed) ... ");
    let _ = io::stdout().flush();
    let warm = run_once(Client::Floor, &server, &mailbag)?;
    println!("{:.2} s", warm.wall.as_secs_f64());

    let mut outcomes: Vec<(Client, Outcome)> = Client::ALL
        .iter()
        .map(|&c| {
            let skip = match c {
                Client::Getmail => getmail.as_ref().err(),
                Client::Fetchmail => fetchmail.as_ref().err(),
                _ => None,
            };
            let outcome = match skip {
                Some(e) => Outcome::Skipped(e.clone()),
                None => Outcome::Done(Vec::new()),
            };
            (c, outcome)
        })
        .collect();
    // NOTE: for profiling one client: MAILBAG_BENCH_POP3_ONLY=mailbag (or floor, getmail,
    // fetchmail; comma-separated). The default runs them all.
    let only = std::env::var("MAILBAG_BENCH_POP3_ONLY").ok();
    let selected = |c: Client| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|k| c.name().starts_with(k.trim())))
    };
    for round in 1..=FAST_RUNS.max(RUNS) {
        for (client, outcome) in &mut outcomes {
            let Outcome::Done(samples) = outcome else {
                continue;
            };
            if !selected(*client) || round > client.runs() {
                continue;
            }
            print!(
                "round {round}/{}: {:<24} ... ",
                client.runs(),
                client.name()
            );
            let _ = io::stdout().flush();
            match run_once(*client, &server, &mailbag) {
                Ok(s) => {
                    println!(
                        "{:>7.2} s  {:>5.2} s CPU  {:>7} kB peak RSS",
                        s.wall.as_secs_f64(),
                        s.cpu.as_secs_f64(),
                        s.rss_kb
                    );
                    samples.push(s);
                }
                Err(e) => {
                    println!("FAILED");
                    println!("!!!!! {} FAILED: {e} !!!!!", client.name());
                    *outcome = Outcome::Failed(e);
                }
            }
        }
    }
    print!("{}", table(&outcomes, &server));
    drop(dovecot);
    Ok(())
}

/// Make sure `path` exists, installing `package` with apt-get if it does not.
fn ensure_tool(path: &str, package: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(path);
    if path.is_file() {
        return Ok(path);
    }
    println!(
        "{} is missing: apt-get install -y {package}",
        path.display()
    );
    let status = Command::new("apt-get")
        .args(["install", "-y", "-q", package])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() && path.is_file() => Ok(path),
        Ok(s) => Err(format!(
            "{} is not installed and `apt-get install -y {package}` failed ({s})",
            path.display()
        )),
        Err(e) => Err(format!(
            "{} is not installed and apt-get could not run ({e})",
            path.display()
        )),
    }
}

/// Total size of the files in a maildir's `cur/` and `new/`.
fn maildir_bytes(dir: &Path) -> Result<u64, String> {
    let mut total = 0;
    for sub in ["cur", "new"] {
        let Ok(entries) = fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for entry in entries {
            let meta = entry
                .and_then(|e| e.metadata())
                .map_err(|e| format!("cannot read the maildir: {e}"))?;
            total += meta.len();
        }
    }
    Ok(total)
}

/// uid/gid of `nobody` when this process runs as root, `None` otherwise.
fn nobody_ids() -> Result<Option<(u32, u32)>, String> {
    let id = |args: &[&str]| -> Result<u32, String> {
        let out = Command::new("id")
            .args(args)
            .output()
            .map_err(|e| format!("cannot run id: {e}"))?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|_| format!("unexpected output of id {args:?}"))
    };
    if id(&["-u"])? != 0 {
        return Ok(None);
    }
    Ok(Some((id(&["-u", "nobody"])?, id(&["-g", "nobody"])?)))
}

/// Run one client from a fresh state into a fresh mbox; time it and check the mbox.
fn run_once(client: Client, server: &Server, mailbag: &Path) -> Result<Sample, String> {
    let dir = tempfile::Builder::new()
        .prefix("mailbag-pop3bench-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let root = dir.path();
    let io = |what: &'static str| move |e: io::Error| format!("{what}: {e}");
    let pw_file = root.join("password");
    fs::write(&pw_file, format!("{}\n", ALICE.password)).map_err(io("password file"))?;
    fs::set_permissions(&pw_file, fs::Permissions::from_mode(0o600))
        .map_err(io("password file"))?;
    let mbox = root.join("out.mbox");
    let host = common::TLS_NAME;
    let port = server.port.to_string();
    let ca = server.ca.display().to_string();

    let mut cmd = Command::new("/usr/bin/time");
    cmd.arg("-f")
        .arg("%M %U %S")
        .arg("-o")
        .arg(root.join("time.txt"));
    match client {
        Client::Floor => {
            let me = std::env::current_exe().map_err(io("current exe"))?;
            cmd.arg(me)
                .args([&port, &ca, ALICE.name])
                .arg(&pw_file)
                .arg(&mbox)
                .env(FLOOR_ENV, "1");
        }
        Client::Mailbag => {
            let config = root.join("config/mailbag");
            fs::create_dir_all(&config).map_err(io("config dir"))?;
            fs::write(
                config.join("config.toml"),
                format!(
                    "[accounts.pop]\n\
                     email = \"alice@example.com\"\n\
                     protocol = \"pop3\"\n\
                     host = \"{host}\"\n\
                     port = {port}\n\
                     security = \"tls\"\n\
                     username = \"{user}\"\n\
                     password_command = \"cat {pw}\"\n\
                     tls_ca_file = \"{ca}\"\n\
                     leave_on_server = true\n\
                     mbox_path = \"{mbox}\"\n",
                    user = ALICE.name,
                    pw = pw_file.display(),
                    mbox = mbox.display(),
                ),
            )
            .map_err(io("mailbag config"))?;
            cmd.arg(mailbag)
                .arg("sync")
                .env("XDG_CONFIG_HOME", root.join("config"))
                .env("XDG_DATA_HOME", root.join("data"))
                .env("XDG_CACHE_HOME", root.join("cache"))
                .env("XDG_STATE_HOME", root.join("state"))
                .env_remove("MAILBAG_CONFIG");
        }
        Client::Getmail => {
            let gm_dir = root.join("getmail");
            fs::create_dir_all(&gm_dir).map_err(io("getmail dir"))?;
            // NOTE: getmail6 creates nothing: an Mboxrd destination must exist (empty is fine).
            fs::write(&mbox, b"").map_err(io("getmail mbox"))?;
            let mut user_line = String::new();
            if let Some((uid, gid)) = server.nobody {
                // NOTE: as root, getmail6 refuses to deliver ("refuse to deliver mail as
                // root"); it forks a delivery child that switches to `user`.
                fs::set_permissions(root, fs::Permissions::from_mode(0o711))
                    .map_err(io("temp dir"))?;
                std::os::unix::fs::chown(&mbox, Some(uid), Some(gid)).map_err(io("chown mbox"))?;
                user_line = "user = nobody\n".into();
            }
            let rc = gm_dir.join("getmailrc");
            fs::write(
                &rc,
                format!(
                    "[retriever]\n\
                     type = SimplePOP3SSLRetriever\n\
                     server = {host}\n\
                     port = {port}\n\
                     username = {user}\n\
                     password_command = (\"/bin/cat\", \"{pw}\")\n\
                     ca_certs = {ca}\n\
                     \n\
                     [destination]\n\
                     type = Mboxrd\n\
                     path = {mbox}\n\
                     {user_line}\
                     \n\
                     [options]\n\
                     read_all = false\n\
                     delete = false\n\
                     verbose = 0\n\
                     message_log_syslog = false\n",
                    user = ALICE.name,
                    pw = pw_file.display(),
                    mbox = mbox.display(),
                ),
            )
            .map_err(io("getmailrc"))?;
            cmd.arg(&server.getmail)
                .arg("--getmaildir")
                .arg(&gm_dir)
                .arg("--rcfile")
                .arg(&rc);
        }
        Client::Fetchmail => {
            let home = root.join("fetchmail");
            fs::create_dir_all(&home).map_err(io("fetchmail dir"))?;
            fs::write(&mbox, b"").map_err(io("fetchmail mbox"))?;
            let rc = home.join("fetchmailrc");
            // NOTE: fetchmail has no mbox writer of its own (it hands mail to an SMTP server
            // or an MDA); `formail` (procmail) is the classic MDA that adds the `From ` line
            // and quotes `From ` lines in the body. fetchmail runs it once per message.
            fs::write(
                &rc,
                format!(
                    "set no syslog\n\
                     poll {host} with proto POP3 service {port} uidl\n\
                     \x20 user \"{user}\" there with password \"{password}\"\n\
                     \x20 ssl sslcertck sslcertfile \"{ca}\"\n\
                     \x20 keep fetchall\n\
                     \x20 mda \"/usr/bin/formail >> {mbox}\"\n",
                    user = ALICE.name,
                    password = ALICE.password,
                    mbox = mbox.display(),
                ),
            )
            .map_err(io("fetchmailrc"))?;
            fs::set_permissions(&rc, fs::Permissions::from_mode(0o600))
                .map_err(io("fetchmailrc"))?;
            cmd.arg("/usr/bin/fetchmail")
                .arg("--fetchmailrc")
                .arg(&rc)
                .arg("--idfile")
                .arg(home.join("fetchids"))
                .arg("--pidfile")
                .arg(home.join("fetchmail.pid"))
                .arg("--nosyslog")
                .arg("--nodetach")
                .env("FETCHMAILHOME", &home);
        }
    }
    let log_path = root.join("client.log");
    let log = fs::File::create(&log_path).map_err(io("client log"))?;
    let log2 = log.try_clone().map_err(io("client log"))?;
    cmd.stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .process_group(0);

    let started = Instant::now();
    let mut child = cmd.spawn().map_err(io("cannot start the client"))?;
    let status = loop {
        match child.try_wait().map_err(io("wait"))? {
            Some(status) => break status,
            None if started.elapsed() > RUN_TIMEOUT => {
                kill_group(child.id());
                let _ = child.wait();
                return Err(format!("timed out after {} s", RUN_TIMEOUT.as_secs()));
            }
            None => std::thread::sleep(Duration::from_millis(2)),
        }
    };
    let wall = started.elapsed();
    let log_text = fs::read_to_string(&log_path).unwrap_or_default();
    if !status.success() {
        let mut count = 0usize;
        let _ = mailbag::store::mbox::scan(&mbox, |_| {
            count += 1;
            Ok(())
        });
        return Err(format!(
            "exited with {status} after {:.1} s with {count} messages in its mbox; output: {}",
            wall.as_secs_f64(),
            tail(&log_text)
        ));
    }
    let time_text = fs::read_to_string(root.join("time.txt")).map_err(io("time output"))?;
    // NOTE: the last line is ours ("%M %U %S"); a line before it may say the exit status.
    let (rss_kb, cpu) = time_text
        .lines()
        .rev()
        .find_map(|l| {
            let mut f = l.split_whitespace();
            let rss: u64 = f.next()?.parse().ok()?;
            let user: f64 = f.next()?.parse().ok()?;
            let sys: f64 = f.next()?.parse().ok()?;
            Some((rss, Duration::from_secs_f64(user + sys)))
        })
        .ok_or_else(|| format!("unexpected /usr/bin/time output {time_text:?}"))?;
    verify(&mbox, &server.expected)
        .map_err(|e| format!("{e}; client output: {}", tail(&log_text)))?;
    let (threaded, indexed) = match client {
        Client::Mailbag => {
            let (t, i) = after_download(&root.join("data/mailbag"))?;
            (Some(t), Some(i))
        }
        _ => (None, None),
    };
    Ok(Sample {
        wall,
        rss_kb,
        cpu,
        indexed,
        threaded,
    })
}

/// What mailbag's next session does with a download that `sync` from the command line left:
/// sort it into conversations, then build its search index; both timed. Then check that
/// every message is in a conversation and a word of every body is found.
fn after_download(data: &Path) -> Result<(Duration, Duration), String> {
    let cache = mailbag::store::cache::Cache::open(data).map_err(|e| format!("cache: {e}"))?;
    let started = Instant::now();
    let n = cache
        .thread_pending()
        .map_err(|e| format!("threading: {e}"))?;
    let threaded = started.elapsed();
    if n != MESSAGES as u64 {
        return Err(format!(
            "{n} of {MESSAGES} messages were threaded afterwards"
        ));
    }
    let started = Instant::now();
    cache
        .index_pending()
        .map_err(|e| format!("indexing: {e}"))?;
    let took = started.elapsed();
    let folder = cache
        .folders(1)
        .map_err(|e| format!("cache: {e}"))?
        .first()
        .map(|f| f.id)
        .ok_or("no folder in mailbag's cache")?;
    // NOTE: "seeded" is in every body and in no header of the bench's messages.
    let found = cache
        .search(folder, "seeded", MESSAGES as u64 + 1)
        .map_err(|e| format!("search: {e}"))?;
    if found.len() != MESSAGES {
        return Err(format!(
            "the search index finds {} of {MESSAGES} bodies",
            found.len()
        ));
    }
    Ok((threaded, took))
}

/// The last few lines of a client's output, for error messages.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

/// SIGKILL a child's whole process group (it was started with `process_group(0)`).
fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-s", "KILL", "--", &format!("-{pgid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Check that the mbox holds exactly the expected messages, each once.
fn verify(mbox: &Path, expected: &HashSet<String>) -> Result<(), String> {
    let mut count = 0usize;
    let mut found = HashSet::new();
    mailbag::store::mbox::scan(mbox, |m| {
        count += 1;
        if let Some(id) = mailbag::backend::Envelope::from_raw(&m.raw).message_id {
            found.insert(bare_id(&id));
        }
        Ok(())
    })
    .map_err(|e| format!("cannot read the mbox: {e}"))?;
    let missing = expected.difference(&found).count();
    if count != expected.len() || missing != 0 {
        return Err(format!(
            "the mbox holds {count} messages ({} distinct Message-IDs, {missing} of the \
             expected {} missing)",
            found.len(),
            expected.len()
        ));
    }
    Ok(())
}

/// A Message-ID without its angle brackets (the parser drops them, the seeder keeps them).
fn bare_id(id: &str) -> String {
    id.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_string()
}

/// Min and median wall time, median CPU time and peak RSS of a client's samples.
fn summary(samples: &[Sample]) -> Option<(Duration, Duration, Duration, u64)> {
    let mut walls: Vec<Duration> = samples.iter().map(|s| s.wall).collect();
    walls.sort();
    let min = *walls.first()?;
    let median = *walls.get(walls.len() / 2)?;
    let mut cpus: Vec<Duration> = samples.iter().map(|s| s.cpu).collect();
    cpus.sort();
    let cpu = *cpus.get(cpus.len() / 2)?;
    let rss = samples.iter().map(|s| s.rss_kb).max()?;
    Some((min, median, cpu, rss))
}

/// The result table and the ratios, as Markdown.
fn table(outcomes: &[(Client, Outcome)], server: &Server) -> String {
    let mb = server.bytes as f64 / 1e6;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{MESSAGES} messages, {mb:.1} MB (as stored on the server), {FAST_RUNS} runs of the \
         floor and mailbag, {RUNS} of each peer, in turns\n"
    );
    let _ = writeln!(
        out,
        "| client | min | median | CPU (median) | messages/s (median) | MB/s (median) | peak RSS |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    let mut medians = Vec::new();
    for (client, outcome) in outcomes {
        match outcome {
            Outcome::Skipped(e) => {
                let _ = writeln!(out, "| {} | SKIPPED: {e} | | | | | |", client.name());
            }
            Outcome::Failed(e) => {
                let _ = writeln!(out, "| {} | FAILED: {e} | | | | | |", client.name());
            }
            Outcome::Done(samples) => match summary(samples) {
                None => {
                    let _ = writeln!(out, "| {} | no samples | | | | | |", client.name());
                }
                Some((min, median, cpu, rss)) => {
                    let secs = median.as_secs_f64();
                    let _ = writeln!(
                        out,
                        "| {} | {:.2} s | {:.2} s | {:.2} s | {:.0} | {:.2} | {:.1} MB |",
                        client.name(),
                        min.as_secs_f64(),
                        secs,
                        cpu.as_secs_f64(),
                        MESSAGES as f64 / secs,
                        mb / secs,
                        rss as f64 / 1024.0
                    );
                    medians.push((*client, secs, cpu.as_secs_f64()));
                }
            },
        }
    }
    for (client, outcome) in outcomes {
        if let Outcome::Done(samples) = outcome {
            let mut threaded: Vec<Duration> = samples.iter().filter_map(|s| s.threaded).collect();
            threaded.sort();
            if let Some(median) = threaded.get(threaded.len() / 2) {
                let _ = writeln!(
                    out,
                    "\n{}: the conversations, sorted out afterwards (by the next session, or \
                     the first threaded list): {:.2} s (median), not in the times above.",
                    client.name(),
                    median.as_secs_f64()
                );
            }
            let mut took: Vec<Duration> = samples.iter().filter_map(|s| s.indexed).collect();
            took.sort();
            if let Some(median) = took.get(took.len() / 2) {
                let _ = writeln!(
                    out,
                    "\n{}: the search index of the bodies, built afterwards (by the next \
                     session, or the first search): {:.2} s (median), not in the times above.",
                    client.name(),
                    median.as_secs_f64()
                );
            }
        }
    }
    let median = |c: Client| medians.iter().find(|(m, ..)| *m == c).map(|(_, s, _)| *s);
    let cpu = |c: Client| medians.iter().find(|(m, ..)| *m == c).map(|(.., s)| *s);
    let _ = writeln!(out, "\nRatios of median wall times:\n");
    for (label, a, b, goal) in [
        (
            "mailbag / floor",
            Client::Mailbag,
            Client::Floor,
            "goal <= 1.3",
        ),
        (
            "getmail6 / mailbag",
            Client::Getmail,
            Client::Mailbag,
            "goal >= 3",
        ),
        (
            "fetchmail / mailbag",
            Client::Fetchmail,
            Client::Mailbag,
            "",
        ),
    ] {
        match (median(a), median(b)) {
            (Some(x), Some(y)) if y > 0.0 => {
                let _ = writeln!(out, "- {label}: {:.2}x {goal}", x / y);
            }
            _ => {
                let _ = writeln!(
                    out,
                    "- {label}: not available (a client was skipped or failed)"
                );
            }
        }
    }
    // NOTE: the two cores are shared with Dovecot (its TLS and POP3 processes), so the CPU a
    // client spends itself shows up in every client's wall time.
    if let (Some(m), Some(f)) = (cpu(Client::Mailbag), cpu(Client::Floor))
        && f > 0.0
    {
        let _ = writeln!(
            out,
            "- CPU of the client itself (not the server's), mailbag / floor: {:.2}x",
            m / f
        );
    }
    out
}

/// The floor: the least a POP3 client can do to turn the mailbox into an mboxrd file.
mod floor {
    use std::fmt::Write as _;
    use std::io::{BufWriter, Write};
    use std::path::PathBuf;

    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpStream;

    use super::FLOOR_WINDOW;

    type Error = Box<dyn std::error::Error>;

    /// Arguments: PORT CA-FILE USER PASSWORD-FILE OUT-MBOX.
    pub fn main(args: Vec<String>) -> Result<(), Error> {
        let [port, ca, user, pw_file, out] = args.as_slice() else {
            return Err("usage: PORT CA USER PASSWORD-FILE OUT".into());
        };
        let port: u16 = port.parse()?;
        let password = std::fs::read_to_string(pw_file)?.trim_end().to_string();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(download(
            port,
            PathBuf::from(ca),
            user,
            &password,
            PathBuf::from(out),
        ))
    }

    async fn download(
        port: u16,
        ca: PathBuf,
        user: &str,
        password: &str,
        out: PathBuf,
    ) -> Result<(), Error> {
        let tcp = TcpStream::connect((super::common::HOST, port)).await?;
        tcp.set_nodelay(true)?;
        // NOTE: mailbag's own TLS setup, so that the floor and mailbag pay the same for it.
        let trust = mailbag::tls::TlsTrust {
            ca_file: Some(ca),
            cert_sha256: None,
        };
        let tls = mailbag::tls::handshake(tcp, super::common::TLS_NAME, &trust).await?;
        let (rd, mut wr) = tokio::io::split(tls);
        let mut rd = BufReader::with_capacity(256 * 1024, rd);
        let mut line = Vec::with_capacity(1024);

        status(&mut rd, &mut line).await?;
        for cmd in [format!("USER {user}\r\n"), format!("PASS {password}\r\n")] {
            wr.write_all(cmd.as_bytes()).await?;
            wr.flush().await?;
            status(&mut rd, &mut line).await?;
        }
        wr.write_all(b"UIDL\r\n").await?;
        wr.flush().await?;
        status(&mut rd, &mut line).await?;
        let mut count = 0u32;
        loop {
            read_line(&mut rd, &mut line).await?;
            if line == b".\r\n" {
                break;
            }
            count += 1;
        }

        let file = std::fs::File::create(&out)?;
        let mut mbox = BufWriter::with_capacity(1 << 20, file);
        let from = mailbag::store::mbox::from_line("MAILER-DAEMON", 0);
        let mut message = Vec::with_capacity(64 * 1024);
        let mut quoted = Vec::with_capacity(64 * 1024);
        let mut sent = 0u32;
        let mut received = 0u32;
        let mut commands = String::new();
        while received < count {
            // Refill the window in one write once half of it has been answered.
            if sent < count && (sent - received) as usize <= FLOOR_WINDOW / 2 {
                commands.clear();
                while sent < count && ((sent - received) as usize) < FLOOR_WINDOW {
                    sent += 1;
                    let _ = write!(commands, "RETR {sent}\r\n");
                }
                wr.write_all(commands.as_bytes()).await?;
                wr.flush().await?;
            }
            status(&mut rd, &mut line).await?;
            message.clear();
            loop {
                read_line(&mut rd, &mut line).await?;
                match line.as_slice() {
                    b".\r\n" => break,
                    [b'.', rest @ ..] => message.extend_from_slice(rest),
                    l => message.extend_from_slice(l),
                }
            }
            quoted.clear();
            mailbag::store::mbox::quote_into(&message, &mut quoted);
            mbox.write_all(from.as_bytes())?;
            mbox.write_all(&quoted)?;
            if !quoted.ends_with(b"\n") {
                mbox.write_all(b"\n")?;
            }
            mbox.write_all(b"\n")?;
            received += 1;
        }
        wr.write_all(b"QUIT\r\n").await?;
        wr.flush().await?;
        status(&mut rd, &mut line).await?;
        let file = mbox.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(())
    }

    async fn read_line<R: AsyncBufReadExt + Unpin>(
        rd: &mut R,
        line: &mut Vec<u8>,
    ) -> Result<(), Error> {
        line.clear();
        if rd.read_until(b'\n', line).await? == 0 {
            return Err("the server closed the connection".into());
        }
        Ok(())
    }

    async fn status<R: AsyncBufReadExt + Unpin>(
        rd: &mut R,
        line: &mut Vec<u8>,
    ) -> Result<(), Error> {
        read_line(rd, line).await?;
        if !line.starts_with(b"+OK") {
            return Err(
                format!("server said {:?}", String::from_utf8_lossy(line).trim_end()).into(),
            );
        }
        Ok(())
    }
}
