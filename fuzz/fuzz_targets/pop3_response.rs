//! Fuzz the POP3 reply side: arbitrary server bytes must never panic the client, and any body
//! the decoder accepts must survive dot-stuffing and decoding again unchanged
//! (decode → encode → decode).
//!
//! Input layout: byte 0 picks the split size, byte 1 picks which commands are outstanding,
//! the rest is what the "server" sends.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mailbag::pop3::response::{BodyDecoder, dot_stuff};
use mailbag::pop3::{Client, ClientError, Command, Event};

fn commands(mask: u8) -> Vec<Command> {
    let all = [
        Command::Capa,
        Command::Stat,
        Command::List(None),
        Command::Uidl(None),
        Command::Retr(1),
        Command::Top(1, 5),
        Command::Uidl(Some(1)),
        Command::AuthPlain {
            authzid: None,
            authcid: "u".into(),
            password: "p".into(),
        },
    ];
    all.into_iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, cmd)| cmd)
        .collect()
}

/// Decode `wire` as one multi-line body; `Some(body)` if the terminator was reached.
fn decode_body(wire: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut decoder = BodyDecoder::new();
    let mut body = Vec::new();
    let used = decoder.decode(wire, &mut body);
    decoder.is_finished().then_some((body, used))
}

fuzz_target!(|data: &[u8]| {
    let [split, mask, wire @ ..] = data else {
        return;
    };
    let split = usize::from(*split).max(1);

    // The client, fed in pieces: events or a clean error, never a panic.
    let mut client = Client::new();
    for cmd in commands(*mask) {
        let _ = client.send(cmd);
    }
    let mut body = Vec::new();
    'feed: for piece in wire.chunks(split) {
        client.enqueue_input(piece);
        loop {
            match client.next_event() {
                Ok(Some(Event::RetrData { chunk, .. } | Event::TopData { chunk, .. })) => {
                    body.extend_from_slice(&chunk);
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => {
                    assert_eq!(client.next_event(), Err(ClientError::Failed));
                    break 'feed;
                }
            }
        }
        while client.next_output().is_some() {}
    }

    // decode → encode → decode: the body is a fixed point after one round.
    if let Some((decoded, _)) = decode_body(wire) {
        let mut restuffed = Vec::new();
        dot_stuff(&decoded, &mut restuffed);
        let again = decode_body(&restuffed);
        assert_eq!(again, Some((decoded, restuffed.len())));
    }
});
