//! A sans-I/O POP3 client: bytes in, events out, bytes to write out (RFC 1939, RFC 2449).
//!
//! The socket loop stays thin:
//!
//! ```text
//! loop {
//!     while let Some(bytes) = client.next_output() { socket.write_all(&bytes) }
//!     while let Some(event) = client.next_event()? { handle(event) }
//!     let n = socket.read(&mut buf); client.enqueue_input(&buf[..n]);
//! }
//! ```
//!
//! [`Client::send`] queues a command's bytes at once and remembers that a reply is owed, so
//! several commands may be outstanding (RFC 2449 §6.6 PIPELINING); replies are matched to them
//! in order. Without PIPELINING the caller must wait for each reply before sending the next.
//! Message bodies are streamed out as [`Event::RetrData`] / [`Event::TopData`] chunks, never
//! held whole. After a protocol error the session is unusable and every later call fails.

use std::collections::VecDeque;

use thiserror::Error;

use super::command::{Command, CommandError, CommandKind};
use super::response::{
    self, BodyDecoder, Capability, ListingLine, MAX_LINE_LEN, MAX_LISTING_LINES, ParseError,
    ResponseCode, StatusKind,
};

/// Something that happened on the connection, in the order the server said it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The server's `+OK` greeting (RFC 1939 §4), with the APOP timestamp if it offered one.
    GreetingReceived {
        apop_timestamp: Option<String>,
        code: Option<ResponseCode>,
        text: String,
    },
    /// The server greeted with `-ERR` and will close the connection.
    GreetingRejected {
        code: Option<ResponseCode>,
        text: String,
    },
    /// `+OK` to a command whose reply carries nothing else (USER, PASS, APOP, AUTH, STLS,
    /// DELE, RSET, NOOP, QUIT). After STLS, start TLS before reading anything else.
    Ok {
        cmd: CommandKind,
        code: Option<ResponseCode>,
        text: String,
    },
    /// `-ERR` to any command.
    Err {
        cmd: CommandKind,
        code: Option<ResponseCode>,
        text: String,
    },
    /// The full CAPA listing.
    CapaReceived(Vec<Capability>),
    /// The STAT reply: message count and total size in octets.
    StatReceived { count: u32, size: u64 },
    /// Scan listings `(msg, size)`: all of them for `LIST`, one for `LIST n`.
    ListReceived(Vec<(u32, u64)>),
    /// Unique-id listings `(msg, uid)`: all of them for `UIDL`, one for `UIDL n`.
    UidlReceived(Vec<(u32, String)>),
    /// `+OK` to RETR; `octets` is the size the server announced, if it did.
    RetrStarted { msg: u32, octets: Option<u64> },
    /// The next piece of a RETR body, dot-unstuffed, line endings as received.
    RetrData { msg: u32, chunk: Vec<u8> },
    /// The RETR body is complete.
    RetrFinished { msg: u32 },
    /// `+OK` to TOP.
    TopStarted { msg: u32, lines: u32 },
    /// The next piece of a TOP reply (headers and the first lines of the body).
    TopData { msg: u32, chunk: Vec<u8> },
    /// The TOP reply is complete.
    TopFinished { msg: u32 },
}

/// A failure of the POP3 session. Server lines are shown escaped and truncated.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ClientError {
    /// The command could not be encoded (bad argument); nothing was queued.
    #[error("cannot send command: {0}")]
    Command(#[from] CommandError),
    /// The server's reply did not follow the protocol.
    #[error("bad reply to {context}: {source}")]
    Reply {
        context: String,
        #[source]
        source: ParseError,
    },
    /// The server sent a line while no command was waiting for a reply.
    #[error("server sent a line no command was waiting for: {line}")]
    Unsolicited { line: String },
    /// A command was sent while STLS awaits its reply (RFC 2595 §4 forbids pipelining it).
    #[error("cannot send a command while stls is waiting for its reply")]
    StlsPending,
    /// An earlier error left the session in an unknown state.
    #[error("the pop3 session is unusable after an earlier protocol error")]
    Failed,
}

/// What one status-line step achieved.
enum Step {
    Event(Event),
    /// Progress was made without an event (a multi-line reply began, a challenge was
    /// answered); keep going.
    Continue,
    NeedInput,
}

