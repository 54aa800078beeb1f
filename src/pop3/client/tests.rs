use super::*;
use crate::pop3::command::Secret;
use crate::pop3::response::dot_stuff;

/// Feed `input` in one piece and drain every event (stopping at the first error).
fn run(client: &mut Client, input: &[u8]) -> Result<Vec<Event>, ClientError> {
    client.enqueue_input(input);
    drain(client)
}

fn drain(client: &mut Client) -> Result<Vec<Event>, ClientError> {
    let mut events = Vec::new();
    while let Some(event) = client.next_event()? {
        events.push(event);
    }
    Ok(events)
}

/// Feed `input` one byte at a time, draining events after each byte.
fn run_bytewise(client: &mut Client, input: &[u8]) -> Result<Vec<Event>, ClientError> {
    let mut events = Vec::new();
    for byte in input {
        client.enqueue_input(std::slice::from_ref(byte));
        events.extend(drain(client)?);
    }
    Ok(events)
}

/// Merge adjacent data chunks so event lists from different splits compare equal.
fn coalesce(events: Vec<Event>) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::new();
    for event in events {
        match (out.last_mut(), event) {
            (Some(Event::RetrData { msg: a, chunk: acc }), Event::RetrData { msg: b, chunk })
                if *a == b =>
            {
                acc.extend_from_slice(&chunk)
            }
            (Some(Event::TopData { msg: a, chunk: acc }), Event::TopData { msg: b, chunk })
                if *a == b =>
            {
                acc.extend_from_slice(&chunk)
            }
            (_, event) => out.push(event),
        }
    }
    out
}

fn outputs(client: &mut Client) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(bytes) = client.next_output() {
        out.extend_from_slice(&bytes);
    }
    out
}

fn client_with(cmds: Vec<Command>) -> Client {
    let mut client = Client::new();
    for cmd in cmds {
        client.send(cmd).unwrap();
    }
    client
}

/// A whole session: every command and every kind of reply.
fn session_commands() -> Vec<Command> {
    vec![
        Command::Capa,
        Command::User("mrose".into()),
        Command::Pass("tanstaaf".into()),
        Command::Stat,
        Command::List(None),
        Command::List(Some(2)),
        Command::Uidl(None),
        Command::Uidl(Some(1)),
        Command::Retr(1),
        Command::Top(2, 0),
        Command::Dele(1),
        Command::Retr(9),
        Command::Noop,
        Command::Rset,
        Command::Quit,
    ]
}

const SESSION_REPLIES: &[u8] = b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n\
+OK Capability list follows\r\n\
TOP\r\nUSER\r\nSASL PLAIN\r\nRESP-CODES\r\nPIPELINING\r\nUIDL\r\n\
IMPLEMENTATION Test\r\n.\r\n\
+OK mrose\r\n\
+OK maildrop has 2 messages (320 octets)\r\n\
+OK 2 320\r\n\
+OK 2 messages\r\n1 120\r\n2 200\r\n.\r\n\
+OK 2 200\r\n\
+OK\r\n1 whqtswO00WBw418f9t5JxYwZ\r\n2 QhdPYR:00WBw1Ph7x7\r\n.\r\n\
+OK 1 whqtswO00WBw418f9t5JxYwZ\r\n\
+OK 120 octets\r\nSubject: one\r\n\r\n..dot\r\n.\r\n\
+OK top of message follows\r\nSubject: two\r\n\r\n.\r\n\
+OK message 1 deleted\r\n\
-ERR no such message\r\n\
+OK\r\n\
+OK maildrop has 2 messages\r\n\
+OK dewey POP3 server signing off\r\n";

