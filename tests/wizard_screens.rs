//! Snapshots of the setup wizard's screens on ratatui's TestBackend. The wizard is fed keys
//! and the events its work would produce (discovery results, login-test steps, save results),
//! never network traffic, so the screens are stable; the effects it asks for are checked too.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use mailbag::config::Account;
use mailbag::config::{Protocol, Security};
use mailbag::ui::wizard::{
    Effect, SignInProgress, TestPassword, Wizard, WizardEvent, WizardOptions,
};
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

/// A wizard on the settings screen with [`found`]'s candidates for `jane@posteo.de`.
fn at_settings() -> Wizard {
    let mut w = wizard();
    to_settings(&mut w);
    discovered(&mut w, found());
    w
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

/// Login test `run` passed, listing `folders`.
fn passed(w: &mut Wizard, run: u64, folders: Vec<String>) {
    w.handle_event(WizardEvent::Tested {
        run,
        result: Ok(CheckOk {
            folders,
            stat: None,
        }),
    });
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
    let w = at_settings();
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
    let mut w = at_settings();
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
    let mut w = at_settings();
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
    let mut w = at_settings();
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
    let next = test_run(&w.handle_event(WizardEvent::Tested {
        run,
        result: Err(CheckFailure {
            step: CheckStep::Connect,
            kind: FailureKind::Unreachable,
            reason: "cannot connect to posteo.de:993: connection refused".into(),
            hint: "nothing answered there".into(),
        }),
    }));
    let t = render(&w);
    let text = screen(&t);
    assert!(text.contains("✗ no answer: imap posteo.de:993"), "{text}");
    assert!(
        text.contains("Testing imap imap.posteo.de:143 starttls"),
        "{text}"
    );
    insta::assert_snapshot!(t.backend());

    // That one fails too: `e` edits the settings that were tested, not the first ones.
    failed(
        &mut w,
        next,
        CheckStep::Login,
        FailureKind::WrongPassword,
        "imap.posteo.de refused the login",
        "check it",
    );
    key(&mut w, KeyCode::Char('e'));
    let text = screen(&render(&w));
    assert!(text.contains("3/5 Edit server settings"), "{text}");
    assert!(text.contains("[imap.posteo.de "), "{text}");
    assert!(text.contains("[143 "), "{text}");
    assert!(text.contains("‹ starttls ›"), "{text}");
}

#[test]
fn success_saves_to_the_keyring_or_asks_for_a_password_command() {
    let mut w = at_settings();
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
    passed(&mut w, run, vec!["INBOX".into(); 6]);
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
    passed(&mut w, run, Vec::new());
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
    let mut w = at_settings();
    let run = test_run(&key(&mut w, KeyCode::Enter));
    key(&mut w, KeyCode::Esc);
    passed(&mut w, run, Vec::new());
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
    let mut w = at_settings();
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

// ---- OAuth2 ---------------------------------------------------------------------------------

fn gmail() -> Discovered {
    Discovered {
        candidates: vec![Candidate {
            source: Source::Bundled,
            provider: Some("Gmail".into()),
            protocol: Protocol::Imap,
            host: "imap.gmail.com".into(),
            port: 993,
            security: Security::Tls,
            username: "jane@gmail.com".into(),
            oauth2: false,
            notes: Vec::new(),
        }],
        reports: Vec::new(),
    }
}

/// Name and address for `address`, the password screen left empty (OAuth2 needs none).
fn to_settings_without_password(w: &mut Wizard, address: &str, found: Discovered) {
    typed(w, "Jane Doe");
    key(w, KeyCode::Tab);
    typed(w, address);
    key(w, KeyCode::Enter);
    assert!(key(w, KeyCode::Enter).is_empty());
    w.handle_event(WizardEvent::Discovered {
        email: address.into(),
        found,
    });
}

/// The sign-in the effects start: its run, the account, and whether it is the device flow.
fn sign_in_of(effects: &[Effect]) -> (u64, Account, bool) {
    match effects.last() {
        Some(Effect::SignIn {
            run,
            account,
            device,
            ..
        }) => (*run, (**account).clone(), *device),
        _ => panic!("expected a sign-in: {effects:?}"),
    }
}

#[test]
fn oauth2_provider_offers_the_browser_sign_in_or_an_app_password() {
    let mut w = wizard();
    to_settings_without_password(&mut w, "jane@gmail.com", gmail());
    let text = screen(&render(&w));
    assert!(text.contains("(OAuth2 or app password)"), "{text}");
    assert!(key(&mut w, KeyCode::Enter).is_empty());
    let t = render(&w);
    let text = screen(&t);
    assert!(text.contains("3/5 Sign-in method"), "{text}");
    assert!(
        text.contains("▸ Sign in with Google in the browser (OAuth2)"),
        "{text}"
    );
    insta::assert_snapshot!("oauth2_sign_in_method", t.backend());

    // The app password needs a password, which was left empty: back to screen 2.
    key(&mut w, KeyCode::Down);
    assert!(key(&mut w, KeyCode::Enter).is_empty());
    let text = screen(&render(&w));
    assert!(text.contains("2/5 Password"), "{text}");
    assert!(text.contains("these settings need the password"), "{text}");
    key(&mut w, KeyCode::Enter);
    key(&mut w, KeyCode::Enter);
    key(&mut w, KeyCode::Up);
    key(&mut w, KeyCode::Enter);

    // The client form: the id is required, the secret masked.
    let text = screen(&render(&w));
    assert!(text.contains("4/5 OAuth2 client"), "{text}");
    assert!(text.contains("docs/oauth2.md"), "{text}");
    assert!(key(&mut w, KeyCode::Enter).is_empty());
    assert!(
        screen(&render(&w)).contains("give the client id"),
        "{}",
        screen(&render(&w))
    );
    typed(&mut w, "1234-abc.apps.googleusercontent.com");
    key(&mut w, KeyCode::Tab);
    typed(&mut w, "GOCSPX-secret");
    let t = render(&w);
    let text = screen(&t);
    assert!(
        !text.contains("GOCSPX-secret"),
        "the secret is masked:\n{text}"
    );
    insta::assert_snapshot!("oauth2_client", t.backend());

    let effects = key(&mut w, KeyCode::Enter);
    let (run, account, device) = sign_in_of(&effects);
    assert!(!device, "the browser comes first");
    assert!(account.uses_oauth2());
    assert_eq!(
        account.oauth2_provider,
        Some(mailbag::config::OAuth2Provider::Google)
    );
    assert_eq!(
        account.oauth2_client_id.as_deref(),
        Some("1234-abc.apps.googleusercontent.com")
    );
    assert_eq!(
        account.oauth2_client_secret.as_ref().map(|s| s.0.as_str()),
        Some("GOCSPX-secret")
    );
    assert_eq!(account.password_command, None);

    // The sign-in screen: the whole URL, the status, and the paste field.
    let url = "https://accounts.google.com/o/oauth2/v2/auth?response_type=code&client_id=1234-abc.apps.googleusercontent.com&redirect_uri=http%3A%2F%2F127.0.0.1%3A40123%2F&state=Zm9vYmFy&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256&login_hint=jane%40gmail.com&scope=https%3A%2F%2Fmail.google.com%2F&access_type=offline&prompt=consent";
    w.handle_event(WizardEvent::SignInProgress {
        run,
        progress: SignInProgress::Url(url.into()),
    });
    w.handle_event(WizardEvent::SignInProgress {
        run,
        progress: SignInProgress::Status(
            "waiting for the browser to come back to http://127.0.0.1:40123/ (or paste the \
             address it ends on)"
                .into(),
        ),
    });
    typed(
        &mut w,
        "http://127.0.0.1:40123/?state=Zm9vYmFy&code=4/0AbCdEf-one-time",
    );
    let t = render(&w);
    let text = screen(&t);
    assert!(text.contains("4/5 Sign in"), "{text}");
    assert!(text.contains("http://127.0.0.1:40123/?…"), "{text}");
    assert!(
        !text.contains("one-time"),
        "the pasted code is not shown:\n{text}"
    );
    let joined: String = text
        .lines()
        .map(|l| l.trim_matches(|c| c == '│' || c == ' '))
        .collect();
    assert!(joined.contains(url), "the whole URL is on screen:\n{text}");
    insta::assert_snapshot!("oauth2_sign_in_browser", t.backend());
    let effects = key(&mut w, KeyCode::Enter);
    assert!(
        matches!(effects.as_slice(), [Effect::Paste { run: r, line }] if *r == run && line.expose().ends_with("one-time")),
        "{effects:?}"
    );

    // Tab: the device flow instead; the browser sign-in is stopped.
    let effects = key(&mut w, KeyCode::Tab);
    assert!(
        matches!(effects.first(), Some(Effect::CancelSignIn { run: r }) if *r == run),
        "{effects:?}"
    );
    let (run2, _, device) = sign_in_of(&effects);
    assert!(device);
    // Late news from the stopped sign-in is ignored.
    w.handle_event(WizardEvent::SignedIn {
        run,
        result: Err("the sign-in was cancelled".into()),
    });
    w.handle_event(WizardEvent::SignInProgress {
        run: run2,
        progress: SignInProgress::DeviceCode {
            user_code: "WDJB-MJHT".into(),
            verification_uri: "https://www.google.com/device".into(),
            complete: None,
        },
    });
    let t = render(&w);
    let text = screen(&t);
    assert!(text.contains("code: WDJB-MJHT"), "{text}");
    assert!(text.contains("https://www.google.com/device"), "{text}");
    assert!(!text.contains("cancelled"), "{text}");
    insta::assert_snapshot!("oauth2_sign_in_device", t.backend());

    // A failure is shown; Enter tries again.
    w.handle_event(WizardEvent::SignedIn {
        run: run2,
        result: Err("the sign-in was denied at the authorization server".into()),
    });
    let text = screen(&render(&w));
    assert!(text.contains("✗ the sign-in was denied"), "{text}");
    let (run3, _, device) = sign_in_of(&key(&mut w, KeyCode::Enter));
    assert!(device, "the same method again");

    // Esc cancels and goes back to the client form, which kept what was typed.
    let effects = key(&mut w, KeyCode::Esc);
    assert!(
        matches!(effects.as_slice(), [Effect::CancelSignIn { run: r }] if *r == run3),
        "{effects:?}"
    );
    let text = screen(&render(&w));
    assert!(text.contains("4/5 OAuth2 client"), "{text}");
    assert!(text.contains("1234-abc.apps"), "{text}");

    // Signed in: the test runs without a password; Enter saves with none.
    let (run4, _, _) = sign_in_of(&key(&mut w, KeyCode::Enter));
    let effects = w.handle_event(WizardEvent::SignedIn {
        run: run4,
        result: Ok(()),
    });
    let [
        Effect::Test {
            run: test,
            account,
            password,
            ..
        },
    ] = effects.as_slice()
    else {
        panic!("expected the login test: {effects:?}");
    };
    assert!(account.uses_oauth2());
    assert!(matches!(password, TestPassword::OAuth2));
    let test = *test;
    steps(&mut w, test, CONNECTED);
    passed(&mut w, test, vec!["INBOX".into()]);
    let text = screen(&render(&w));
    assert!(text.contains("signed in with OAuth2"), "{text}");
    let effects = key(&mut w, KeyCode::Enter);
    let [
        Effect::Save {
            account, password, ..
        },
    ] = effects.as_slice()
    else {
        panic!("expected a save: {effects:?}");
    };
    assert!(account.uses_oauth2());
    assert!(password.is_none(), "no password is stored");
    let effects = w.handle_event(WizardEvent::Saved {
        result: Ok(Saved {
            config_file: "/home/jane/.config/mailbag/config.toml".into(),
            in_keyring: false,
        }),
    });
    assert!(
        matches!(effects.as_slice(), [Effect::Finished { notice, .. }] if notice.contains("signed in with OAuth2")),
        "{effects:?}"
    );
}

#[test]
fn oauth2_only_provider_goes_straight_to_the_client_form() {
    let mut w = wizard();
    let mut found = gmail();
    if let Some(c) = found.candidates.first_mut() {
        c.host = "outlook.office365.com".into();
        c.provider = Some("Microsoft 365 (Exchange Online)".into());
        c.oauth2 = true;
    }
    to_settings_without_password(&mut w, "jane@contoso.com", found);
    assert!(screen(&render(&w)).contains("(OAuth2 sign-in only)"));
    key(&mut w, KeyCode::Enter);
    let text = screen(&render(&w));
    assert!(text.contains("Sign in with Microsoft (OAuth2)"), "{text}");
    typed(&mut w, "00000000-aaaa-bbbb-cccc-000000000000");
    let (_, account, _) = sign_in_of(&key(&mut w, KeyCode::Enter));
    assert_eq!(
        account.oauth2_provider,
        Some(mailbag::config::OAuth2Provider::Microsoft)
    );
    // Back from the sign-in and the form: the settings again.
    key(&mut w, KeyCode::Esc);
    key(&mut w, KeyCode::Esc);
    assert!(screen(&render(&w)).contains("3/5 Server settings"));
}

#[test]
fn manual_settings_with_a_custom_oauth2_server() {
    let mut w = at_settings();
    key(&mut w, KeyCode::Char('e'));
    for _ in 0..5 {
        key(&mut w, KeyCode::Tab);
    }
    for _ in 0..3 {
        key(&mut w, KeyCode::Right);
    }
    let text = screen(&render(&w));
    assert!(text.contains("‹ OAuth2 custom ›"), "{text}");
    assert!(key(&mut w, KeyCode::Enter).is_empty());
    typed(&mut w, "mailbag-test");
    key(&mut w, KeyCode::Tab);
    key(&mut w, KeyCode::Tab);
    typed(&mut w, "http://auth.example.org/authorize");
    key(&mut w, KeyCode::Enter);
    let text = screen(&render(&w));
    assert!(text.contains("must start with https://"), "{text}");
    for _ in 0.."http://auth.example.org/authorize".len() {
        key(&mut w, KeyCode::Backspace);
    }
    typed(&mut w, "https://auth.example.org/authorize");
    key(&mut w, KeyCode::Tab);
    typed(&mut w, "https://auth.example.org/token");
    key(&mut w, KeyCode::Tab);
    key(&mut w, KeyCode::Tab);
    typed(&mut w, "mail offline_access");
    let t = render(&w);
    insta::assert_snapshot!("oauth2_client_custom", t.backend());
    let effects = key(&mut w, KeyCode::Enter);
    let (_, account, device) = sign_in_of(&effects);
    assert!(!device);
    assert_eq!(account.host, "posteo.de");
    assert_eq!(
        account.oauth2_provider,
        Some(mailbag::config::OAuth2Provider::Custom)
    );
    assert_eq!(
        account.oauth2_auth_url.as_deref(),
        Some("https://auth.example.org/authorize")
    );
    assert_eq!(
        account.oauth2_token_url.as_deref(),
        Some("https://auth.example.org/token")
    );
    assert_eq!(account.oauth2_device_url, None);
    assert_eq!(
        account.oauth2_scopes,
        Some(vec!["mail".to_string(), "offline_access".to_string()])
    );
    // No device URL: Tab cannot switch to the device flow.
    assert!(key(&mut w, KeyCode::Tab).is_empty());
    assert!(screen(&render(&w)).contains("no device URL was given"));
}

#[test]
fn a_refused_oauth2_login_offers_no_password_to_change() {
    let mut w = wizard();
    to_settings_without_password(&mut w, "jane@gmail.com", gmail());
    key(&mut w, KeyCode::Enter);
    key(&mut w, KeyCode::Enter);
    typed(&mut w, "1234-abc.apps.googleusercontent.com");
    let (run, _, _) = sign_in_of(&key(&mut w, KeyCode::Enter));
    let test = test_run(&w.handle_event(WizardEvent::SignedIn {
        run,
        result: Ok(()),
    }));
    failed(
        &mut w,
        test,
        CheckStep::Login,
        FailureKind::WrongPassword,
        "imap.gmail.com refused the login for jane@gmail.com",
        "sign in again",
    );
    let text = screen(&render(&w));
    assert!(text.contains("Enter test again"), "{text}");
    assert!(!text.contains("p change the password"), "{text}");
    assert!(key(&mut w, KeyCode::Char('p')).is_empty());
    assert!(screen(&render(&w)).contains("5/5 Test the login"));
}
