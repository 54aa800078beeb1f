//! POP3 (RFC 1939, RFC 2449 CAPA, RFC 2595 STLS, RFC 5034 AUTH) without sockets.
//!
//! Commands are encoded to bytes and replies are parsed from bytes fed in any split; only the
//! tokio loop in `backend::pop3` touches a socket.