fn session_expected() -> Vec<Event> {
    vec![
        Event::GreetingReceived {
            apop_timestamp: Some("<1896.697170952@dbc.mtview.ca.us>".into()),
            code: None,
            text: "POP3 server ready <1896.697170952@dbc.mtview.ca.us>".into(),
        },
        Event::CapaReceived(vec![
            Capability::Top,
            Capability::User,
            Capability::Sasl(vec!["PLAIN".into()]),
            Capability::RespCodes,
            Capability::Pipelining,
            Capability::Uidl,
            Capability::Implementation("Test".into()),
        ]),
        Event::Ok {
            cmd: CommandKind::User,
            code: None,
            text: "mrose".into(),
        },
        Event::Ok {
            cmd: CommandKind::Pass,
            code: None,
            text: "maildrop has 2 messages (320 octets)".into(),
        },
        Event::StatReceived {
            count: 2,
            size: 320,
        },
        Event::ListReceived(vec![(1, 120), (2, 200)]),
        Event::ListReceived(vec![(2, 200)]),
        Event::UidlReceived(vec![
            (1, "whqtswO00WBw418f9t5JxYwZ".into()),
            (2, "QhdPYR:00WBw1Ph7x7".into()),
        ]),
        Event::UidlReceived(vec![(1, "whqtswO00WBw418f9t5JxYwZ".into())]),
        Event::RetrStarted {
            msg: 1,
            octets: Some(120),
        },
        Event::RetrData {
            msg: 1,
            chunk: b"Subject: one\r\n\r\n.dot\r\n".to_vec(),
        },
        Event::RetrFinished { msg: 1 },
        Event::TopStarted { msg: 2, lines: 0 },
        Event::TopData {
            msg: 2,
            chunk: b"Subject: two\r\n\r\n".to_vec(),
        },
        Event::TopFinished { msg: 2 },
        Event::Ok {
            cmd: CommandKind::Dele(1),
            code: None,
            text: "message 1 deleted".into(),
        },
        Event::Err {
            cmd: CommandKind::Retr(9),
            code: None,
            text: "no such message".into(),
        },
        Event::Ok {
            cmd: CommandKind::Noop,
            code: None,
            text: String::new(),
        },
        Event::Ok {
            cmd: CommandKind::Rset,
            code: None,
            text: "maildrop has 2 messages".into(),
        },
        Event::Ok {
            cmd: CommandKind::Quit,
            code: None,
            text: "dewey POP3 server signing off".into(),
        },
    ]
}

#[test]
fn whole_session_in_one_buffer() {
    let mut client = client_with(session_commands());
    assert_eq!(
        outputs(&mut client),
        b"CAPA\r\nUSER mrose\r\nPASS tanstaaf\r\nSTAT\r\nLIST\r\nLIST 2\r\nUIDL\r\nUIDL 1\r\n\
RETR 1\r\nTOP 2 0\r\nDELE 1\r\nRETR 9\r\nNOOP\r\nRSET\r\nQUIT\r\n"
    );
    assert_eq!(client.pending_replies(), 15);
    let events = run(&mut client, SESSION_REPLIES).unwrap();
    assert_eq!(events, session_expected());
    assert_eq!(client.pending_replies(), 0);
}

#[test]
fn whole_session_byte_at_a_time() {
    let mut client = client_with(session_commands());
    let events = run_bytewise(&mut client, SESSION_REPLIES).unwrap();
    assert_eq!(coalesce(events), session_expected());
}

#[test]
fn nothing_before_a_whole_line() {
    let mut client = Client::new();
    client.enqueue_input(b"+OK hel");
    assert_eq!(client.next_event(), Ok(None));
    client.enqueue_input(b"lo\r");
    assert_eq!(client.next_event(), Ok(None));
    client.enqueue_input(b"\n");
    assert!(matches!(
        client.next_event(),
        Ok(Some(Event::GreetingReceived {
            apop_timestamp: None,
            ..
        }))
    ));
    assert_eq!(client.next_event(), Ok(None));
}

