//! IMAP benchmark: the initial sync and resyncs of a 10,000-message folder.
//!
//! Run with `cargo bench --bench imap` (needs Dovecot, as the integration tests do; `mbsync`
//! from isync and `/usr/bin/time` are used when installed and reported as skipped otherwise).
//!
//! Everything runs against one private harness Dovecot in the same run, so the numbers are
//! comparable with each other:
//!
//! - **floor**: a minimal raw IMAP client written here: TLS (verifying the harness CA), LOGIN,
//!   SELECT INBOX, one `UID FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE)` read with a
//!   literal-aware line reader until the tagged OK (RFC 3501 §4.3, §7.4.2), LOGOUT. No parsing,
//!   no storage: the least an envelope-only client can do over one connection.
//! - **mailbag sync**: the release binary in a fresh profile (`prefetch = 0` for the envelope
//!   comparison, and separately the default `prefetch = 100`), then resyncs in the same profile:
//!   with no change, and after 10 flags were changed on the server by `doveadm`.
//! - **in-library**: `ImapBackend::sync_folder` on INBOX only, in-process, on an already
//!   connected backend: the protocol and cache work without process start, config, password
//!   command, TLS handshake, folder list and the other (empty) folders.
//! - **mbsync** (isync): pull-only sync of INBOX into a Maildir; it downloads whole messages.
//!
//! Timings are wall-clock; every figure is reported as min and median over several runs. The
//! floor and mailbag's initial sync run in turns, round by round, so that a change in the
//! machine's load falls on both alike.
//! Results go into docs/performance.md. Speed is never asserted in tests.
//!
//! For comparing builds in turns: `MAILBAG_BENCH_IMAP_HOLD=SECS` seeds the server, prints its
//! port and CA file and keeps it up for SECS seconds instead of running the bench; the floor
//! then runs against it as a process of its own (see [`FLOOR_ENV`]).

#[path = "../tests/common/mod.rs"]
mod common;

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use async_native_tls::{Certificate, TlsConnector};
use common::{ALICE, Dovecot};
use mailbag::backend::MailBackend;
use mailbag::backend::imap::ImapBackend;
use mailbag::store::cache::Cache;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

type Res<T> = Result<T, Box<dyn Error>>;

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Stream for T {}

const MESSAGES: usize = 10_000;
const FLOOR_RUNS: usize = 5;
/// Rounds of the floor and mailbag's initial sync, run in turns (the goal's ratio).
const INITIAL_ROUNDS: usize = 9;
const INITIAL_RUNS: usize = 3;
const RESYNC_RUNS: usize = 10;
const FLAG_RUNS: usize = 5;
const MBSYNC_RUNS: usize = 3;

/// The floor's one command.
const FLOOR_FETCH: &str = "UID FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE)";
/// The command mailbag's initial sync sends (see `fetch_new` in src/backend/imap/mod.rs).
const MAILBAG_FETCH: &str = "UID FETCH 1:* (UID FLAGS RFC822.SIZE MODSEQ BODYSTRUCTURE \
     BODY.PEEK[HEADER.FIELDS (DATE FROM TO CC SUBJECT MESSAGE-ID IN-REPLY-TO REFERENCES \
     CONTENT-TYPE)])";

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Min and median of some timings.
#[derive(Clone, Copy, Debug)]
struct Stat {
    min: Duration,
    median: Duration,
    runs: usize,
}

fn stat(mut v: Vec<Duration>) -> Stat {
    v.sort();
    Stat {
        min: v.first().copied().unwrap_or_default(),
        median: v.get(v.len() / 2).copied().unwrap_or_default(),
        runs: v.len(),
    }
}

/// One row of the final table.
struct Row {
    name: String,
    stat: Stat,
    /// Compared with the floor's total.
    vs_floor: bool,
    note: String,
}

// ---- the floor: a raw client --------------------------------------------------------------

/// What one raw-client run saw.
struct RawRun {
    total: Duration,
    fetch: Duration,
    responses: u64,
    bytes: u64,
}

