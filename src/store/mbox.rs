//! mboxrd files (RFC 4155 with the "mboxrd" quoting convention).
//!
//! Each message is stored as a `From ` separator line, the message with every line that matches
//! `^>*From ` given one more `>` (so quoting round-trips exactly), a newline if the message did
//! not end with one, and one empty line. Other tools (mutt, neomutt, Thunderbird's import) read
//! these files as ordinary mboxes.
//!
//! A message is addressed by its [`Span`]: the byte offset of its `From ` line and the length of
//! the separator line plus the quoted message, *excluding* the newline(s) written after it. Reading
//! a span back therefore gives exactly the bytes that were appended, even for a message that did
//! not end with a newline.
//!
//! Durability: [`Mbox::append`] writes without syncing; [`Mbox::sync`] makes everything appended
//! so far durable (`fsync`). Appends are gathered in memory and written in large pieces (one
//! `write` for many small messages); syncing, reading, truncating and dropping the [`Mbox`]
//! write them out first. Callers group appends and sync once (group commit) before they record
//! the spans anywhere else or delete anything on a server. [`Mbox::truncate_to`] cuts off a
//! partial tail left by a crash between an append and the commit that would have recorded it.
//!
//! Locking: an open [`Mbox`] holds an exclusive advisory lock (`flock`) on the file for its whole
//! life, so two mailbag processes never interleave appends.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

/// A failure reading or writing an mbox file.
#[derive(Debug, Error)]
pub enum MboxError {
    #[error("mbox {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("mbox {path} is in use by another process")]
    Locked { path: String },
    #[error("mbox {path}: no message starts at byte {offset}")]
    BadSpan { path: String, offset: u64 },
}

/// Where one message lives in an mbox file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Span {
    /// Offset of the `From ` separator line.
    pub offset: u64,
    /// Length of the separator line plus the quoted message (not the trailing newlines).
    pub length: u64,
}

impl Span {
    /// Where the next message may start after this one, at the least.
    pub fn end(&self) -> u64 {
        self.offset + self.length
    }
}

/// An mbox file opened for appending and reading, with an exclusive advisory lock.
#[derive(Debug)]
pub struct Mbox {
    path: PathBuf,
    file: File,
    /// The file's length as far as we have appended, including [`Mbox::pending`].
    len: u64,
    /// Appended bytes not yet written to the file (the last `pending.len()` bytes of `len`).
    pending: Vec<u8>,
    /// Whether appended bytes have not been synced yet.
    dirty: bool,
    /// Whether the file is known to end with an empty line (true after our own appends).
    ends_clean: bool,
    /// The date of the last `From ` line written, and the time it is of: a download stamps
    /// thousands of messages with the same second.
    stamp: (i64, String),
}