#[test]
fn pipelined_retr_of_three_messages_in_one_buffer() {
    let bodies: [&[u8]; 3] = [
        b"Subject: a\r\n\r\nfirst\r\n",
        b"Subject: b\r\n\r\n.\r\n..\r\n.leading dot\r\n",
        b"",
    ];
    let mut wire = b"+OK ready\r\n".to_vec();
    for body in bodies {
        wire.extend_from_slice(format!("+OK {} octets\r\n", body.len()).as_bytes());
        dot_stuff(body, &mut wire);
    }
    let mut client = client_with(vec![Command::Retr(1), Command::Retr(2), Command::Retr(3)]);
    assert_eq!(outputs(&mut client), b"RETR 1\r\nRETR 2\r\nRETR 3\r\n");
    let events = coalesce(run(&mut client, &wire).unwrap());
    let mut expected = vec![Event::GreetingReceived {
        apop_timestamp: None,
        code: None,
        text: "ready".into(),
    }];
    for (i, body) in bodies.iter().enumerate() {
        let msg = i as u32 + 1;
        expected.push(Event::RetrStarted {
            msg,
            octets: Some(body.len() as u64),
        });
        if !body.is_empty() {
            expected.push(Event::RetrData {
                msg,
                chunk: body.to_vec(),
            });
        }
        expected.push(Event::RetrFinished { msg });
    }
    assert_eq!(events, expected);
    // And identically when fed byte by byte.
    let mut client = client_with(vec![Command::Retr(1), Command::Retr(2), Command::Retr(3)]);
    assert_eq!(
        coalesce(run_bytewise(&mut client, &wire).unwrap()),
        expected
    );
}

#[test]
fn body_streams_out_in_chunks_as_it_arrives() {
    let mut client = client_with(vec![Command::Retr(4)]);
    client.enqueue_input(b"+OK\r\n+OK\r\nline one\r\nline t");
    assert!(matches!(
        client.next_event(),
        Ok(Some(Event::GreetingReceived { .. }))
    ));
    assert_eq!(
        client.next_event(),
        Ok(Some(Event::RetrStarted {
            msg: 4,
            octets: None
        }))
    );
    assert_eq!(
        client.next_event(),
        Ok(Some(Event::RetrData {
            msg: 4,
            chunk: b"line one\r\nline t".to_vec()
        }))
    );
    assert_eq!(client.next_event(), Ok(None));
    client.enqueue_input(b"wo\r\n.");
    assert_eq!(
        client.next_event(),
        Ok(Some(Event::RetrData {
            msg: 4,
            chunk: b"wo\r\n".to_vec()
        }))
    );
    assert_eq!(client.next_event(), Ok(None));
    client.enqueue_input(b"\r\n");
    assert_eq!(
        client.next_event(),
        Ok(Some(Event::RetrFinished { msg: 4 }))
    );
    assert_eq!(client.next_event(), Ok(None));
}

#[test]
fn response_codes_on_login_errors() {
    let mut client = client_with(vec![
        Command::User("mrose".into()),
        Command::Pass("x".into()),
        Command::Pass("y".into()),
    ]);
    let events = run(
        &mut client,
        b"+OK\r\n+OK\r\n-ERR [IN-USE] Do you have another POP session running?\r\n\
-ERR [LOGIN-DELAY] wait 15 minutes\r\n",
    )
    .unwrap();
    assert_eq!(
        &events[2..],
        &[
            Event::Err {
                cmd: CommandKind::Pass,
                code: Some(ResponseCode::InUse),
                text: "Do you have another POP session running?".into(),
            },
            Event::Err {
                cmd: CommandKind::Pass,
                code: Some(ResponseCode::LoginDelay),
                text: "wait 15 minutes".into(),
            },
        ]
    );
}

#[test]
fn rejected_greeting() {
    let mut client = Client::new();
    assert_eq!(
        run(&mut client, b"-ERR [SYS/TEMP] overloaded\r\n").unwrap(),
        vec![Event::GreetingRejected {
            code: Some(ResponseCode::SysTemp),
            text: "overloaded".into()
        }]
    );
}