/// Read one complete response (a line plus any literals and their continuation lines);
/// returns its first line and its size in bytes.
async fn read_response<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    line: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
) -> Res<(Vec<u8>, u64)> {
    let mut first: Option<Vec<u8>> = None;
    let mut bytes = 0u64;
    loop {
        line.clear();
        let n = r.read_until(b'\n', line).await?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        bytes += n as u64;
        if first.is_none() {
            first = Some(line.clone());
        }
        // A line ending in `{N}` (or `{N+}`) CRLF announces N bytes of literal, after which the
        // same response continues on the next line (RFC 3501 §4.3).
        let Some(literal) = literal_len(line) else {
            break;
        };
        scratch.resize(literal, 0);
        r.read_exact(scratch).await?;
        bytes += literal as u64;
    }
    Ok((first.unwrap_or_default(), bytes))
}

/// The N of a trailing `{N}\r\n` or `{N+}\r\n`.
fn literal_len(line: &[u8]) -> Option<usize> {
    let body = line.strip_suffix(b"\r\n").or(line.strip_suffix(b"\n"))?;
    let body = body.strip_suffix(b"}")?;
    let open = body.iter().rposition(|&b| b == b'{')?;
    let digits = body.get(open + 1..)?;
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Send `tag command` and read until the tagged reply; returns (responses, bytes).
async fn command<S>(s: &mut BufReader<S>, tag: &str, cmd: &str) -> Res<(u64, u64)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    s.get_mut()
        .write_all(format!("{tag} {cmd}\r\n").as_bytes())
        .await?;
    s.get_mut().flush().await?;
    let (mut line, mut scratch) = (Vec::with_capacity(4096), Vec::new());
    let (mut responses, mut bytes) = (0u64, 0u64);
    let tagged = format!("{tag} ");
    loop {
        let (first, n) = read_response(s, &mut line, &mut scratch).await?;
        bytes += n;
        if first.starts_with(tagged.as_bytes()) {
            let ok = first
                .get(tagged.len()..tagged.len() + 2)
                .is_some_and(|w| w.eq_ignore_ascii_case(b"OK"));
            if !ok {
                return Err(format!("{cmd} failed: {}", String::from_utf8_lossy(&first)).into());
            }
            return Ok((responses, bytes));
        }
        responses += 1;
    }
}

/// Which TLS setup a raw client uses.
#[derive(Clone, Copy)]
enum FloorTls {
    /// mailbag's own (`mailbag::tls::handshake`), so the floor and mailbag pay the same.
    Mailbag,
    /// async-native-tls's connector, which parses the system trust store on every connection.
    NativeTls,
}

/// One raw session: TLS, LOGIN, `SELECT INBOX (CONDSTORE)`, then `fetch` if given, LOGOUT.
async fn raw_floor(port: u16, ca: &Path, fetch: Option<&str>) -> Res<RawRun> {
    raw_floor_with(FloorTls::Mailbag, port, ca, fetch).await
}

async fn raw_floor_with(how: FloorTls, port: u16, ca: &Path, fetch: Option<&str>) -> Res<RawRun> {
    let started = Instant::now();
    let tcp = tokio::net::TcpStream::connect((common::HOST, port)).await?;
    tcp.set_nodelay(true)?;
    let tls: Box<dyn Stream> = match how {
        FloorTls::Mailbag => {
            let trust = mailbag::tls::TlsTrust {
                ca_file: Some(ca.to_path_buf()),
                cert_sha256: None,
            };
            Box::new(mailbag::tls::handshake(tcp, common::TLS_NAME, &trust).await?)
        }
        FloorTls::NativeTls => Box::new(
            TlsConnector::new()
                .add_root_certificate(Certificate::from_pem(&std::fs::read(ca)?)?)
                .connect(common::TLS_NAME, tcp)
                .await?,
        ),
    };
    let mut s = BufReader::with_capacity(64 * 1024, tls);
    let (mut line, mut scratch) = (Vec::new(), Vec::new());
    read_response(&mut s, &mut line, &mut scratch).await?; // greeting
    command(
        &mut s,
        "a1",
        &format!("LOGIN {} \"{}\"", ALICE.name, ALICE.password),
    )
    .await?;
    command(&mut s, "a2", "SELECT INBOX (CONDSTORE)").await?;
    let fetch_started = Instant::now();
    let (responses, bytes) = match fetch {
        Some(f) => command(&mut s, "a3", f).await?,
        None => (0, 0),
    };
    let fetch = fetch_started.elapsed();
    // The server may close right after its tagged OK; either way the session is over.
    let _ = command(&mut s, "a4", "LOGOUT").await;
    Ok(RawRun {
        total: started.elapsed(),
        fetch,
        responses,
        bytes,
    })
}