impl Mbox {
    /// Open (creating if missing) and lock the mbox at `path`.
    pub fn open(path: &Path) -> Result<Mbox, MboxError> {
        let io = |source| MboxError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(MboxError::Locked {
                    path: path.display().to_string(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let len = file.metadata().map_err(io)?.len();
        Ok(Mbox {
            path: path.to_path_buf(),
            file,
            len,
            pending: Vec::new(),
            dirty: false,
            ends_clean: false,
            stamp: (0, asctime(0)),
        })
    }

    /// The path of this mbox.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current length of the file in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file holds no bytes at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn io_err(&self, source: std::io::Error) -> MboxError {
        MboxError::Io {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// Append one message; returns where it was written. Not durable until [`Mbox::sync`].
    ///
    /// `sender` goes into the `From ` line (spaces and controls are replaced); `time` is the
    /// Unix time for its date, normally the time of delivery.
    pub fn append(&mut self, raw: &[u8], sender: &str, time: i64) -> Result<Span, MboxError> {
        let mut appender = self.begin(sender, time)?;
        appender.write(self, raw)?;
        appender.finish(self)
    }

    /// Start appending one message that arrives in pieces (a large download is never held in
    /// memory whole). Quoting works across piece boundaries. Only one message may be in
    /// progress at a time: finish (or abort) it before beginning the next.
    pub fn begin(&mut self, sender: &str, time: i64) -> Result<Appender, MboxError> {
        // NOTE: a file that does not end with an empty line (written by another tool, or cut
        // short) would glue our From line onto its last message; start on a fresh line.
        let lead = self.needed_lead()?;
        let start_len = self.len;
        self.put(lead);
        let offset = self.len;
        let mut appender = Appender {
            start_len,
            offset,
            length: 0,
            line_start: Vec::new(),
            at_line_start: true,
            last: None,
        };
        if self.stamp.0 != time {
            self.stamp = (time, asctime(time));
        }
        let before = self.pending.len();
        let stamp = std::mem::take(&mut self.stamp.1);
        push_from_line(&mut self.pending, sender, &stamp);
        self.stamp.1 = stamp;
        let line = (self.pending.len() - before) as u64;
        self.len += line;
        self.ends_clean = false;
        appender.length += line;
        appender.last = Some(b'\n');
        Ok(appender)
    }

    /// Add bytes at the end (in memory until [`Mbox::write_pending`]).
    fn put(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        self.len += bytes.len() as u64;
        self.ends_clean = false;
    }

    /// Write the bytes gathered in memory to the file (not durable until [`Mbox::sync`]).
    fn write_pending(&mut self) -> Result<(), MboxError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let result = self.file.write_all(&self.pending);
        self.pending.clear();
        self.dirty = true;
        if let Err(e) = result {
            // NOTE: how much reached the file is unknown; re-read the length so that a
            // truncate_to (crash repair) still cuts at the right place.
            if let Ok(meta) = self.file.metadata() {
                self.len = meta.len();
            }
            return Err(self.io_err(e));
        }
        Ok(())
    }

    /// The bytes to write before a new message so that it starts after an empty line.
    fn needed_lead(&mut self) -> Result<&'static [u8], MboxError> {
        if self.len == 0 || self.ends_clean {
            return Ok(b"");
        }
        self.write_pending()?;
        let take = self.len.min(2);
        let mut tail = [0u8; 2];
        let tail = &mut tail[..take as usize];
        self.file
            .seek(SeekFrom::Start(self.len - take))
            .map_err(|e| self.io_err(e))?;
        self.file.read_exact(tail).map_err(|e| self.io_err(e))?;
        Ok(match tail {
            [b'\n', b'\n'] => b"",
            [_, b'\n'] | [b'\n'] => b"\n",
            _ => b"\n\n",
        })
    }

    /// Make everything appended so far durable.
    pub fn sync(&mut self) -> Result<(), MboxError> {
        self.write_pending()?;
        if self.dirty {
            self.file.sync_data().map_err(|e| self.io_err(e))?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Cut the file back to `len` bytes (a partial tail after a crash) and sync.
    pub fn truncate_to(&mut self, len: u64) -> Result<(), MboxError> {
        if len < self.len {
            self.write_pending()?;
            self.file.set_len(len).map_err(|e| self.io_err(e))?;
            self.file.sync_all().map_err(|e| self.io_err(e))?;
            self.len = len;
            self.ends_clean = false;
        }
        Ok(())
    }

    /// Read one message back: exactly the bytes that were appended.
    pub fn read(&mut self, span: Span) -> Result<Vec<u8>, MboxError> {
        self.write_pending()?;
        read_span(&mut self.file, &self.path, span)
    }
}

impl Drop for Mbox {
    fn drop(&mut self) {
        // NOTE: best effort; unsynced appends carry no promise (callers sync before they
        // record anything), but a caller that appends and drops expects the bytes in the file.
        let _ = self.write_pending();
    }
}

/// How many appended bytes are gathered in memory before they are written to the file.
const WRITE_CHUNK: usize = 256 * 1024;

/// One message being appended in pieces; see [`Mbox::begin`].
///
/// Dropping it without [`Appender::finish`] leaves a partial tail that the caller must cut off
/// with [`Mbox::truncate_to`] (as startup repair does); [`Appender::abort`] does it at once.
#[derive(Debug)]
pub struct Appender {
    /// The file's length before this message.
    start_len: u64,
    offset: u64,
    /// Bytes of the span so far (From line plus quoted message).
    length: u64,
    /// The start of the current line while it may still turn out to be `>*From `.
    line_start: Vec<u8>,
    at_line_start: bool,
    last: Option<u8>,
}

impl Appender {
    /// Append the next piece of the message.
    pub fn write(&mut self, mbox: &mut Mbox, mut chunk: &[u8]) -> Result<(), MboxError> {
        while let Some((&b, rest)) = chunk.split_first() {
            if self.at_line_start && self.line_start.is_empty() {
                // Fast path: the piece holds enough of the line to decide at once.
                let gt = chunk.iter().take_while(|&&c| c == b'>').count();
                let tail = chunk.get(gt..).unwrap_or_default();
                let seen = tail.get(..tail.len().min(5)).unwrap_or_default();
                if seen == b"From " {
                    self.push(mbox, b">");
                    self.at_line_start = false;
                } else if !seen.is_empty() && !b"From ".starts_with(seen) {
                    self.at_line_start = false;
                }
            }
            if self.at_line_start {
                // Decide whether this line needs one more '>' (mboxrd), byte by byte, since
                // the deciding bytes may arrive in the next piece.
                chunk = rest;
                self.line_start.push(b);
                let gt = self.line_start.iter().take_while(|&&c| c == b'>').count();
                let tail = &self.line_start[gt..];
                if tail == b"From " {
                    self.push(mbox, b">");
                    self.flush_line_start(mbox);
                } else if !b"From ".starts_with(tail) || b == b'\n' {
                    self.flush_line_start(mbox);
                    self.at_line_start = b == b'\n';
                }
                continue;
            }
            // NOTE: mid-line, everything up to the next line that could need a `>` (one that
            // starts with `>` or `F`) is copied as it is, in one piece.
            let cut = memchr::memchr_iter(b'\n', chunk)
                .find(|&i| matches!(chunk.get(i + 1), None | Some(b'>' | b'F')));
            let (run, rest) = match cut {
                Some(i) => chunk.split_at(i + 1),
                None => (chunk, &chunk[..0]),
            };
            self.push(mbox, run);
            self.at_line_start = run.ends_with(b"\n");
            chunk = rest;
        }
        if mbox.pending.len() >= WRITE_CHUNK {
            mbox.write_pending()?;
        }
        Ok(())
    }

    fn push(&mut self, mbox: &mut Mbox, bytes: &[u8]) {
        if let Some(&b) = bytes.last() {
            self.last = Some(b);
        }
        mbox.put(bytes);
        self.length += bytes.len() as u64;
    }

    fn flush_line_start(&mut self, mbox: &mut Mbox) {
        let pending = std::mem::take(&mut self.line_start);
        self.push(mbox, &pending);
        // NOTE: keep the allocation for the next line that starts like `From `.
        self.line_start = pending;
        self.line_start.clear();
        self.at_line_start = false;
    }

    /// Finish the message; returns where it was written. Not durable until [`Mbox::sync`].
    pub fn finish(mut self, mbox: &mut Mbox) -> Result<Span, MboxError> {
        if !self.line_start.is_empty() {
            self.flush_line_start(mbox);
        }
        if self.last != Some(b'\n') {
            mbox.put(b"\n");
        }
        mbox.put(b"\n");
        if mbox.pending.len() >= WRITE_CHUNK {
            mbox.write_pending()?;
        }
        mbox.ends_clean = true;
        Ok(Span {
            offset: self.offset,
            length: self.length,
        })
    }

    /// Give up on this message and cut the file back to where it was.
    pub fn abort(self, mbox: &mut Mbox) -> Result<(), MboxError> {
        mbox.truncate_to(self.start_len)
    }
}

/// Read one message from an mbox file without taking the writer's lock.
pub fn read_message(path: &Path, span: Span) -> Result<Vec<u8>, MboxError> {
    let mut file = File::open(path).map_err(|source| MboxError::Io {
        path: path.display().to_string(),
        source,
    })?;
    read_span(&mut file, path, span)
}

/// Read the message at `span` of `file` (whose name is `path`, for errors), unquoted; a span
/// cut short gives the start of the message.
pub fn read_span(file: &mut File, path: &Path, span: Span) -> Result<Vec<u8>, MboxError> {
    let io = |source| MboxError::Io {
        path: path.display().to_string(),
        source,
    };
    let len = usize::try_from(span.length).map_err(|_| MboxError::BadSpan {
        path: path.display().to_string(),
        offset: span.offset,
    })?;
    let mut buf = vec![0u8; len];
    file.seek(SeekFrom::Start(span.offset)).map_err(io)?;
    file.read_exact(&mut buf).map_err(io)?;
    let Some(body_start) = buf
        .starts_with(b"From ")
        .then(|| buf.iter().position(|&b| b == b'\n'))
        .flatten()
    else {
        return Err(MboxError::BadSpan {
            path: path.display().to_string(),
            offset: span.offset,
        });
    };
    Ok(unquote(&buf[body_start + 1..]))
}

/// One message found by [`scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned {
    pub span: Span,
    /// The message's bytes, unquoted.
    pub raw: Vec<u8>,
}

/// Read every message of an existing mbox file (ours or another tool's), in order.
///
/// A message ends where the next `From ` line begins; the one empty line before that separator
/// belongs to the mbox format and is not part of the message. `visit` is called per message so
/// that a large mbox is never held in memory whole.
pub fn scan(
    path: &Path,
    visit: impl FnMut(Scanned) -> Result<(), MboxError>,
) -> Result<(), MboxError> {
    scan_from(path, 0, visit)
}

/// Like [`scan`], starting at byte `start` (which must be at the start of a line).
pub fn scan_from(
    path: &Path,
    start: u64,
    mut visit: impl FnMut(Scanned) -> Result<(), MboxError>,
) -> Result<(), MboxError> {
    let io = |source| MboxError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    file.seek(SeekFrom::Start(start)).map_err(io)?;
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut pos: u64 = start;
    let mut line = Vec::new();
    // The current message: its span start, its quoted bytes so far.
    let mut current: Option<(u64, Vec<u8>)> = None;
    let mut prev_blank = true;
    let finish = |start: u64,
                  mut quoted: Vec<u8>,
                  visit: &mut dyn FnMut(Scanned) -> Result<(), MboxError>| {
        // Drop the separator's empty line (\n or \r\n) that precedes the next From line.
        if quoted.ends_with(b"\n\n") {
            quoted.pop();
        } else if quoted.ends_with(b"\n\r\n") {
            quoted.truncate(quoted.len() - 2);
        }
        let from_len = quoted.iter().position(|&b| b == b'\n').map_or(0, |p| p + 1);
        let span = Span {
            offset: start,
            length: quoted.len() as u64,
        };
        let raw = unquote(quoted.get(from_len..).unwrap_or_default());
        visit(Scanned { span, raw })
    };
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(io)?;
        if n == 0 {
            break;
        }
        let is_separator = line.starts_with(b"From ") && prev_blank;
        if is_separator {
            if let Some((start, quoted)) = current.take() {
                finish(start, quoted, &mut visit)?;
            }
            current = Some((pos, Vec::new()));
        }
        if let Some((_, quoted)) = current.as_mut() {
            quoted.extend_from_slice(&line);
        }
        prev_blank = line == b"\n" || line == b"\r\n" || current.is_none();
        pos += n as u64;
    }
    if let Some((start, quoted)) = current.take() {
        // NOTE: the file's final empty line is the last message's separator; finish drops it.
        finish(start, quoted, &mut visit)?;
    }
    Ok(())
}

/// The `From ` separator line: `From SENDER DAY MON DD HH:MM:SS YYYY\n` (asctime, UTC).
pub fn from_line(sender: &str, time: i64) -> String {
    let mut line = Vec::with_capacity(64);
    push_from_line(&mut line, sender, &asctime(time));
    String::from_utf8_lossy(&line).into_owned()
}

/// Append the `From ` line of [`from_line`] to `out`, its date already formatted.
fn push_from_line(out: &mut Vec<u8>, sender: &str, date: &str) {
    out.extend_from_slice(b"From ");
    if sender.is_empty() {
        out.extend_from_slice(b"MAILER-DAEMON");
    }
    for c in sender.chars() {
        let c = if c.is_whitespace() || c.is_control() {
            '_'
        } else {
            c
        };
        let mut utf8 = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
    }
    out.push(b' ');
    out.extend_from_slice(date.as_bytes());
    out.push(b'\n');
}

/// Format a Unix time as asctime(3) in UTC, e.g. `Thu Nov 26 06:20:41 2026`.
fn asctime(time: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = time.div_euclid(86_400);
    let secs = time.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let weekday = DAYS[days.rem_euclid(7) as usize];
    let month = MONTHS[(m - 1) as usize];
    format!(
        "{weekday} {month} {d:2} {:02}:{:02}:{:02} {y}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // NOTE: Howard Hinnant's public-domain algorithm, written out from its description.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Whether `line` (from its start) matches `>*From `.
fn is_from_quoted(line: &[u8]) -> bool {
    let gt = line.iter().take_while(|&&b| b == b'>').count();
    line[gt..].starts_with(b"From ")
}

/// Append `raw` to `out` with mboxrd quoting: one more `>` before every `>*From ` line.
pub fn quote_into(raw: &[u8], out: &mut Vec<u8>) {
    for line in raw.split_inclusive(|&b| b == b'\n') {
        if is_from_quoted(line) {
            out.push(b'>');
        }
        out.extend_from_slice(line);
    }
}

/// Undo mboxrd quoting: one `>` fewer before every `>+From ` line.
pub fn unquote(quoted: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(quoted.len());
    for line in quoted.split_inclusive(|&b| b == b'\n') {
        if line.first() == Some(&b'>') && is_from_quoted(line) {
            out.extend_from_slice(&line[1..]);
        } else {
            out.extend_from_slice(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quoting_round_trips_from_lines() {
        let raw = b"Subject: x\n\nFrom here\n>From there\n>>From far\nnot From\nFrom";
        let mut q = Vec::new();
        quote_into(raw, &mut q);
        assert_eq!(
            q,
            b"Subject: x\n\n>From here\n>>From there\n>>>From far\nnot From\nFrom".to_vec()
        );
        assert_eq!(unquote(&q), raw.to_vec());
    }

    #[test]
    fn asctime_matches_known_dates() {
        assert_eq!(asctime(0), "Thu Jan  1 00:00:00 1970");
        assert_eq!(asctime(1_795_761_641), "Fri Nov 27 06:40:41 2026");
        assert_eq!(asctime(951_782_400), "Tue Feb 29 00:00:00 2000");
    }

    #[test]
    fn append_read_and_scan_agree() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.mbox");
        let msgs: Vec<&[u8]> = vec![
            b"From: a\r\nSubject: one\r\n\r\nFrom the start\r\n",
            b"Subject: two\n\n>From quoted\nlast line without newline",
            b"",
            b"Subject: four\n\nbody\n\n\n",
        ];
        let mut mbox = Mbox::open(&path).unwrap();
        let spans: Vec<Span> = msgs
            .iter()
            .map(|m| mbox.append(m, "a@example.com", 1_000_000_000).unwrap())
            .collect();
        mbox.sync().unwrap();
        for (m, s) in msgs.iter().zip(&spans) {
            assert_eq!(&mbox.read(*s).unwrap(), m);
            assert_eq!(&read_message(&path, *s).unwrap(), m);
        }
        let mut found = Vec::new();
        scan(&path, |s| {
            found.push(s);
            Ok(())
        })
        .unwrap();
        assert_eq!(found.len(), msgs.len());
        for (i, (f, s)) in found.iter().zip(&spans).enumerate() {
            assert_eq!(f.span.offset, s.offset, "message {i}");
            // A message without a final newline gains one when read from a plain scan.
            if msgs[i].ends_with(b"\n") {
                assert_eq!(f.raw, msgs[i].to_vec(), "message {i}");
                assert_eq!(f.span, *s, "message {i}");
            }
        }
    }

    #[test]
    fn gathered_appends_reach_the_file_on_sync_and_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.mbox");
        let mut mbox = Mbox::open(&path).unwrap();
        let a = mbox.append(b"Subject: a\n\nFrom here\n", "x", 0).unwrap();
        assert_eq!(
            mbox.len(),
            a.end() + 1,
            "the length counts what is still in memory"
        );
        mbox.sync().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), mbox.len());
        let b = mbox.append(b"Subject: b\n\nB\n", "x", 0).unwrap();
        drop(mbox);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), b.end() + 1);
        let mut found = Vec::new();
        scan(&path, |s| {
            found.push(s.span);
            Ok(())
        })
        .unwrap();
        assert_eq!(found, vec![a, b]);
    }

    #[test]
    fn second_open_is_refused_while_locked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.mbox");
        let _first = Mbox::open(&path).unwrap();
        match Mbox::open(&path) {
            Err(MboxError::Locked { .. }) => {}
            other => panic!("expected Locked, got {other:?}"),
        }
    }