/// A command waiting for its reply.
#[derive(Debug)]
struct Pending {
    kind: CommandKind,
    /// For a long AUTH PLAIN or AUTH with a bearer token: the response to send on the
    /// server's first `+ ` challenge.
    continuation: Option<Vec<u8>>,
    /// For AUTH with a bearer token: the answer to the server's error challenge.
    error_answer: Option<Vec<u8>>,
}

/// What the next bytes from the server are expected to be.
#[derive(Debug)]
enum State {
    /// The greeting, before anything else.
    Greeting,
    /// A status line answering the oldest pending command.
    Status,
    /// Lines of a CAPA listing.
    Capa(Vec<Capability>),
    /// Lines of a LIST listing.
    List(Vec<(u32, u64)>),
    /// Lines of a UIDL listing.
    Uidl(Vec<(u32, String)>),
    /// A RETR or TOP body.
    Body {
        msg: u32,
        top: bool,
        decoder: BodyDecoder,
    },
}

/// The POP3 client state machine. It owns no socket; see the module docs for the loop.
#[derive(Debug)]
pub struct Client {
    input: Vec<u8>,
    /// How much of `input` has been used.
    read: usize,
    output: VecDeque<Vec<u8>>,
    pending: VecDeque<Pending>,
    state: State,
    ready: VecDeque<Event>,
    failed: bool,
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

impl Client {
    /// A client for a freshly opened connection, expecting the server's greeting first.
    pub fn new() -> Self {
        Client {
            input: Vec::new(),
            read: 0,
            output: VecDeque::new(),
            pending: VecDeque::new(),
            state: State::Greeting,
            ready: VecDeque::new(),
            failed: false,
        }
    }

    /// Feed bytes read from the server, in any split.
    pub fn enqueue_input(&mut self, bytes: &[u8]) {
        if self.read == self.input.len() {
            self.input.clear();
            self.read = 0;
        }
        self.input.extend_from_slice(bytes);
    }

    /// Queue a command: its bytes become available from [`Client::next_output`] and its reply
    /// is expected after those of the commands sent before it.
    pub fn send(&mut self, cmd: Command) -> Result<(), ClientError> {
        if self.failed {
            return Err(ClientError::Failed);
        }
        if self.pending.iter().any(|p| p.kind == CommandKind::Stls) {
            return Err(ClientError::StlsPending);
        }
        let encoded = cmd.encode_full()?;
        self.output.push_back(encoded.line);
        self.pending.push_back(Pending {
            kind: cmd.kind(),
            continuation: encoded.continuation,
            error_answer: encoded.error_answer,
        });
        Ok(())
    }

    /// The next bytes to write to the server, if any.
    pub fn next_output(&mut self) -> Option<Vec<u8>> {
        self.output.pop_front()
    }

    /// How many commands are still waiting for their replies.
    pub fn pending_replies(&self) -> usize {
        self.pending.len()
    }

    /// Whether the server owes more bytes: a command awaits its reply, a multi-line reply
    /// (CAPA, LIST, UIDL, RETR, TOP) has begun but not ended, or a line is half received.
    ///
    /// NOTE: [`Client::pending_replies`] drops to zero once a multi-line reply's status line is
    /// read, so it cannot tell a connection closed mid-listing from one closed between replies.
    pub fn awaiting_reply(&self) -> bool {
        !self.pending.is_empty()
            || !matches!(self.state, State::Status | State::Greeting)
            || self.read < self.input.len()
    }