// ---- mailbag: the binary ------------------------------------------------------------------

/// A mailbag profile (config + data) in a temporary directory.
struct Profile {
    dir: tempfile::TempDir,
}

impl Profile {
    fn new(d: &Dovecot, prefetch: u32) -> Res<Profile> {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("config/mailbag");
        std::fs::create_dir_all(&config)?;
        let pw = dir.path().join("password");
        std::fs::write(&pw, ALICE.password)?;
        std::fs::write(
            config.join("config.toml"),
            format!(
                "[accounts.work]\nemail = \"alice@example.com\"\nprotocol = \"imap\"\n\
                 host = \"{}\"\nport = {}\nsecurity = \"tls\"\nusername = \"{}\"\n\
                 password_command = \"cat {}\"\ntls_ca_file = \"{}\"\nprefetch = {prefetch}\n",
                common::TLS_NAME,
                d.imap_tls_port(),
                ALICE.name,
                pw.display(),
                d.ca_path().display(),
            ),
        )?;
        Ok(Profile { dir })
    }

    fn config_file(&self) -> PathBuf {
        self.dir.path().join("config/mailbag/config.toml")
    }

    /// Run `mailbag sync` (under `/usr/bin/time` when `rss` is set); returns the wall time,
    /// the summary line and the peak RSS in KiB.
    fn sync(&self, rss: bool) -> Res<(Duration, String, Option<u64>)> {
        let time_out = self.dir.path().join("time.out");
        let mut cmd = if rss {
            let mut c = Command::new("/usr/bin/time");
            c.arg("-f")
                .arg("%M")
                .arg("-o")
                .arg(&time_out)
                .arg(env!("CARGO_BIN_EXE_mailbag"));
            c
        } else {
            Command::new(env!("CARGO_BIN_EXE_mailbag"))
        };
        cmd.arg("sync")
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env("XDG_DATA_HOME", self.dir.path().join("data"))
            .env_remove("MAILBAG_CONFIG");
        let started = Instant::now();
        let out = cmd.output()?;
        let took = started.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if !out.status.success() {
            return Err(format!("mailbag sync failed: {stderr}").into());
        }
        let kib = if rss {
            std::fs::read_to_string(&time_out)?.trim().parse().ok()
        } else {
            None
        };
        Ok((took, stderr, kib))
    }
}

impl Profile {
    /// Sort the downloaded mail into conversations, as mailbag's next session does (the
    /// command line's sync leaves it); the time it took. Every message must be threaded.
    fn thread_afterwards(&self) -> Res<Duration> {
        let cache = Cache::open(&self.dir.path().join("data/mailbag"))?;
        let started = Instant::now();
        let n = cache.thread_pending()?;
        let took = started.elapsed();
        if n != MESSAGES as u64 || cache.has_unthreaded()? {
            return Err(format!("{n} of {MESSAGES} messages were threaded afterwards").into());
        }
        Ok(took)
    }
}

/// "work: 10000 new, 0 removed, 3 flag changes, ..." → (new, flag changes).
fn summary(line: &str) -> Option<(u64, u64)> {
    let line = line.lines().last()?;
    let rest = line.split_once(": ")?.1;
    let mut parts = rest.split(", ");
    let new = parts.next()?.split(' ').next()?.parse().ok()?;
    parts.next()?;
    let flags = parts.next()?.split(' ').next()?.parse().ok()?;
    Some((new, flags))
}

fn time_available() -> bool {
    Path::new("/usr/bin/time").exists()
}

/// Set a flag on 10 messages spread over the folder, different ones each round.
fn change_ten_flags(d: &Dovecot, round: usize) -> Res<()> {
    let uids: Vec<String> = (0..10)
        .map(|k| (1 + round * 7 + k * (MESSAGES / 10)).to_string())
        .collect();
    let flag = if round.is_multiple_of(2) {
        "\\Flagged"
    } else {
        "\\Answered"
    };
    d.doveadm(&[
        "flags",
        "add",
        "-u",
        ALICE.name,
        flag,
        "mailbox",
        "INBOX",
        "uid",
        &uids.join(","),
    ])?;
    Ok(())
}

// ---- mbsync ---------------------------------------------------------------------------------

/// A fresh mbsync configuration, Maildir and sync state.
struct Mbsync {
    dir: tempfile::TempDir,
}

