//! Snapshots of the setup wizard's screens on ratatui's TestBackend. The wizard is fed keys
//! and the events its work would produce (discovery results, login-test steps, save results),
//! never network traffic, so the screens are stable; the effects it asks for are checked too.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use mailbag::config::{Protocol, Security};
use mailbag::ui::wizard::{Effect, TestPassword, Wizard, WizardEvent, WizardOptions};
use mailbag::wizard::check::{CertInfo, CheckEvent, CheckFailure, CheckOk, CheckStep, FailureKind};
use mailbag::wizard::discover::{Discovered, Outcome, SourceReport, Step};
use mailbag::wizard::save::{SaveError, Saved};
use mailbag::wizard::{Candidate, Source};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn wizard() -> Wizard {
    Wizard::new(WizardOptions::new(
        "/home/jane/.config/mailbag/config.toml".into(),
        Vec::new(),
    ))
}

fn key(w: &mut Wizard, code: KeyCode) -> Vec<Effect> {
    w.handle_key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn typed(w: &mut Wizard, text: &str) -> Vec<Effect> {
    let mut effects = Vec::new();
    for c in text.chars() {
        effects.extend(key(w, KeyCode::Char(c)));
    }
    effects
}

fn render(w: &Wizard) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(100, 30)).unwrap();
    t.draw(|f| w.draw(f)).unwrap();
    t
}

