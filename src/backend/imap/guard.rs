//! A cap on what one IMAP server response may make mailbag buffer.
//!
//! The IMAP parser buffers a whole response (up to 512 MiB in async-imap) before handing it
//! over, so a hostile or broken server could make mailbag hold hundreds of MiB by announcing a
//! huge literal (RFC 3501 §4.3, `{N}\r\n` followed by N bytes) or by never ending a line. This
//! wrapper watches the byte stream as it is read — it tracks literals so that a body's content
//! is never mistaken for syntax — and fails the read when a literal is larger than
//! [`MAX_LITERAL`], a line (outside literals) longer than [`MAX_LINE`], or a whole response,
//! literals included, larger than [`MAX_RESPONSE`]. mailbag itself never asks for more than
//! [`MAX_LITERAL`] at once: message bodies are fetched in parts.
//!
//! It also gathers what is written until a flush: async-imap writes a command in four pieces
//! (tag, space, command, CRLF) and flushes after each command, so without this every command
//! went out as four TLS records and four packets.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The largest literal a server may send in one response.
pub const MAX_LITERAL: u64 = 32 * 1024 * 1024;
/// The longest line (not counting literals) a server may send.
pub const MAX_LINE: u64 = 8 * 1024 * 1024;
/// The most one response may hold: a literal at the cap and a line at the cap. Without this,
/// a response of many literals, each under the cap, could grow without end.
pub const MAX_RESPONSE: u64 = MAX_LITERAL + MAX_LINE;
/// Written bytes held back until a flush, at most.
const WRITE_BUFFER: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    /// In a line, outside any literal.
    Line,
    /// After `{`: reading the literal's length.
    Count(u64),
    /// After `{N` and `}` or `+}`: expecting CR LF.
    Close(u64),
    CloseCr(u64),
    /// Inside a literal with this many bytes left.
    Literal(u64),
}

/// A stream that refuses oversized server responses; see the module docs.
#[derive(Debug)]
pub struct Guarded<T> {
    inner: T,
    lex: Lex,
    line: u64,
    /// Bytes of the response being read so far, its literals included.
    response: u64,
    /// Written and not yet passed on (see the module docs).
    out: Vec<u8>,
}

impl<T> Guarded<T> {
    pub fn new(inner: T) -> Self {
        Guarded {
            inner,
            lex: Lex::Line,
            line: 0,
            response: 0,
            out: Vec::new(),
        }
    }

    pub fn into_inner(self) -> T {
        self.inner
    }

    /// Check the bytes just read; an error names the limit that was crossed.
    fn check(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.check_runs(bytes, true)
    }

    /// [`Self::check`]; with `runs`, a line's bytes up to the next `{` or LF are taken in one
    /// step (the same result as one at a time, which the tests compare).
    fn check_runs(&mut self, bytes: &[u8], runs: bool) -> std::io::Result<()> {
        let mut i = 0;
        while i < bytes.len() {
            // NOTE: outside a literal only `{` and LF change the state; checking the other
            // bytes one at a time was a tenth of the reading thread's work in a big FETCH.
            if runs && self.lex == Lex::Line {
                let rest = &bytes[i..];
                let run = memchr::memchr2(b'{', b'\n', rest).unwrap_or(rest.len());
                if run > 0 {
                    self.count_response(run as u64)?;
                    self.count_line(run as u64)?;
                    i += run;
                    continue;
                }
            }
            let b = bytes[i];
            if let Lex::Literal(left) = self.lex {
                let take = left.min((bytes.len() - i) as u64);
                self.count_response(take)?;
                i += take as usize;
                let left = left - take;
                self.lex = if left == 0 {
                    Lex::Line
                } else {
                    Lex::Literal(left)
                };
                continue;
            }
            // NOTE: every byte outside a literal counts, the `{`, digits and `+` of a literal's
            // announcement too: `{` followed by endless zeros is an endless line as well.
            self.count_response(1)?;
            self.count_line(1)?;
            self.lex = match self.lex {
                Lex::Literal(left) => Lex::Literal(left),
                Lex::Line => match b {
                    b'\n' => {
                        self.line = 0;
                        self.response = 0;
                        Lex::Line
                    }
                    b'{' => Lex::Count(0),
                    _ => Lex::Line,
                },
                Lex::Count(n) => match b {
                    b'0'..=b'9' => {
                        let n = n.saturating_mul(10).saturating_add(u64::from(b - b'0'));
                        if n > MAX_LITERAL {
                            return Err(too_big(format!(
                                "the server announced a literal larger than {} MiB",
                                MAX_LITERAL >> 20
                            )));
                        }
                        Lex::Count(n)
                    }
                    b'+' => Lex::Count(n),
                    b'}' => Lex::Close(n),
                    b'\n' => {
                        self.line = 0;
                        self.response = 0;
                        Lex::Line
                    }
                    _ => Lex::Line,
                },
                Lex::Close(n) => match b {
                    b'\r' => Lex::CloseCr(n),
                    b'\n' => self.start_literal(n),
                    _ => Lex::Line,
                },
                Lex::CloseCr(n) => match b {
                    b'\n' => self.start_literal(n),
                    _ => Lex::Line,
                },
            };
            i += 1;
        }
        Ok(())
    }