    #[test]
    fn truncate_removes_a_partial_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.mbox");
        let mut mbox = Mbox::open(&path).unwrap();
        let a = mbox.append(b"Subject: a\n\nA\n", "x", 0).unwrap();
        mbox.sync().unwrap();
        let committed = mbox.len();
        mbox.append(b"Subject: b\n\nB\n", "x", 0).unwrap();
        mbox.truncate_to(committed).unwrap();
        drop(mbox);
        let mut found = Vec::new();
        scan(&path, |s| {
            found.push(s);
            Ok(())
        })
        .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].span, a);
    }

    #[test]
    fn appending_to_a_file_without_final_blank_line_starts_a_new_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.mbox");
        std::fs::write(
            &path,
            b"From x Thu Jan  1 00:00:00 1970\nSubject: a\n\nno newline",
        )
        .unwrap();
        let mut mbox = Mbox::open(&path).unwrap();
        let s = mbox.append(b"Subject: b\n\nB\n", "x", 0).unwrap();
        assert_eq!(mbox.read(s).unwrap(), b"Subject: b\n\nB\n".to_vec());
        drop(mbox);
        let mut n = 0;
        scan(&path, |_| {
            n += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 2);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Any byte sequences appended come back identical, by span, in order.
        #[test]
        fn any_messages_round_trip(msgs in proptest::collection::vec(
            proptest::collection::vec(prop_oneof![
                Just(b'\n'), Just(b'\r'), Just(b'>'), Just(b'F'), Just(b'r'), Just(b'o'),
                Just(b'm'), Just(b' '), any::<u8>()
            ], 0..200), 1..8)) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("p.mbox");
            let mut mbox = Mbox::open(&path).unwrap();
            let spans: Vec<Span> = msgs.iter().map(|m| mbox.append(m, "p", 0).unwrap()).collect();
            mbox.sync().unwrap();
            for (m, s) in msgs.iter().zip(&spans) {
                prop_assert_eq!(&mbox.read(*s).unwrap(), m);
            }
        }

        /// Appending in arbitrary pieces stores exactly what appending at once does.
        #[test]
        fn pieces_quote_like_a_whole(msg in proptest::collection::vec(prop_oneof![
                Just(b'\n'), Just(b'>'), Just(b'F'), Just(b'r'), Just(b'o'), Just(b'm'),
                Just(b' '), any::<u8>()], 0..300),
            cuts in proptest::collection::vec(0usize..300, 0..10)) {
            let dir = tempfile::tempdir().unwrap();
            let whole_path = dir.path().join("whole.mbox");
            let mut whole = Mbox::open(&whole_path).unwrap();
            let a = whole.append(&msg, "p", 0).unwrap();
            let pieces_path = dir.path().join("pieces.mbox");
            let mut pieces = Mbox::open(&pieces_path).unwrap();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(msg.len())).collect();
            cuts.sort();
            let mut appender = pieces.begin("p", 0).unwrap();
            let mut at = 0;
            for c in cuts.into_iter().chain([msg.len()]) {
                appender.write(&mut pieces, &msg[at..c]).unwrap();
                at = c;
            }
            let b = appender.finish(&mut pieces).unwrap();
            prop_assert_eq!(a, b);
            drop((whole, pieces));
            let written = std::fs::read(&whole_path).unwrap();
            prop_assert_eq!(&written, &std::fs::read(&pieces_path).unwrap());
            // And it is mboxrd: the From line, the message quoted, an empty line.
            let mut expected = from_line("p", 0).into_bytes();
            quote_into(&msg, &mut expected);
            if !expected.ends_with(b"\n") {
                expected.push(b'\n');
            }
            expected.push(b'\n');
            prop_assert_eq!(written, expected);
        }

        /// Messages that end with a newline (as all RFC 5322 mail does) survive a plain scan.
        #[test]
        fn scan_finds_what_was_appended(msgs in proptest::collection::vec(
            proptest::collection::vec(prop_oneof![
                Just(b"From x\n".to_vec()), Just(b">From y\n".to_vec()), Just(b"\n".to_vec()),
                Just(b"line\r\n".to_vec()), Just(b"text\n".to_vec())
            ], 1..12).prop_map(|v| v.concat()), 1..8)) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("p.mbox");
            let mut mbox = Mbox::open(&path).unwrap();
            for m in &msgs {
                mbox.append(m, "p", 0).unwrap();
            }
            drop(mbox);
            let mut found = Vec::new();
            scan(&path, |s| { found.push(s.raw); Ok(()) }).unwrap();
            let expected: Vec<Vec<u8>> = msgs.iter().filter(|m| !m.is_empty()).cloned().collect();
            let got: Vec<Vec<u8>> = found.into_iter().filter(|m| !m.is_empty()).collect();
            prop_assert_eq!(got, expected);
        }
    }
}