fn screen(t: &Terminal<TestBackend>) -> String {
    let buf = t.backend().buffer();
    (0..buf.area.height)
        .map(|y| {
            (0..buf.area.width)
                .filter_map(|x| buf.cell((x, y)).map(|c| c.symbol().to_string()))
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn candidate(protocol: Protocol, host: &str, port: u16, security: Security) -> Candidate {
    Candidate {
        source: Source::Bundled,
        provider: Some("Posteo".into()),
        protocol,
        host: host.into(),
        port,
        security,
        username: "jane@posteo.de".into(),
        oauth2: false,
        notes: vec!["For POP3, nothing needs enabling; IMAP and POP3 both work.".into()],
    }
}

fn found() -> Discovered {
    Discovered {
        candidates: vec![
            candidate(Protocol::Imap, "posteo.de", 993, Security::Tls),
            Candidate {
                source: Source::Srv {
                    record: "_pop3s._tcp.posteo.de".into(),
                },
                ..candidate(Protocol::Pop3, "posteo.de", 995, Security::Tls)
            },
        ],
        reports: Vec::new(),
    }
}

/// Through the first two screens with `jane@posteo.de`; returns the discovery effect.
fn to_settings(w: &mut Wizard) -> Vec<Effect> {
    typed(w, "Jane Doe");
    key(w, KeyCode::Tab);
    typed(w, "jane@posteo.de");
    let effects = key(w, KeyCode::Enter);
    typed(w, "hunter2-secret");
    key(w, KeyCode::Enter);
    effects
}

fn discovered(w: &mut Wizard, found: Discovered) {
    w.handle_event(WizardEvent::Discovered {
        email: "jane@posteo.de".into(),
        found,
    });
}

/// The run id of the test `effects` start.
fn test_run(effects: &[Effect]) -> u64 {
    match effects {
        [Effect::Test { run, .. }] => *run,
        other => panic!("expected one test, got {other:?}"),
    }
}

fn steps(w: &mut Wizard, run: u64, done: &[(CheckStep, &str)]) {
    for (step, detail) in done {
        w.handle_event(WizardEvent::Check {
            run,
            event: CheckEvent::Done(*step, detail.to_string()),
        });
    }
}

fn failed(w: &mut Wizard, run: u64, step: CheckStep, kind: FailureKind, reason: &str, hint: &str) {
    w.handle_event(WizardEvent::Check {
        run,
        event: CheckEvent::Failed(step, reason.into()),
    });
    w.handle_event(WizardEvent::Tested {
        run,
        result: Err(CheckFailure {
            step,
            kind,
            reason: reason.into(),
            hint: hint.into(),
        }),
    });
}

const CONNECTED: &[(CheckStep, &str)] = &[
    (CheckStep::Resolve, "185.67.36.168"),
    (CheckStep::Connect, "posteo.de:993"),
    (CheckStep::Tls, "verified"),
    (
        CheckStep::Capabilities,
        "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN",
    ),
];

#[test]
fn first_screen_welcomes_and_derives_the_account_name() {
    let mut w = wizard();
    typed(&mut w, "Jane Doe");
    key(&mut w, KeyCode::Tab);
    typed(&mut w, "jane@posteo.de");
    let t = render(&w);
    let text = screen(&t);
    assert!(text.contains("mailbag has no account yet."), "{text}");
    assert!(text.contains("[posteo "), "account name derived:\n{text}");
    insta::assert_snapshot!(t.backend());

    // A bad address is refused in one line, and nothing is asked of the network.
    key(&mut w, KeyCode::Backspace);
    for _ in 0.."posteo.de".len() {
        key(&mut w, KeyCode::Backspace);
    }
    assert!(key(&mut w, KeyCode::Enter).is_empty());
    let text = screen(&render(&w));
    assert!(text.contains("is not an email address"), "{text}");
}

#[test]
fn password_is_masked_while_discovery_runs() {
    let mut w = wizard();
    let effects = to_settings(&mut w);
    assert!(
        matches!(effects.as_slice(), [Effect::Discover { email, .. }] if email.address == "jane@posteo.de")
    );
    key(&mut w, KeyCode::Esc);
    let t = render(&w);
    let text = screen(&t);
    assert!(text.contains("2/5 Password"), "{text}");
    assert!(!text.contains("hunter2"), "password shown:\n{text}");
    assert!(text.contains("••••••••••••••"), "{text}");
    assert!(text.contains("Looking for the server settings"), "{text}");
    insta::assert_snapshot!(t.backend());
}

#[test]
fn settings_show_each_candidate_with_its_source_and_recommend_imap() {
    let mut w = wizard();
    to_settings(&mut w);
    discovered(&mut w, found());
    let t = render(&w);
    let text = screen(&t);
    assert!(
        text.contains("from bundled provider list — Posteo"),
        "{text}"
    );
    assert!(
        text.contains("from DNS SRV _pop3s._tcp.posteo.de"),
        "{text}"
    );
    assert!(text.contains("IMAP is recommended"), "{text}");
    assert!(
        text.contains("▸ imap  posteo.de:993"),
        "IMAP preselected:\n{text}"
    );
    insta::assert_snapshot!(t.backend());
}

#[test]
fn nothing_found_says_why_and_offers_manual_setup() {
    let mut w = wizard();
    to_settings(&mut w);
    discovered(
        &mut w,
        Discovered {
            candidates: Vec::new(),
            reports: vec![
                SourceReport {
                    step: Step::Bundled,
                    outcome: Outcome::Nothing(vec!["posteo.de is not in the bundled list".into()]),
                },
                SourceReport {
                    step: Step::Dns,
                    outcome: Outcome::Nothing(vec!["_imaps._tcp.posteo.de: no SRV record".into()]),
                },
            ],
        },
    );
    let t = render(&w);
    assert!(screen(&t).contains("▸ Enter the settings by hand"));
    insta::assert_snapshot!(t.backend());
    key(&mut w, KeyCode::Enter);
    assert!(screen(&render(&w)).contains("3/5 Edit server settings"));
}

#[test]
fn manual_edit_changes_every_field() {
    let mut w = wizard();
    to_settings(&mut w);
    discovered(&mut w, found());
    key(&mut w, KeyCode::Char('e'));
    // Protocol to POP3, security to STARTTLS: the default port follows.
    key(&mut w, KeyCode::Char(' '));
    key(&mut w, KeyCode::Tab);
    for _ in 0.."posteo.de".len() {
        key(&mut w, KeyCode::Backspace);
    }
    typed(&mut w, "mail.example.org");
    key(&mut w, KeyCode::Tab);
    key(&mut w, KeyCode::Tab);
    key(&mut w, KeyCode::Right);
    key(&mut w, KeyCode::Tab);
    w.handle_key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
    typed(&mut w, "jane");
    let t = render(&w);
    let text = screen(&t);
    assert!(text.contains("‹ pop3 ›"), "{text}");
    assert!(text.contains("[110 "), "{text}");
    assert!(text.contains("‹ starttls ›"), "{text}");
    insta::assert_snapshot!(t.backend());

    // Enter goes on to the POP3 options (leave on server: on by default).
    assert!(key(&mut w, KeyCode::Enter).is_empty());
    key(&mut w, KeyCode::Tab);
    typed(&mut w, "14");
    let t = render(&w);
    assert!(screen(&t).contains("‹ yes ›"));
    insta::assert_snapshot!("pop3_options", t.backend());

    let effects = key(&mut w, KeyCode::Enter);
    let [
        Effect::Test {
            account, password, ..
        },
    ] = effects.as_slice()
    else {
        panic!("expected a test: {effects:?}");
    };
    assert_eq!(account.protocol, Protocol::Pop3);
    assert_eq!(account.host, "mail.example.org");
    assert_eq!(account.port(), 110);
    assert_eq!(account.security, Security::Starttls);
    assert_eq!(account.username(), "jane");
    assert_eq!(account.leave_on_server, Some(true));
    assert_eq!(account.delete_after_days, Some(14));
    assert_eq!(account.display_name.as_deref(), Some("Jane Doe"));
    assert!(matches!(password, TestPassword::Given(s) if s.expose() == "hunter2-secret"));
}

#[test]
fn test_steps_live_then_wrong_password_hint() {
    let mut w = wizard();
    to_settings(&mut w);
    discovered(&mut w, found());
    let run = test_run(&key(&mut w, KeyCode::Enter));
    steps(&mut w, run, &CONNECTED[..2]);
    let t = render(&w);
    assert!(screen(&t).contains("…"), "the running step is marked");
    insta::assert_snapshot!("test_running", t.backend());

    steps(&mut w, run, &CONNECTED[2..]);
    failed(
        &mut w,
        run,
        CheckStep::Login,
        FailureKind::WrongPassword,
        "posteo.de refused the login for jane@posteo.de: wrong user name or password",
        "check it, or create an app password for Posteo",
    );
    let t = render(&w);
    let text = screen(&t);
    assert!(
        text.contains("→ check it, or create an app password for Posteo"),
        "{text}"
    );
    insta::assert_snapshot!("test_wrong_password", t.backend());
    // p goes straight to the password.
    key(&mut w, KeyCode::Char('p'));
    assert!(screen(&render(&w)).contains("2/5 Password"));
}

#[test]
fn untrusted_certificate_is_shown_and_t_trusts_exactly_it() {
    let mut w = wizard();
    to_settings(&mut w);
    discovered(&mut w, found());
    let run = test_run(&key(&mut w, KeyCode::Enter));
    steps(&mut w, run, &CONNECTED[..2]);
    w.handle_event(WizardEvent::Tested {
        run,
        result: Err(CheckFailure {
            step: CheckStep::Tls,
            kind: FailureKind::Certificate {
                cert: Some(CertInfo {
                    subject: "CN=posteo.de".into(),
                    issuer: "CN=Self Signed CA\u{1b}]0;pwned\u{7}".into(),
                    sha256: [0xab; 32],
                }),
            },
            reason: "the certificate is self-signed and not trusted".into(),
            hint: "if this is your server's certificate, trust exactly it".into(),
        }),
    });
    let t = render(&w);
    let text = screen(&t);
    assert!(text.contains("subject  CN=posteo.de"), "{text}");
    assert!(text.contains("AB:AB:AB"), "{text}");
    assert!(text.contains("^[]0;pwned^G"), "issuer sanitised:\n{text}");
    assert!(!text.contains('\u{1b}'), "no ESC reaches the screen");
    insta::assert_snapshot!(t.backend());

    let effects = key(&mut w, KeyCode::Char('t'));
    let [Effect::Test { account, .. }] = effects.as_slice() else {
        panic!("t tests again: {effects:?}");
    };
    assert_eq!(
        account.tls_cert_sha256.as_deref(),
        Some("ab".repeat(32).as_str())
    );
}

#[test]
fn a_server_that_does_not_answer_moves_on_to_the_next_candidate() {
    let mut w = wizard();
    to_settings(&mut w);
    let mut f = found();
    f.candidates.insert(
        1,
        Candidate {
            source: Source::Guess,
            provider: None,
            ..candidate(Protocol::Imap, "imap.posteo.de", 143, Security::Starttls)
        },
    );
    discovered(&mut w, f);
    let run = test_run(&key(&mut w, KeyCode::Enter));
    w.handle_event(WizardEvent::Tested {
        run,
        result: Err(CheckFailure {
            step: CheckStep::Connect,
            kind: FailureKind::Unreachable,
            reason: "cannot connect to posteo.de:993: connection refused".into(),
            hint: "nothing answered there".into(),
        }),
    });
    let t = render(&w);
    let text = screen(&t);
    assert!(text.contains("✗ no answer: imap posteo.de:993"), "{text}");
    assert!(
        text.contains("Testing imap imap.posteo.de:143 starttls"),
        "{text}"
    );
    insta::assert_snapshot!(t.backend());
}

#[test]
fn success_saves_to_the_keyring_or_asks_for_a_password_command() {
    let mut w = wizard();
    to_settings(&mut w);
    discovered(&mut w, found());
    let run = test_run(&key(&mut w, KeyCode::Enter));
    steps(&mut w, run, CONNECTED);
    steps(
        &mut w,
        run,
        &[
            (CheckStep::Login, "jane@posteo.de"),
            (CheckStep::ListFolders, "6 folders"),
        ],
    );
    w.handle_event(WizardEvent::Tested {
        run,
        result: Ok(CheckOk {
            folders: vec!["INBOX".into(); 6],
            stat: None,
        }),
    });
    let t = render(&w);
    assert!(screen(&t).contains("The login works (6 folders)"));
    insta::assert_snapshot!("test_passed", t.backend());

    let effects = key(&mut w, KeyCode::Enter);
    let [Effect::Save { name, password, .. }] = effects.as_slice() else {
        panic!("Enter saves: {effects:?}");
    };
    assert_eq!(name, "posteo");
    assert!(
        password
            .as_ref()
            .is_some_and(|p| p.expose() == "hunter2-secret")
    );

    // No keyring: one line says so, and a password command is asked for.
    w.handle_event(WizardEvent::Saved {
        result: Err(SaveError::NoKeyring),
    });
    typed(&mut w, "pass show mail/posteo");
    let t = render(&w);
    assert!(screen(&t).contains("No OS keyring is reachable here"));
    insta::assert_snapshot!("no_keyring", t.backend());

    let effects = key(&mut w, KeyCode::Enter);
    let [
        Effect::Test {
            run,
            account,
            password: TestPassword::Command(cmd),
            ..
        },
    ] = effects.as_slice()
    else {
        panic!("the command is tested: {effects:?}");
    };
    assert_eq!(cmd, "pass show mail/posteo");
    assert_eq!(account.password_command.as_deref(), Some(cmd.as_str()));
    let run = *run;
    w.handle_event(WizardEvent::Tested {
        run,
        result: Ok(CheckOk {
            folders: Vec::new(),
            stat: None,
        }),
    });
    let effects = key(&mut w, KeyCode::Enter);
    let [
        Effect::Save {
            account, password, ..
        },
    ] = effects.as_slice()
    else {
        panic!("saves again: {effects:?}");
    };
    assert!(password.is_none(), "the password stays out of the keyring");
    assert!(account.password_command.is_some());
    let effects = w.handle_event(WizardEvent::Saved {
        result: Ok(Saved {
            config_file: "/home/jane/.config/mailbag/config.toml".into(),
            in_keyring: false,
        }),
    });
    assert!(
        matches!(effects.as_slice(), [Effect::Finished { name, notice }]
            if name == "posteo" && notice.contains("the first sync is running")),
        "{effects:?}"
    );
}

#[test]
fn stale_test_results_are_ignored_after_back() {
    let mut w = wizard();
    to_settings(&mut w);
    discovered(&mut w, found());
    let run = test_run(&key(&mut w, KeyCode::Enter));
    key(&mut w, KeyCode::Esc);
    w.handle_event(WizardEvent::Tested {
        run,
        result: Ok(CheckOk {
            folders: Vec::new(),
            stat: None,
        }),
    });
    let text = screen(&render(&w));
    assert!(text.contains("3/5 Server settings"), "{text}");
    assert!(key(&mut w, KeyCode::Char('x')).is_empty());
}

#[test]
fn a_small_terminal_says_so() {
    let w = wizard();
    let mut t = Terminal::new(TestBackend::new(20, 5)).unwrap();
    t.draw(|f| w.draw(f)).unwrap();
    assert!(screen(&t).contains("terminal too"));
}

#[test]
fn a_narrow_terminal_wraps_text_and_key_hints() {
    let mut w = wizard();
    to_settings(&mut w);
    discovered(&mut w, found());
    key(&mut w, KeyCode::Char('e'));
    let mut t = Terminal::new(TestBackend::new(60, 24)).unwrap();
    t.draw(|f| w.draw(f)).unwrap();
    let text = screen(&t);
    assert!(
        text.contains("Esc back"),
        "the hints wrap, not cut:\n{text}"
    );
    assert!(text.contains("[posteo.de"), "{text}");
    insta::assert_snapshot!(t.backend());
}