    /// Count `n` more bytes of the current response.
    fn count_response(&mut self, n: u64) -> std::io::Result<()> {
        count(&mut self.response, n, MAX_RESPONSE, "a response larger")
    }

    /// Count `n` more bytes of the current line.
    fn count_line(&mut self, n: u64) -> std::io::Result<()> {
        count(&mut self.line, n, MAX_LINE, "a line longer")
    }

    fn start_literal(&mut self, n: u64) -> Lex {
        self.line = 0;
        if n == 0 { Lex::Line } else { Lex::Literal(n) }
    }
}

/// Add `n` to `total`; past `max`, the error says the server sent `what` than the cap.
fn count(total: &mut u64, n: u64, max: u64, what: &str) -> std::io::Result<()> {
    *total = total.saturating_add(n);
    if *total > max {
        return Err(too_big(format!(
            "the server sent {what} than {} MiB",
            max >> 20
        )));
    }
    Ok(())
}

fn too_big(what: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what)
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let fresh = &buf.filled()[before..];
                Poll::Ready(this.check(fresh))
            }
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> Guarded<T> {
    /// Pass on everything held back.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while !self.out.is_empty() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.out) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => {
                    self.out.drain(..n.min(self.out.len()));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.out.len() + buf.len() > WRITE_BUFFER {
            match this.poll_drain(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
            if buf.len() > WRITE_BUFFER {
                return Pin::new(&mut this.inner).poll_write(cx, buf);
            }
        }
        this.out.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match this.poll_drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_flush(cx),
            other => other,
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match this.poll_drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_shutdown(cx),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(chunks: &[&[u8]]) -> std::io::Result<()> {
        let mut g = Guarded::new(());
        for c in chunks {
            g.check(c)?;
        }
        Ok(())
    }

    /// Counts the writes that reach it.
    #[derive(Default)]
    struct Counting {
        writes: usize,
        data: Vec<u8>,
    }

    impl AsyncWrite for Counting {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            let this = self.get_mut();
            this.writes += 1;
            this.data.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_command_goes_out_in_one_write_at_the_flush() {
        use tokio::io::AsyncWriteExt;
        let mut g = Guarded::new(Counting::default());
        for piece in [&b"a1"[..], b" ", b"NOOP", b"\r\n"] {
            g.write_all(piece).await.unwrap();
        }
        assert_eq!(g.inner.writes, 0, "held until the flush");
        g.flush().await.unwrap();
        assert_eq!(
            (g.inner.writes, &g.inner.data[..]),
            (1, &b"a1 NOOP\r\n"[..])
        );
        // Something bigger than the buffer still arrives whole and in order.
        let big = vec![b'x'; WRITE_BUFFER + 10];
        g.write_all(b"a2 ").await.unwrap();
        g.write_all(&big).await.unwrap();
        g.flush().await.unwrap();
        assert_eq!(g.inner.data.len(), b"a1 NOOP\r\na2 ".len() + big.len());
        assert!(g.inner.data.ends_with(&big));
    }

    #[test]
    fn literal_contents_are_not_syntax() {
        // A body that itself contains "{999999999999}\r\n" is just data inside the literal.
        let body = b"* 1 FETCH (BODY[] {22}\r\n{999999999999}\r\nxxxxx)\r\n";
        assert!(feed(&[body]).is_ok());
        // Split anywhere, the same.
        for cut in 0..body.len() {
            assert!(feed(&[&body[..cut], &body[cut..]]).is_ok(), "cut at {cut}");
        }
    }

    proptest::proptest! {
        /// Taking runs of line bytes at once ends in the same state, and fails on the same
        /// input, as taking every byte on its own, however the input is split.
        #[test]
        fn runs_match_bytes_one_at_a_time(
            pieces in proptest::collection::vec(
                proptest::sample::select(vec![
                    &b"{"[..], b"}", b"+}", b"\r\n", b"\n", b"\r", b"7", b"0", b"12",
                    b"x", b"* 1 FETCH (", b"BODY[] ", b"{3}\r\n", b"{0}\r\n",
                    b"{33554433}\r\n", b"abc def ",
                ]),
                0..60,
            ),
            cuts in proptest::collection::vec(0usize..400, 0..6),
        ) {
            let data: Vec<u8> = pieces.concat();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.push(0);
            cuts.push(data.len());
            cuts.sort_unstable();
            let mut fast = Guarded::new(());
            let mut slow = Guarded::new(());
            let mut fast_result = Ok(());
            for w in cuts.windows(2) {
                fast_result = fast.check_runs(&data[w[0]..w[1]], true);
                if fast_result.is_err() {
                    break;
                }
            }
            let mut slow_result = Ok(());
            for b in &data {
                slow_result = slow.check_runs(std::slice::from_ref(b), false);
                if slow_result.is_err() {
                    break;
                }
            }
            proptest::prop_assert_eq!(fast_result.is_ok(), slow_result.is_ok());
            if fast_result.is_ok() {
                proptest::prop_assert_eq!(
                    (fast.lex, fast.line, fast.response),
                    (slow.lex, slow.line, slow.response)
                );
            }
        }
    }

    #[test]
    fn huge_literals_and_endless_lines_are_refused() {
        let err = feed(&[b"* 1 FETCH (BODY[] {400000000}\r\n"]).unwrap_err();
        assert!(
            err.to_string().contains("literal larger than 32 MiB"),
            "{err}"
        );
        let long = vec![b'a'; (MAX_LINE + 1) as usize];
        let err = feed(&[&long]).unwrap_err();
        assert!(err.to_string().contains("line longer"), "{err}");
        // Nor can an endless literal announcement hide a line from the count.
        for filler in [b'0', b'+'] {
            let mut endless = b"* 1 FETCH (BODY[] {".to_vec();
            endless.resize((MAX_LINE + 1) as usize, filler);
            let err = feed(&[&endless]).unwrap_err();
            assert!(err.to_string().contains("line longer"), "{err}");
        }
        // A big literal below the cap is fine, and lines after it are counted afresh.
        let ok = format!("* 1 FETCH (BODY[] {{{}}}\r\n", MAX_LITERAL);
        let mut g = Guarded::new(());
        g.check(ok.as_bytes()).unwrap();
        g.check(&vec![b'x'; MAX_LITERAL as usize]).unwrap();
        g.check(b")\r\n").unwrap();
        // But many literals under the cap in one response add up.
        let mut g = Guarded::new(());
        let part = format!(" BODY[1] {{{}}}\r\n", MAX_LITERAL / 2);
        let data = vec![b'x'; (MAX_LITERAL / 2) as usize];
        g.check(b"* 1 FETCH (").unwrap();
        let err = (0..4)
            .find_map(|_| g.check(part.as_bytes()).and_then(|()| g.check(&data)).err())
            .expect("refused");
        assert!(err.to_string().contains("response larger"), "{err}");
    }
}