impl Mbsync {
    fn new(d: &Dovecot, max_size: Option<&str>) -> Res<Mbsync> {
        let dir = tempfile::tempdir()?;
        let pw = dir.path().join("password");
        std::fs::write(&pw, ALICE.password)?;
        let mail = dir.path().join("mail");
        std::fs::create_dir_all(&mail)?;
        let max = max_size
            .map(|m| format!("MaxSize {m}\n"))
            .unwrap_or_default();
        std::fs::write(
            dir.path().join("mbsyncrc"),
            format!(
                "IMAPAccount bench\nHost {}\nPort {}\nUser {}\nPassCmd \"cat {}\"\n\
                 SSLType IMAPS\nCertificateFile {}\n\n\
                 IMAPStore bench-far\nAccount bench\n\n\
                 MaildirStore bench-near\nPath {}/\nInbox {}/INBOX\n{max}\n\
                 Channel bench\nFar :bench-far:\nNear :bench-near:\nPatterns INBOX\n\
                 Sync Pull\nCreate Near\nSyncState *\n",
                common::TLS_NAME,
                d.imap_tls_port(),
                ALICE.name,
                pw.display(),
                d.ca_path().display(),
                mail.display(),
                mail.display(),
            ),
        )?;
        Ok(Mbsync { dir })
    }