#[test]
fn malformed_status_line_is_an_error_and_poisons() {
    let mut client = client_with(vec![Command::Noop]);
    let err = run(&mut client, b"+OK hi\r\n+WHAT\x1b]0;pwned\x07\r\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "bad reply to NOOP: malformed status line: +WHAT\\x1b]0;pwned\\x07"
    );
    assert_eq!(client.next_event(), Err(ClientError::Failed));
    assert_eq!(client.send(Command::Noop), Err(ClientError::Failed));
}

#[test]
fn malformed_greeting_is_an_error() {
    let mut client = Client::new();
    assert!(matches!(
        run(&mut client, b"* OK IMAP4rev1\r\n"),
        Err(ClientError::Reply { .. })
    ));
}

#[test]
fn overlong_line_is_an_error_before_it_ends() {
    let mut client = client_with(vec![Command::Noop]);
    client.enqueue_input(b"+OK hi\r\n+OK ");
    let mut chunk = vec![b'x'; 8192];
    let mut result = Ok(None);
    for _ in 0..20 {
        chunk.truncate(8192);
        client.enqueue_input(&chunk);
        result = drain(&mut client).map(|_| None::<Event>);
        if result.is_err() {
            break;
        }
    }
    assert_eq!(
        result,
        Err(ClientError::Reply {
            context: "NOOP".into(),
            source: ParseError::LineTooLong {
                limit: MAX_LINE_LEN
            }
        })
    );
}

#[test]
fn overlong_listing_line_is_an_error() {
    let mut client = client_with(vec![Command::Uidl(None)]);
    let mut wire = b"+OK\r\n+OK\r\n1 ".to_vec();
    wire.resize(wire.len() + MAX_LINE_LEN + 5, b'a');
    assert!(matches!(
        run(&mut client, &wire),
        Err(ClientError::Reply {
            source: ParseError::LineTooLong { .. },
            ..
        })
    ));
}

#[test]
fn a_large_body_line_is_streamed_not_rejected() {
    let mut client = client_with(vec![Command::Retr(1)]);
    client.enqueue_input(b"+OK\r\n+OK\r\n");
    let line = vec![b'b'; 3 * MAX_LINE_LEN];
    client.enqueue_input(&line);
    client.enqueue_input(b"\r\n.\r\n");
    let events = coalesce(drain(&mut client).unwrap());
    let mut expected = line.clone();
    expected.extend_from_slice(b"\r\n");
    assert_eq!(
        events.get(2),
        Some(&Event::RetrData {
            msg: 1,
            chunk: expected
        })
    );
    assert_eq!(events.get(3), Some(&Event::RetrFinished { msg: 1 }));
}

#[test]
fn malformed_listing_lines_are_errors() {
    let cases: [(Command, &[u8]); 5] = [
        (Command::List(None), b"+OK\r\n1 big\r\n.\r\n"),
        (Command::Uidl(None), b"+OK\r\n1 bad\x01uid\r\n.\r\n"),
        (Command::Stat, b"+OK many\r\n"),
        (Command::List(Some(1)), b"+OK\r\n"),
        (Command::Uidl(Some(1)), b"+OK 1\r\n"),
    ];
    for (cmd, reply) in cases {
        let name = cmd.kind().name();
        let mut client = client_with(vec![cmd]);
        client.enqueue_input(b"+OK\r\n");
        let err = run(&mut client, reply).unwrap_err();
        assert!(
            matches!(&err, ClientError::Reply { context, .. } if context == name),
            "{name}: {err}"
        );
        assert!(!err.to_string().contains('\x01'));
    }
}

#[test]
fn unsolicited_line_is_an_error() {
    let mut client = Client::new();
    let err = run(&mut client, b"+OK hi\r\n+OK surprise\r\n").unwrap_err();
    assert_eq!(
        err,
        ClientError::Unsolicited {
            line: "+OK surprise".into()
        }
    );
}