    /// The next event, `Ok(None)` if more input is needed first.
    ///
    /// After STLS's `+OK`, any bytes already received are discarded (RFC 2595 §4: nothing the
    /// server sent before the TLS handshake may be trusted).
    pub fn next_event(&mut self) -> Result<Option<Event>, ClientError> {
        if self.failed {
            return Err(ClientError::Failed);
        }
        if let Some(event) = self.ready.pop_front() {
            return Ok(Some(event));
        }
        let result = self.step();
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn consume(&mut self, n: usize) {
        self.read = (self.read + n).min(self.input.len());
        if self.read == self.input.len() {
            self.input.clear();
            self.read = 0;
        } else if self.read >= MAX_LINE_LEN && self.read * 2 >= self.input.len() {
            // NOTE: compact now and then, not on every line, so pipelined replies in one
            // large read do not cost a copy each.
            self.input.drain(..self.read);
            self.read = 0;
        }
    }

    fn step(&mut self) -> Result<Option<Event>, ClientError> {
        loop {
            let buf = &self.input[self.read..];
            if buf.is_empty() {
                return Ok(None);
            }
            match &mut self.state {
                State::Greeting => {
                    let Some((status, used)) =
                        response::parse_status_line(buf).map_err(|e| reply_error("greeting", e))?
                    else {
                        return Ok(None);
                    };
                    self.consume(used);
                    self.state = State::Status;
                    return Ok(Some(match status.kind {
                        StatusKind::Ok => Event::GreetingReceived {
                            apop_timestamp: response::apop_timestamp(&status.text),
                            code: status.code,
                            text: status.text,
                        },
                        StatusKind::Err => Event::GreetingRejected {
                            code: status.code,
                            text: status.text,
                        },
                    }));
                }
                State::Status => match self.step_status()? {
                    Step::Event(event) => return Ok(Some(event)),
                    Step::Continue => {}
                    Step::NeedInput => return Ok(None),
                },
                State::Body { msg, top, decoder } => {
                    let (msg, top) = (*msg, *top);
                    let mut chunk = Vec::new();
                    let used = decoder.decode(buf, &mut chunk);
                    let finished = decoder.is_finished();
                    self.consume(used);
                    if finished {
                        self.state = State::Status;
                        let done = if top {
                            Event::TopFinished { msg }
                        } else {
                            Event::RetrFinished { msg }
                        };
                        if chunk.is_empty() {
                            return Ok(Some(done));
                        }
                        self.ready.push_back(done);
                    }
                    if !chunk.is_empty() {
                        return Ok(Some(if top {
                            Event::TopData { msg, chunk }
                        } else {
                            Event::RetrData { msg, chunk }
                        }));
                    }
                    if used == 0 {
                        return Ok(None);
                    }
                }
                State::Capa(_) | State::List(_) | State::Uidl(_) => match self.step_listing()? {
                    Step::Event(event) => return Ok(Some(event)),
                    Step::Continue => {}
                    Step::NeedInput => return Ok(None),
                },
            }
        }
    }

    /// Handle one line of a CAPA, LIST or UIDL listing.
    fn step_listing(&mut self) -> Result<Step, ClientError> {
        let what = match self.state {
            State::Capa(_) => "CAPA",
            State::List(_) => "LIST",
            _ => "UIDL",
        };
        let buf = &self.input[self.read..];
        let Some((line, used)) =
            response::parse_listing_line(buf).map_err(|e| reply_error(what, e))?
        else {
            return Ok(Step::NeedInput);
        };
        let too_many = || {
            reply_error(
                what,
                ParseError::TooManyLines {
                    limit: MAX_LISTING_LINES,
                },
            )
        };
        let event = match (line, &mut self.state) {
            (ListingLine::End, State::Capa(caps)) => {
                Some(Event::CapaReceived(std::mem::take(caps)))
            }
            (ListingLine::End, State::List(items)) => {
                Some(Event::ListReceived(std::mem::take(items)))
            }
            (ListingLine::End, State::Uidl(items)) => {
                Some(Event::UidlReceived(std::mem::take(items)))
            }
            // NOTE: tolerate blank lines some servers put in CAPA.
            (ListingLine::Line(line), State::Capa(_))
                if line.iter().all(u8::is_ascii_whitespace) =>
            {
                None
            }
            (ListingLine::Line(line), State::Capa(caps)) => {
                if caps.len() >= MAX_LISTING_LINES {
                    return Err(too_many());
                }
                caps.push(response::parse_capability(line).map_err(|e| reply_error(what, e))?);
                None
            }
            (ListingLine::Line(line), State::List(items)) => {
                if items.len() >= MAX_LISTING_LINES {
                    return Err(too_many());
                }
                items.push(response::parse_scan_line(line).map_err(|e| reply_error(what, e))?);
                None
            }
            (ListingLine::Line(line), State::Uidl(items)) => {
                if items.len() >= MAX_LISTING_LINES {
                    return Err(too_many());
                }
                items.push(response::parse_uidl_line(line).map_err(|e| reply_error(what, e))?);
                None
            }
            // Not reachable: only called in a listing state.
            (_, State::Greeting | State::Status | State::Body { .. }) => None,
        };
        self.consume(used);
        match event {
            Some(event) => {
                self.state = State::Status;
                Ok(Step::Event(event))
            }
            None => Ok(Step::Continue),
        }
    }

    /// Handle one status line answering the oldest pending command.
    ///
    fn step_status(&mut self) -> Result<Step, ClientError> {
        let buf = &self.input[self.read..];
        let context = self.pending.front().map_or("server", |p| p.kind.name());
        let Some((line, used)) =
            response::find_line(buf, MAX_LINE_LEN).map_err(|e| reply_error(context, e))?
        else {
            return Ok(Step::NeedInput);
        };
        let Some(front) = self.pending.front_mut() else {
            return Err(ClientError::Unsolicited {
                line: response::escape_line(line),
            });
        };
        let cmd = front.kind;

        // RFC 5034 §4: a `+ ` continuation asks for (more) SASL data.
        if matches!(cmd, CommandKind::AuthPlain | CommandKind::AuthBearer)
            && (line == b"+" || line.starts_with(b"+ "))
        {
            // NOTE: PLAIN has one step; a second challenge, or one we have no answer for,
            // is cancelled with `*` and the server then replies -ERR. A bearer mechanism's
            // later challenge is the server's error report (RFC 7628 §3.2.2), answered with
            // the mechanism's dummy response so the server can send its -ERR.
            let answer = front
                .continuation
                .take()
                .or_else(|| front.error_answer.take())
                .unwrap_or_else(|| b"*\r\n".to_vec());
            self.output.push_back(answer);
            self.consume(used);
            return Ok(Step::Continue);
        }

        let status = response::parse_status(line).map_err(|e| reply_error(cmd.name(), e))?;
        if status.kind == StatusKind::Err {
            self.pending.pop_front();
            self.consume(used);
            return Ok(Step::Event(Event::Err {
                cmd,
                code: status.code,
                text: status.text,
            }));
        }

        let event = match cmd {
            CommandKind::Capa => {
                self.state = State::Capa(Vec::new());
                None
            }
            CommandKind::List(None) => {
                self.state = State::List(Vec::new());
                None
            }
            CommandKind::Uidl(None) => {
                self.state = State::Uidl(Vec::new());
                None
            }
            CommandKind::Retr(msg) => {
                self.state = State::Body {
                    msg,
                    top: false,
                    decoder: BodyDecoder::new(),
                };
                Some(Event::RetrStarted {
                    msg,
                    octets: response::leading_number(&status.text),
                })
            }
            CommandKind::Top(msg, lines) => {
                self.state = State::Body {
                    msg,
                    top: true,
                    decoder: BodyDecoder::new(),
                };
                Some(Event::TopStarted { msg, lines })
            }
            CommandKind::Stat => {
                let (count, size) = response::parse_stat(status.text.as_bytes())
                    .map_err(|e| reply_error(cmd.name(), e))?;
                Some(Event::StatReceived { count, size })
            }
            CommandKind::List(Some(_)) => {
                let item = response::parse_scan_line(status.text.as_bytes())
                    .map_err(|e| reply_error(cmd.name(), e))?;
                Some(Event::ListReceived(vec![item]))
            }
            CommandKind::Uidl(Some(_)) => {
                let item = response::parse_uidl_line(status.text.as_bytes())
                    .map_err(|e| reply_error(cmd.name(), e))?;
                Some(Event::UidlReceived(vec![item]))
            }
            CommandKind::User
            | CommandKind::Pass
            | CommandKind::Apop
            | CommandKind::AuthPlain
            | CommandKind::AuthBearer
            | CommandKind::Stls
            | CommandKind::Dele(_)
            | CommandKind::Rset
            | CommandKind::Noop
            | CommandKind::Quit => Some(Event::Ok {
                cmd,
                code: status.code,
                text: status.text,
            }),
        };
        self.pending.pop_front();
        self.consume(used);
        if cmd == CommandKind::Stls {
            // NOTE: RFC 2595 §4 / DESIGN.md: bytes after STLS's +OK and before the handshake
            // could be injected by an attacker; drop them.
            self.input.clear();
            self.read = 0;
        }
        Ok(event.map_or(Step::Continue, Step::Event))
    }
}

fn reply_error(context: &str, source: ParseError) -> ClientError {
    ClientError::Reply {
        context: context.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests;