    fn run(&self, rss: bool) -> Res<(Duration, Option<u64>)> {
        let time_out = self.dir.path().join("time.out");
        let mut cmd = if rss {
            let mut c = Command::new("/usr/bin/time");
            c.arg("-f").arg("%M").arg("-o").arg(&time_out).arg("mbsync");
            c
        } else {
            Command::new("mbsync")
        };
        cmd.arg("-q")
            .arg("-c")
            .arg(self.dir.path().join("mbsyncrc"))
            .arg("bench");
        let started = Instant::now();
        let out = cmd.output()?;
        let took = started.elapsed();
        if !out.status.success() {
            return Err(format!(
                "mbsync failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )
            .into());
        }
        let kib = if rss {
            std::fs::read_to_string(&time_out)?.trim().parse().ok()
        } else {
            None
        };
        Ok((took, kib))
    }

    fn downloaded(&self) -> usize {
        let cur = self.dir.path().join("mail/INBOX");
        ["cur", "new"]
            .iter()
            .filter_map(|s| std::fs::read_dir(cur.join(s)).ok())
            .map(|d| d.count())
            .sum()
    }
}

fn mbsync_available() -> bool {
    Command::new("mbsync")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

// ---- main ---------------------------------------------------------------------------------

/// Set (to anything) to make the bench binary run the floor once, as a process of its own,
/// against a server already running: `MAILBAG_BENCH_IMAP_FLOOR=1 <bench binary> PORT CA_FILE`
/// (the harness's user and password). It prints the session's and the FETCH's wall times.
/// For comparing candidate builds in turns with the floor against one held Dovecot.
const FLOOR_ENV: &str = "MAILBAG_BENCH_IMAP_FLOOR";

fn main() -> Res<()> {
    if std::env::var_os(FLOOR_ENV).is_some() {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let [port, ca] = args.as_slice() else {
            return Err(format!("usage: {FLOOR_ENV}=1 <bench binary> PORT CA_FILE").into());
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let run = rt.block_on(raw_floor(port.parse()?, Path::new(ca), Some(FLOOR_FETCH)))?;
        println!(
            "floor: {:.1} ms, FETCH {:.1} ms, {} responses",
            ms(run.total),
            ms(run.fetch),
            run.responses
        );
        return Ok(());
    }
    let Some(d) = Dovecot::start() else {
        eprintln!("SKIPPED: the IMAP benchmark needs Dovecot");
        return Ok(());
    };
    println!("Dovecot {}", d.version());
    let seeding = Instant::now();
    d.seed(ALICE.name, "INBOX", MESSAGES)?;
    println!(
        "seeded {MESSAGES} messages into INBOX in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );
    let ca = d.ca_path();
    if let Some(secs) = std::env::var("MAILBAG_BENCH_IMAP_HOLD")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        // NOTE: a profiling aid, as MAILBAG_BENCH_POP3_HOLD: keep the seeded server up to
        // run builds and the floor (FLOOR_ENV) against it in turns by hand.
        println!(
            "holding for {secs} s: IMAP over TLS on {}:{}, CA {}, user {} password {}",
            common::TLS_NAME,
            d.imap_tls_port(),
            ca.display(),
            ALICE.name,
            ALICE.password
        );
        std::thread::sleep(Duration::from_secs(secs));
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut rows: Vec<Row> = Vec::new();
    let mut notes: Vec<String> = Vec::new();

    // Warm-up: one untimed run of every client, so Dovecot's index cache already holds the
    // fields each one asks for, whoever runs first.
    let warm = rt.block_on(raw_floor(d.imap_tls_port(), &ca, Some(FLOOR_FETCH)))?;
    println!(
        "floor warm-up: {} responses, {:.1} MB",
        warm.responses,
        warm.bytes as f64 / 1e6
    );
    let p = Profile::new(&d, 0)?;
    p.sync(false)?;
    let have_mbsync = mbsync_available();
    if have_mbsync && std::env::var_os("MAILBAG_BENCH_NO_MBSYNC").is_none() {
        let m = Mbsync::new(&d, None)?;
        m.run(false)?;
    }
    drop(p);

    // 1. The floor and mailbag's initial sync (envelopes only, prefetch = 0, a fresh profile
    // each run), in turns: the machine's load changes over a run, and taking turns gives both
    // the same share of it, so their ratio does not depend on which went first.
    let rss = time_available();
    if !rss {
        notes.push("/usr/bin/time is missing: peak memory NOT measured".into());
    }
    let mut totals = Vec::new();
    let mut fetches = Vec::new();
    let mut last = None;
    let mut initial = Vec::new();
    let mut peak = Vec::new();
    let mut kept = None;
    let mut threaded = Vec::new();
    for _ in 0..INITIAL_ROUNDS {
        let r = rt.block_on(raw_floor(d.imap_tls_port(), &ca, Some(FLOOR_FETCH)))?;
        totals.push(r.total);
        fetches.push(r.fetch);
        last = Some((r.responses, r.bytes));
        let p = Profile::new(&d, 0)?;
        let (t, line, kib) = p.sync(rss)?;
        if summary(&line).map(|s| s.0) != Some(MESSAGES as u64) {
            return Err(format!("initial sync did not bring {MESSAGES} messages: {line}").into());
        }
        initial.push(t);
        peak.extend(kib);
        threaded.push(p.thread_afterwards()?);
        kept = Some(p);
    }
    let floor = stat(totals);
    let (responses, bytes) = last.unwrap_or_default();
    rows.push(Row {
        name: "floor: raw client, whole session".into(),
        stat: floor,
        vs_floor: true,
        note: format!(
            "TLS + LOGIN + SELECT + FETCH + LOGOUT; {responses} responses, {:.1} MB",
            bytes as f64 / 1e6
        ),
    });
    rows.push(Row {
        name: "floor: the UID FETCH alone".into(),
        stat: stat(fetches),
        vs_floor: false,
        note: String::new(),
    });
    // The same raw client sending mailbag's FETCH: what the server and the link cost for the
    // items mailbag asks for, without any client-side parsing or storage.
    let mut theirs = Vec::new();
    let mut theirs_bytes = 0;
    for _ in 0..FLOOR_RUNS {
        let r = rt.block_on(raw_floor(d.imap_tls_port(), &ca, Some(MAILBAG_FETCH)))?;
        theirs.push(r.fetch);
        theirs_bytes = r.bytes;
    }
    rows.push(Row {
        name: "raw client sending mailbag's UID FETCH (alone)".into(),
        stat: stat(theirs),
        vs_floor: false,
        note: format!("{:.1} MB", theirs_bytes as f64 / 1e6),
    });
    // The resync floor: the least a client can do to learn that nothing changed.
    let mut empty = Vec::new();
    for _ in 0..RESYNC_RUNS {
        empty.push(rt.block_on(raw_floor(d.imap_tls_port(), &ca, None))?.total);
    }
    rows.push(Row {
        name: "resync floor: raw TLS + LOGIN + SELECT + LOGOUT".into(),
        stat: stat(empty),
        vs_floor: false,
        note: "a new connection, as every `mailbag sync` makes".into(),
    });
    // For reference: the same, with async-native-tls's connector (mailbag's TLS stack until
    // session 3), which has OpenSSL parse the whole system trust store on every connection.
    let mut native = Vec::new();
    for _ in 0..RESYNC_RUNS {
        let r = raw_floor_with(FloorTls::NativeTls, d.imap_tls_port(), &ca, None);
        native.push(rt.block_on(r)?.total);
    }
    rows.push(Row {
        name: "resync floor with async-native-tls's connector".into(),
        stat: stat(native),
        vs_floor: false,
        note: "reference: the TLS setup mailbag no longer uses on Linux".into(),
    });

    // 2. mailbag sync, envelopes only, measured in turns with the floor above.
    let peak_kib = peak.iter().copied().max();
    rows.push(Row {
        name: "mailbag sync, initial (prefetch = 0)".into(),
        stat: stat(initial),
        vs_floor: true,
        note: peak_kib
            .map(|k| format!("peak RSS {:.1} MiB", k as f64 / 1024.0))
            .unwrap_or_default(),
    });
    rows.push(Row {
        name: "conversations, sorted out after the initial sync".into(),
        stat: stat(threaded),
        vs_floor: false,
        note: "by the next session or the first threaded list; not in the sync's time".into(),
    });
    let Some(p) = kept else {
        return Err("no profile".into());
    };

    // 3. No-change resync in the same profile.
    let mut resync = Vec::new();
    for _ in 0..RESYNC_RUNS {
        let (t, line, _) = p.sync(false)?;
        if summary(&line) != Some((0, 0)) {
            return Err(format!("a no-change resync changed something: {line}").into());
        }
        resync.push(t);
    }
    rows.push(Row {
        name: "mailbag sync, no change".into(),
        stat: stat(resync),
        vs_floor: false,
        note: "whole process; all 6 folders".into(),
    });

    // 4. Resync after 10 flags changed on the server.
    let mut flagged = Vec::new();
    for round in 0..FLAG_RUNS {
        change_ten_flags(&d, round)?;
        let (t, line, _) = p.sync(false)?;
        if summary(&line) != Some((0, 10)) {
            return Err(format!("the 10-flag resync did not see 10 changes: {line}").into());
        }
        flagged.push(t);
    }
    rows.push(Row {
        name: "mailbag sync, 10 flags changed elsewhere".into(),
        stat: stat(flagged),
        vs_floor: false,
        note: "whole process; all 6 folders".into(),
    });

    // 5. Process start alone.
    let mut start = Vec::new();
    for _ in 0..RESYNC_RUNS {
        let t = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_mailbag"))
            .arg("--version")
            .output()?;
        if !out.status.success() {
            return Err("mailbag --version failed".into());
        }
        start.push(t.elapsed());
    }
    rows.push(Row {
        name: "mailbag --version (process start)".into(),
        stat: stat(start),
        vs_floor: false,
        note: String::new(),
    });

    // 6. With the default prefetch of 100 bodies.
    let mut with_prefetch = Vec::new();
    for _ in 0..INITIAL_RUNS {
        let p = Profile::new(&d, 100)?;
        let (t, line, _) = p.sync(false)?;
        if summary(&line).map(|s| s.0) != Some(MESSAGES as u64) {
            return Err(format!("initial sync did not bring {MESSAGES} messages: {line}").into());
        }
        with_prefetch.push(t);
    }
    rows.push(Row {
        name: "mailbag sync, initial (prefetch = 100)".into(),
        stat: stat(with_prefetch),
        vs_floor: true,
        note: "also fetches the newest 100 bodies".into(),
    });

    // 7. In-library: sync_folder("INBOX") on a connected backend.
    let config = mailbag::config::load(&p.config_file())?;
    let account = config.account("work").ok_or("no account")?.clone();
    let mut lib_initial = Vec::new();
    let mut lib_connect = Vec::new();
    let mut lib_resync = Vec::new();
    let mut lib_flags = Vec::new();
    for run in 0..INITIAL_RUNS {
        let data = tempfile::tempdir()?;
        let mut cache = Cache::open(data.path())?;
        let mut backend = ImapBackend::new("work", account.clone());
        rt.block_on(async {
            let t = Instant::now();
            backend.connect().await?;
            lib_connect.push(t.elapsed());
            let t = Instant::now();
            let r = backend
                .sync_folder(&mut cache, "INBOX", &mut |_| {})
                .await?;
            lib_initial.push(t.elapsed());
            if r.new_messages != MESSAGES as u64 {
                return Err(format!("in-library sync brought {}", r.new_messages).into());
            }
            if run + 1 == INITIAL_RUNS {
                for _ in 0..RESYNC_RUNS {
                    let t = Instant::now();
                    let r = backend
                        .sync_folder(&mut cache, "INBOX", &mut |_| {})
                        .await?;
                    lib_resync.push(t.elapsed());
                    if r.new_messages + r.flag_changes + r.removed_messages != 0 {
                        return Err("an in-library no-change resync changed something".into());
                    }
                }
                for round in 0..FLAG_RUNS {
                    change_ten_flags(&d, FLAG_RUNS + round)?;
                    let t = Instant::now();
                    let r = backend
                        .sync_folder(&mut cache, "INBOX", &mut |_| {})
                        .await?;
                    lib_flags.push(t.elapsed());
                    if r.flag_changes != 10 {
                        return Err(format!("in-library: {} flag changes", r.flag_changes).into());
                    }
                }
            }
            backend.logout().await;
            Ok::<(), Box<dyn Error>>(())
        })?;
    }
    rows.push(Row {
        name: "in-library: connect (TLS, login, caps)".into(),
        stat: stat(lib_connect),
        vs_floor: false,
        note: String::new(),
    });
    rows.push(Row {
        name: "in-library: sync_folder(INBOX), initial".into(),
        stat: stat(lib_initial),
        vs_floor: true,
        note: "connected; no prefetch".into(),
    });
    rows.push(Row {
        name: "in-library: sync_folder(INBOX), no change".into(),
        stat: stat(lib_resync),
        vs_floor: false,
        note: String::new(),
    });
    rows.push(Row {
        name: "in-library: sync_folder(INBOX), 10 flags".into(),
        stat: stat(lib_flags),
        vs_floor: false,
        note: String::new(),
    });

    // 8. mbsync.
    let skip_mbsync = std::env::var_os("MAILBAG_BENCH_NO_MBSYNC").is_some();
    if skip_mbsync {
        notes.push("MAILBAG_BENCH_NO_MBSYNC is set: the mbsync comparison was SKIPPED".into());
    }
    if have_mbsync && !skip_mbsync {
        for (label, max) in [("", None), (", MaxSize 1k", Some("1k"))] {
            let mut init = Vec::new();
            let mut peaks = Vec::new();
            let mut kept = None;
            for _ in 0..MBSYNC_RUNS {
                let m = Mbsync::new(&d, max)?;
                let (t, kib) = m.run(rss)?;
                if m.downloaded() != MESSAGES {
                    return Err(format!("mbsync stored {} messages", m.downloaded()).into());
                }
                init.push(t);
                peaks.extend(kib);
                kept = Some(m);
            }
            let note = match max {
                None => "downloads whole messages".to_string(),
                Some(_) => "bigger messages become placeholders".to_string(),
            };
            let peak = peaks
                .iter()
                .max()
                .map(|k| format!("; peak RSS {:.1} MiB", *k as f64 / 1024.0))
                .unwrap_or_default();
            rows.push(Row {
                name: format!("mbsync, initial{label}"),
                stat: stat(init),
                vs_floor: true,
                note: format!("{note}{peak}"),
            });
            if max.is_none()
                && let Some(m) = kept
            {
                let mut again = Vec::new();
                for _ in 0..RESYNC_RUNS {
                    again.push(m.run(false)?.0);
                }
                rows.push(Row {
                    name: "mbsync, no change".into(),
                    stat: stat(again),
                    vs_floor: false,
                    note: String::new(),
                });
            }
        }
    } else if !have_mbsync {
        notes.push(
            "mbsync (isync) is NOT installed: the mbsync comparison was SKIPPED \
             (apt-get install isync)"
                .into(),
        );
    }

    // The table, as it goes into docs/performance.md.
    println!();
    println!("| what | runs | min | median | median / floor | notes |");
    println!("|---|---:|---:|---:|---:|---|");
    for r in &rows {
        let ratio = if r.vs_floor {
            format!(
                "{:.2}×",
                r.stat.median.as_secs_f64() / floor.median.as_secs_f64()
            )
        } else {
            String::new()
        };
        println!(
            "| {} | {} | {:.1} ms | {:.1} ms | {ratio} | {} |",
            r.name,
            r.stat.runs,
            ms(r.stat.min),
            ms(r.stat.median),
            r.note
        );
    }
    for n in &notes {
        println!();
        println!("**{n}**");
        eprintln!("WARNING: {n}");
    }
    Ok(())
}