#[test]
fn multiline_err_is_single_line() {
    let mut client = client_with(vec![Command::Retr(5), Command::Noop]);
    let events = run(&mut client, b"+OK\r\n-ERR no such message\r\n+OK\r\n").unwrap();
    assert_eq!(events.len(), 3);
    assert!(matches!(
        &events[1],
        Event::Err {
            cmd: CommandKind::Retr(5),
            ..
        }
    ));
    assert!(matches!(
        &events[2],
        Event::Ok {
            cmd: CommandKind::Noop,
            ..
        }
    ));
}

#[test]
fn capa_tolerates_blank_lines_and_bare_lf() {
    let mut client = client_with(vec![Command::Capa]);
    let events = run(&mut client, b"+OK\n+OK\nSTLS\n\nUSER\n.\n").unwrap();
    assert_eq!(
        events.last(),
        Some(&Event::CapaReceived(vec![
            Capability::Stls,
            Capability::User
        ]))
    );
}

#[test]
fn stls_discards_buffered_plaintext_and_blocks_pipelining() {
    let mut client = client_with(vec![Command::Stls]);
    assert_eq!(client.send(Command::Capa), Err(ClientError::StlsPending));
    assert_eq!(outputs(&mut client), b"STLS\r\n");
    // An attacker appends a fake reply after the +OK; it must not reach the next command.
    let events = run(
        &mut client,
        b"+OK\r\n+OK Begin TLS negotiation\r\n+OK injected\r\n",
    )
    .unwrap();
    assert_eq!(
        events.last(),
        Some(&Event::Ok {
            cmd: CommandKind::Stls,
            code: None,
            text: "Begin TLS negotiation".into()
        })
    );
    client.send(Command::Capa).unwrap();
    let events = run(&mut client, b"+OK\r\nSTLS\r\n.\r\n").unwrap();
    assert_eq!(events, vec![Event::CapaReceived(vec![Capability::Stls])]);
}

#[test]
fn auth_plain_inline_and_deferred() {
    let mut client = client_with(vec![Command::AuthPlain {
        authzid: None,
        authcid: "tim".into(),
        password: Secret::new("tanstaaftanstaaf"),
    }]);
    assert_eq!(
        outputs(&mut client),
        b"AUTH PLAIN AHRpbQB0YW5zdGFhZnRhbnN0YWFm\r\n"
    );
    // A server that still asks (empty challenge) is cancelled with `*`.
    let events = run(&mut client, b"+OK\r\n+ \r\n-ERR [AUTH] cancelled\r\n").unwrap();
    assert_eq!(outputs(&mut client), b"*\r\n");
    assert_eq!(
        events.last(),
        Some(&Event::Err {
            cmd: CommandKind::AuthPlain,
            code: Some(ResponseCode::Auth),
            text: "cancelled".into()
        })
    );

    let long = Command::AuthPlain {
        authzid: None,
        authcid: "user".into(),
        password: Secret::new("p".repeat(300)),
    };
    let expected_answer = long.encode_full().unwrap().continuation.unwrap();
    let mut client = client_with(vec![long]);
    assert_eq!(outputs(&mut client), b"AUTH PLAIN\r\n");
    let events = run(&mut client, b"+OK\r\n+\r\n").unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(outputs(&mut client), expected_answer);
    let events = run(&mut client, b"+OK logged in\r\n").unwrap();
    assert!(matches!(
        events.as_slice(),
        [Event::Ok {
            cmd: CommandKind::AuthPlain,
            ..
        }]
    ));
}

