//! POP3 (RFC 1939, RFC 2449 CAPA, RFC 2595 STLS, RFC 5034 AUTH) without sockets.
//!
//! Commands are encoded to bytes and replies are parsed from bytes fed in any split; only the
//! tokio loop in `backend::pop3` touches a socket.
//!
//! - [`command`] encodes commands (and refuses arguments that would inject a second one).
//! - [`response`] parses status lines, listings, capabilities and streams dot-stuffed bodies.
//! - [`client`] is the state machine that pairs replies with the commands sent (pipelining
//!   included) and turns them into [`Event`]s.

pub mod client;
pub mod command;
mod md5;
pub mod response;

pub use client::{Client, ClientError, Event};
pub use command::{Command, CommandError, CommandKind, Secret};
pub use response::{Capability, Expire, ParseError, ResponseCode, Status, StatusKind};