#[test]
fn auth_bearer_answers_the_error_challenge_then_reports_err() {
    // RFC 7628 §3.2.2: a rejected token brings a `+ ` with a JSON error first; the client
    // answers `AQ==` (base64 of 0x01) and only then comes the -ERR.
    let mut client = client_with(vec![Command::AuthBearer {
        mechanism: "OAUTHBEARER",
        message: Secret::new("n,,\x01auth=Bearer tok\x01\x01"),
        error_answer: b"\x01",
    }]);
    let line = outputs(&mut client);
    assert!(line.starts_with(b"AUTH OAUTHBEARER "), "{line:?}");
    let events = run(
        &mut client,
        b"+OK\r\n+ eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0=\r\n",
    )
    .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(outputs(&mut client), b"AQ==\r\n");
    let events = run(&mut client, b"-ERR [AUTH] Authentication failed.\r\n").unwrap();
    assert_eq!(
        events,
        vec![Event::Err {
            cmd: CommandKind::AuthBearer,
            code: Some(ResponseCode::Auth),
            text: "Authentication failed.".into()
        }]
    );

    // A token too long for the command line goes on the first `+`, the error answer on the
    // second.
    let long = Command::AuthBearer {
        mechanism: "XOAUTH2",
        message: Secret::new("t".repeat(300)),
        error_answer: b"",
    };
    let deferred = long.encode_full().unwrap().continuation.unwrap();
    let mut client = client_with(vec![long]);
    assert_eq!(outputs(&mut client), b"AUTH XOAUTH2\r\n");
    run(&mut client, b"+OK\r\n+ \r\n").unwrap();
    assert_eq!(outputs(&mut client), deferred);
    run(&mut client, b"+ e30=\r\n").unwrap();
    assert_eq!(outputs(&mut client), b"\r\n");
    let events = run(&mut client, b"+OK signed in\r\n").unwrap();
    assert!(matches!(
        events.as_slice(),
        [Event::Ok {
            cmd: CommandKind::AuthBearer,
            ..
        }]
    ));
}

#[test]
fn apop_flow_uses_greeting_timestamp() {
    let mut client = Client::new();
    let events = run(
        &mut client,
        b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n",
    )
    .unwrap();
    let Some(Event::GreetingReceived {
        apop_timestamp: Some(ts),
        ..
    }) = events.first()
    else {
        panic!("no timestamp in {events:?}");
    };
    client
        .send(Command::apop("mrose", ts, &Secret::new("tanstaaf")))
        .unwrap();
    assert_eq!(
        outputs(&mut client),
        b"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n"
    );
}

#[test]
fn bad_command_queues_nothing() {
    let mut client = Client::new();
    assert!(matches!(
        client.send(Command::User("a\r\nDELE 1".into())),
        Err(ClientError::Command(_))
    ));
    assert_eq!(client.next_output(), None);
    assert_eq!(client.pending_replies(), 0);
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    fn all_commands() -> Vec<Command> {
        vec![
            Command::Capa,
            Command::Stat,
            Command::List(None),
            Command::List(Some(1)),
            Command::Uidl(None),
            Command::Uidl(Some(1)),
            Command::Retr(1),
            Command::Top(1, 3),
            Command::AuthPlain {
                authzid: None,
                authcid: "u".into(),
                password: "p".into(),
            },
            Command::Stls,
        ]
    }

    fn interesting_byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            Just(b'\r'),
            Just(b'\n'),
            Just(b'.'),
            Just(b' '),
            Just(b'+'),
            Just(b'1'),
            any::<u8>(),
        ]
    }

    fn fragment() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"+OK ".to_vec()),
            Just(b"-ERR [IN-USE] ".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b".\r\n".to_vec()),
            Just(b"1 abc\r\n".to_vec()),
            Just(b"+ \r\n".to_vec()),
            proptest::collection::vec(interesting_byte(), 0..12),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(
            picks in proptest::collection::vec(0usize..10, 0..8),
            fragments in proptest::collection::vec(fragment(), 0..40),
            cut in 1usize..16,
        ) {
            let commands = all_commands();
            let mut client = Client::new();
            for pick in picks {
                if let Some(cmd) = commands.get(pick) {
                    let _ = client.send(cmd.clone());
                }
            }
            let wire: Vec<u8> = fragments.concat();
            for piece in wire.chunks(cut) {
                client.enqueue_input(piece);
                let mut steps = 0;
                loop {
                    steps += 1;
                    prop_assert!(steps < 10_000, "next_event did not settle");
                    match client.next_event() {
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(err) => {
                            prop_assert!(!err.to_string().chars().any(|c| c.is_control()));
                            prop_assert_eq!(client.next_event(), Err(ClientError::Failed));
                            break;
                        }
                    }
                }
                while client.next_output().is_some() {}
            }
        }

        #[test]
        fn any_split_gives_the_same_events(
            cuts in proptest::collection::vec(any::<usize>(), 0..10),
        ) {
            let whole = {
                let mut client = client_with(session_commands());
                coalesce(run(&mut client, SESSION_REPLIES).unwrap())
            };
            let mut points: Vec<usize> =
                cuts.iter().map(|c| c % (SESSION_REPLIES.len() + 1)).collect();
            points.push(SESSION_REPLIES.len());
            points.sort_unstable();
            let mut client = client_with(session_commands());
            let mut events = Vec::new();
            let mut start = 0;
            for end in points {
                client.enqueue_input(&SESSION_REPLIES[start..end]);
                events.extend(drain(&mut client).unwrap());
                start = end;
            }
            prop_assert_eq!(coalesce(events), whole);
        }

        #[test]
        fn retr_bodies_round_trip_through_the_client(
            bodies in proptest::collection::vec(
                proptest::collection::vec(
                    proptest::collection::vec(interesting_byte(), 0..30)
                        .prop_map(|mut l| { l.retain(|&b| b != b'\n'); l.extend_from_slice(b"\r\n"); l }),
                    0..6,
                ).prop_map(|lines| lines.concat()),
                1..4,
            ),
            cuts in proptest::collection::vec(any::<usize>(), 0..10),
        ) {
            let mut wire = b"+OK\r\n".to_vec();
            let mut client = Client::new();
            for (i, body) in bodies.iter().enumerate() {
                client.send(Command::Retr(i as u32 + 1)).unwrap();
                wire.extend_from_slice(b"+OK\r\n");
                dot_stuff(body, &mut wire);
            }
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
            points.push(wire.len());
            points.sort_unstable();
            let mut got: Vec<Vec<u8>> = vec![Vec::new(); bodies.len()];
            let mut finished = 0;
            let mut start = 0;
            for end in points {
                client.enqueue_input(&wire[start..end]);
                start = end;
                for event in drain(&mut client).unwrap() {
                    match event {
                        Event::RetrData { msg, chunk } => {
                            got[msg as usize - 1].extend_from_slice(&chunk);
                        }
                        Event::RetrFinished { .. } => finished += 1,
                        _ => {}
                    }
                }
            }
            prop_assert_eq!(finished, bodies.len());
            prop_assert_eq!(got, bodies);
        }
    }
}

#[test]
fn awaiting_reply_covers_a_multi_line_reply_in_progress() {
    let mut client = client_with(vec![Command::Uidl(None)]);
    run(&mut client, b"+OK hello\r\n").expect("greeting");
    assert!(client.awaiting_reply(), "UIDL was sent");
    // The status line is read (nothing is pending any more) but the listing has not ended.
    assert!(
        run(&mut client, b"+OK\r\n1 a\r\n")
            .expect("partial")
            .is_empty()
    );
    assert_eq!(client.pending_replies(), 0);
    assert!(client.awaiting_reply());
    run(&mut client, b"2 b\r\n.\r\n").expect("rest");
    assert!(!client.awaiting_reply(), "the listing ended");
    // Half a line is also an unfinished reply.
    client.enqueue_input(b"+O");
    assert!(client.awaiting_reply());
}
