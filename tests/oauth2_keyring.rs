//! OAuth2 with refresh tokens in a real OS keyring, against the real Dovecot `oauth2` passdb
//! and the test authorization server (`tests/common/oauth_server.rs`).
//!
//! Each test runs as a child of this binary inside its own private D-Bus session with its
//! own gnome-keyring-daemon and home directory (the user's keyrings are never touched), so
//! mailbag stores and reads refresh tokens exactly as it does for a user. The parent tests
//! only start the session; the `child_*` tests (ignored when run directly) hold the checks.
//!
//! Covered: a rejected (expired) access token is refreshed during a sync; a revoked refresh
//! token gives one "sign in again" line; the authorization code flow with PKCE end to end
//! (this test plays the browser) and with a pasted redirect URL; the device flow with
//! `authorization_pending` and `slow_down`, and a denied device code; mailbag killed with
//! SIGKILL after the refresh token rotated and before its sync finished still signs in on
//! the next start; a refresh token spent by another process meanwhile is not a "sign in
//! again" when the keyring already holds its successor.

mod common;

use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::oauth_server::{
    AuthServer, browser_follow as loopback_get, browser_get as https_get, finish, parse_form,
};
use common::{ALICE, Dovecot};
use mailbag::backend::MailBackend;

/// Set in the child's environment by [`in_keyring_session`].
const CHILD_ENV: &str = "MAILBAG_OAUTH2_KEYRING_CHILD";
/// Printed by a child whose checks all passed.
const CHILD_OK: &str = "MAILBAG-OAUTH2-CHILD-OK";

/// Runs the ignored test `child` of this binary in a private D-Bus session with an unlocked
/// gnome-keyring, and fails if it does not report success.
fn in_keyring_session(child: &str) {
    if !common::dovecot_installed(child) {
        return;
    }
    let Some(out) = common::in_keyring_session(child, CHILD_ENV) else {
        return;
    };
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(
        out.status.success() && stdout.contains(CHILD_OK),
        "{child} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}

/// `true` when running as a child; otherwise says why the test does nothing.
fn is_child() -> bool {
    let yes = std::env::var_os(CHILD_ENV).is_some();
    if !yes {
        println!("skipped: only meaningful inside the private keyring session");
    }
    yes
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The auth server plus a Dovecot that asks it about tokens; panics if Dovecot is missing
/// (the parent would have been skipped... but the child must not pass silently).
fn servers() -> (AuthServer, Dovecot) {
    let auth = AuthServer::start().expect("start the authorization server");
    let Some(dovecot) = Dovecot::start_oauth2(&auth.introspection_url()) else {
        panic!("the OAuth2 keyring tests need dovecot");
    };
    (auth, dovecot)
}

/// A mailbag profile whose `work` account signs in at `auth`.
struct Profile {
    dir: tempfile::TempDir,
}

impl Profile {
    fn new(d: &Dovecot, auth: &AuthServer, protocol: &str) -> Profile {
        let dir = tempfile::tempdir().expect("temp dir");
        common::oauth_server::write_profile(dir.path(), d, protocol, &auth.account_keys());
        Profile { dir }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data/mailbag")
    }

    fn command(&self, args: &[&str]) -> Command {
        common::oauth_server::mailbag_in(self.dir.path(), args)
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .expect("run mailbag")
    }

    fn account(&self) -> mailbag::config::Account {
        let path = self.dir.path().join("config/mailbag/config.toml");
        let config = mailbag::config::load(&path).expect("config");
        config.account("work").expect("work").clone()
    }

    /// Puts `token` into the keyring as if the user had signed in earlier.
    fn store_refresh_token(&self, token: &str) {
        mailbag::oauth2::store::save_refresh_token(
            "work",
            &self.account(),
            &mailbag::credentials::Secret::new(token.to_string()),
        )
        .expect("store the refresh token in the keyring");
    }

    fn stored_refresh_token(&self) -> Option<String> {
        mailbag::oauth2::store::load_refresh_token("work", &self.account())
            .expect("read the keyring")
            .map(|s| s.expose().to_string())
    }

    fn message_count(&self) -> usize {
        let out = self.run(&["list", "--json", "--limit", "100000"]);
        assert!(out.status.success(), "list: {}", text(&out.stderr));
        text(&out.stdout).lines().count()
    }
}

fn backend_for(
    protocol: &str,
    account: &mailbag::config::Account,
    data: &Path,
) -> mailbag::backend::Backend {
    use mailbag::backend::{Backend, imap::ImapBackend, pop3::Pop3Backend};
    match protocol {
        "imap" => Backend::Imap(Box::new(ImapBackend::new("work", account.clone()))),
        _ => Backend::Pop3(Box::new(Pop3Backend::new("work", account.clone(), data))),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

// ---------------------------------------------------------------------------------------------
// A rejected access token is refreshed during a sync.

#[test]
fn expired_access_token_is_refreshed_during_a_sync() {
    in_keyring_session("child_expired_access_token_is_refreshed");
}

#[test]
#[ignore = "run by expired_access_token_is_refreshed_during_a_sync in a private keyring"]
fn child_expired_access_token_is_refreshed() {
    if !is_child() {
        return;
    }
    let (auth, d) = servers();
    d.seed(ALICE.name, "INBOX", 4).expect("seed");
    for protocol in ["imap", "pop3"] {
        let p = Profile::new(&d, &auth, protocol);
        let (_, refresh) = auth.issue(ALICE.name);
        p.store_refresh_token(&refresh);
        let account = p.account();
        let before = auth.lock().refreshes;
        runtime().block_on(async {
            std::fs::create_dir_all(p.data()).expect("data dir");
            let mut cache = mailbag::store::cache::Cache::open(&p.data()).expect("cache");
            let mut backend = backend_for(protocol, &account, &p.data());
            let first = backend
                .sync_folder(&mut cache, "INBOX", &mut |_| {})
                .await
                .expect("first sync");
            let held = d.message_count(ALICE.name, "INBOX").expect("count");
            assert_eq!(first.new_messages, held, "{protocol}");
            assert_eq!(
                auth.lock().refreshes,
                before + 1,
                "{protocol}: one refresh to start"
            );
            // The server forgets the access token mailbag holds in memory: the next login is
            // refused, mailbag refreshes once and logs in with the new token.
            drop(backend);
            auth.expire_access_tokens();
            let mut backend = backend_for(protocol, &account, &p.data());
            d.deliver(
                ALICE.name,
                "INBOX",
                &common::seed_message(900, ALICE.name).bytes,
            )
            .expect("deliver");
            let second = backend
                .sync_folder(&mut cache, "INBOX", &mut |_| {})
                .await
                .unwrap_or_else(|e| panic!("{protocol}: second sync: {e}\n{}", d.logs()));
            assert_eq!(second.new_messages, 1, "{protocol}");
            assert_eq!(
                auth.lock().refreshes,
                before + 2,
                "{protocol}: the refused token was refreshed exactly once"
            );
        });
        // The rotated refresh token is the one in the keyring; the first one is spent.
        let valid = auth.valid_refresh_tokens();
        let stored = p.stored_refresh_token().expect("stored");
        assert!(valid.contains(&stored), "{protocol}");
        assert!(!valid.contains(&refresh), "{protocol}");
        assert_ne!(stored, refresh, "{protocol}");
        mailbag::oauth2::store::forget(&account);
    }

    // An access token close to its expiry is refreshed before it is used, not after a
    // refused login: every login then costs exactly one introspection.
    auth.lock().access_lifetime = 60;
    let p = Profile::new(&d, &auth, "imap");
    let account = p.account();
    let (_, refresh) = auth.issue(ALICE.name);
    p.store_refresh_token(&refresh);
    let (refreshes, introspections) = {
        let s = auth.lock();
        (s.refreshes, s.introspections)
    };
    runtime().block_on(async {
        std::fs::create_dir_all(p.data()).expect("data dir");
        let mut cache = mailbag::store::cache::Cache::open(&p.data()).expect("cache");
        for round in 0..2 {
            let mut backend = backend_for("imap", &account, &p.data());
            backend
                .sync_folder(&mut cache, "INBOX", &mut |_| {})
                .await
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
    });
    let s = auth.lock();
    assert_eq!(s.refreshes, refreshes + 2, "one refresh before each login");
    assert_eq!(
        s.introspections,
        introspections + 2,
        "no login was refused and retried"
    );
    drop(s);
    println!("{CHILD_OK}");
}

// ---------------------------------------------------------------------------------------------
// A revoked refresh token asks the user to sign in again.

#[test]
fn revoked_refresh_token_asks_to_sign_in_again() {
    in_keyring_session("child_revoked_refresh_token");
}

#[test]
#[ignore = "run by revoked_refresh_token_asks_to_sign_in_again in a private keyring"]
fn child_revoked_refresh_token() {
    if !is_child() {
        return;
    }
    let (auth, d) = servers();
    for protocol in ["imap", "pop3"] {
        let p = Profile::new(&d, &auth, protocol);
        let (_, refresh) = auth.issue(ALICE.name);
        p.store_refresh_token(&refresh);
        auth.revoke_refresh_tokens();
        let out = p.run(&["sync"]);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{protocol}: sync succeeded: {err}");
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| l.contains("sign in again"))
            .collect();
        assert_eq!(lines.len(), 1, "{protocol}: one line: {err}");
        assert!(lines[0].contains("mailbag login work"), "{protocol}: {err}");
        assert!(
            !err.contains(&refresh),
            "{protocol}: the token leaked: {err}"
        );
        assert_eq!(
            auth.lock().refreshes,
            0,
            "{protocol}: nothing was refreshed"
        );
    }
    // A server that refuses even a fresh access token: one refresh, one retry, then one
    // "sign in again" line, not a loop.
    for protocol in ["imap", "pop3"] {
        let p = Profile::new(&d, &auth, protocol);
        let (_, refresh) = auth.issue(ALICE.name);
        p.store_refresh_token(&refresh);
        let before = auth.lock().refreshes;
        auth.lock().reject_all = true;
        let out = p.run(&["sync"]);
        auth.lock().reject_all = false;
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{protocol}: {err}");
        assert!(
            err.contains("refused a fresh access token") && err.contains("sign in again"),
            "{protocol}: {err}"
        );
        assert_eq!(
            auth.lock().refreshes,
            before + 2,
            "{protocol}: one refresh to start, one after the refusal"
        );
    }

    // Without any stored token the message says how to sign in.
    let p = Profile::new(&d, &auth, "imap");
    assert!(
        mailbag::oauth2::store::delete_refresh_token("work", &p.account()).expect("delete"),
        "the loop above stored a token for this user and host"
    );
    assert_eq!(p.stored_refresh_token(), None);
    let out = p.run(&["sync"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not signed in yet: run `mailbag login work`"),
        "{}",
        text(&out.stderr)
    );
    println!("{CHILD_OK}");
}

// ---------------------------------------------------------------------------------------------
// The authorization code flow with PKCE and a loopback redirect.

/// Reads `child`'s stdout lines until one contains `needle`; returns that line trimmed.
fn wait_for_line(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    needle: &str,
) -> String {
    for line in lines.by_ref() {
        let line = line.expect("read stdout");
        if line.contains(needle) {
            return line.trim().to_string();
        }
    }
    panic!("mailbag's output ended without a line containing {needle:?}");
}

/// Starts `mailbag login work ARGS` with stdout piped; returns it and its stdout lines.
fn start_login(
    p: &Profile,
    args: &[&str],
) -> (Child, std::io::Lines<BufReader<std::process::ChildStdout>>) {
    let mut all = vec!["login", "work"];
    all.extend_from_slice(args);
    let mut child = p
        .command(&all)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mailbag login");
    let stdout = child.stdout.take().expect("stdout");
    (child, BufReader::new(stdout).lines())
}

#[test]
fn authorization_code_flow_end_to_end() {
    in_keyring_session("child_authorization_code_flow");
}

#[test]
#[ignore = "run by authorization_code_flow_end_to_end in a private keyring"]
fn child_authorization_code_flow() {
    if !is_child() {
        return;
    }
    let (auth, d) = servers();
    d.seed(ALICE.name, "INBOX", 2).expect("seed");
    let p = Profile::new(&d, &auth, "imap");

    // 1. The browser follows the redirect to mailbag's loopback listener.
    let (child, mut lines) = start_login(&p, &["--no-browser"]);
    let url = wait_for_line(&mut lines, &auth.url("/authorize?"));
    let query = parse_form(url.split_once('?').expect("query").1);
    assert_eq!(
        query.get("code_challenge_method").map(String::as_str),
        Some("S256")
    );
    assert_eq!(
        query.get("scope").map(String::as_str),
        Some("mail offline_access")
    );
    let (status, location) = https_get(&url, auth.ca_path());
    assert!(status.contains("302"), "{status}");
    let location = location.expect("a redirect");
    assert!(location.starts_with("http://127.0.0.1:"), "{location}");
    // A browser may open a connection it never uses (a speculative preconnect): it must not
    // hold up the real one.
    let authority = location
        .strip_prefix("http://")
        .and_then(|r| r.split('/').next())
        .expect("authority");
    let _idle = std::net::TcpStream::connect(authority).expect("idle connection");
    let page = loopback_get(&location);
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("You can close this window"), "{page}");
    let (ok, err) = finish(child);
    assert!(ok, "login failed: {err}\n{:?}", auth.lock().log);
    let stored = p
        .stored_refresh_token()
        .expect("a refresh token in the keyring");
    assert_eq!(auth.valid_refresh_tokens(), vec![stored.clone()]);

    let out = p.run(&["sync"]);
    assert!(out.status.success(), "sync: {}", text(&out.stderr));
    assert_eq!(p.message_count(), 2);
    // Without oauth2_mechanism, OAUTHBEARER (the standard) wins over XOAUTH2.
    assert!(
        d.logs()
            .lines()
            .any(|l| l.contains("Login: user=<alice>") && l.contains("method=OAUTHBEARER")),
        "{}",
        d.logs()
    );

    // 2. A headless box: the user pastes the address the browser ended on.
    let (mut child, mut lines) = start_login(&p, &["--no-browser"]);
    let url = wait_for_line(&mut lines, &auth.url("/authorize?"));
    let (_, location) = https_get(&url, auth.ca_path());
    let location = location.expect("a redirect");
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin, "not a url").expect("paste");
    writeln!(stdin, "{location}").expect("paste");
    let (ok, err) = finish(child);
    assert!(ok, "pasted login failed: {err}");
    assert!(err.contains("not the address"), "{err}");
    let newer = p.stored_refresh_token().expect("stored");
    assert_ne!(newer, stored, "the second sign-in stored its own token");

    // 3. A forged redirect (wrong state) is refused and stores nothing new.
    let (mut child, mut lines) = start_login(&p, &["--no-browser"]);
    let url = wait_for_line(&mut lines, &auth.url("/authorize?"));
    let (_, location) = https_get(&url, auth.ca_path());
    let location = location.expect("a redirect");
    let forged = location.replace("state=", "state=x");
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin, "{forged}").expect("paste");
    let (ok, err) = finish(child);
    assert!(!ok, "a forged state was accepted");
    assert!(err.contains("state does not match"), "{err}");
    assert_eq!(p.stored_refresh_token().as_deref(), Some(newer.as_str()));
    println!("{CHILD_OK}");
}

// ---------------------------------------------------------------------------------------------
// The device authorization grant.

#[test]
fn device_flow_with_pending_and_slow_down() {
    in_keyring_session("child_device_flow");
}

#[test]
#[ignore = "run by device_flow_with_pending_and_slow_down in a private keyring"]
fn child_device_flow() {
    if !is_child() {
        return;
    }
    let (auth, d) = servers();
    d.seed(ALICE.name, "INBOX", 1).expect("seed");
    let p = Profile::new(&d, &auth, "pop3");
    let (child, mut lines) = start_login(&p, &["--device"]);
    wait_for_line(&mut lines, "https://localhost/device");
    let code = wait_for_line(&mut lines, "WDJB-");
    assert!(auth.decide_device(&code, true), "unknown user code {code}");
    let (ok, err) = finish(child);
    assert!(ok, "device login failed: {err}");
    {
        let s = auth.lock();
        // The server answered pending, then slow_down, then (after the longer wait) tokens.
        assert_eq!(
            s.poll_answers,
            vec!["authorization_pending", "slow_down", "ok"],
            "{:?}",
            s.log
        );
        assert_eq!(s.polls_too_fast, 0, "mailbag polled faster than allowed");
    }
    let out = p.run(&["sync"]);
    assert!(out.status.success(), "sync: {}", text(&out.stderr));
    assert_eq!(p.message_count(), 1);

    // A denied code ends the sign-in with a clear error.
    let (child, mut lines) = start_login(&p, &["--device"]);
    let code = wait_for_line(&mut lines, "WDJB-");
    assert!(auth.decide_device(&code, false));
    let (ok, err) = finish(child);
    assert!(!ok, "a denied device code signed in");
    assert!(err.contains("denied"), "{err}");

    // So does a code that expires before anyone approves it.
    let (child, mut lines) = start_login(&p, &["--device"]);
    let code = wait_for_line(&mut lines, "WDJB-");
    assert!(auth.expire_device(&code));
    let (ok, err) = finish(child);
    assert!(!ok, "an expired device code signed in");
    assert!(err.contains("device code expired"), "{err}");
    println!("{CHILD_OK}");
}

// ---------------------------------------------------------------------------------------------
// Killed after the refresh token rotated, before the sync finished.

#[test]
fn killed_after_rotation_still_signs_in_next_time() {
    in_keyring_session("child_killed_after_rotation");
}

#[test]
#[ignore = "run by killed_after_rotation_still_signs_in_next_time in a private keyring"]
fn child_killed_after_rotation() {
    if !is_child() {
        return;
    }
    let (auth, d) = servers();
    d.seed(ALICE.name, "INBOX", 3).expect("seed");
    let p = Profile::new(&d, &auth, "imap");
    let (_, first) = auth.issue(ALICE.name);
    p.store_refresh_token(&first);
    // Dovecot's question about the new access token is held, so mailbag sits in the middle of
    // its login: it has the rotated refresh token and has not finished the sync.
    auth.lock().hold_introspection = true;
    let mut child = p
        .command(&["sync"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mailbag sync");
    let deadline = Instant::now() + Duration::from_secs(60);
    while auth.lock().held == 0 {
        assert!(Instant::now() < deadline, "mailbag never reached the login");
        assert!(
            child.try_wait().expect("wait").is_none(),
            "mailbag exited early"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(auth.lock().refreshes, 1, "the refresh token rotated once");
    child.kill().expect("SIGKILL mailbag");
    let status = child.wait().expect("wait");
    assert!(!status.success());
    auth.lock().hold_introspection = false;
    // The old refresh token is dead; only the rotated one works, and the keyring has it.
    let valid = auth.valid_refresh_tokens();
    assert_eq!(valid.len(), 1);
    assert_ne!(valid[0], first);
    assert_eq!(p.stored_refresh_token().as_deref(), Some(valid[0].as_str()));

    let out = p.run(&["sync"]);
    assert!(
        out.status.success(),
        "the next start: {}",
        text(&out.stderr)
    );
    assert_eq!(p.message_count(), 3);
    assert_eq!(auth.lock().refreshes, 2);
    println!("{CHILD_OK}");
}

// ---------------------------------------------------------------------------------------------
// Another process spent the refresh token and stored its successor while this one refreshed.

#[test]
fn refresh_token_rotated_by_another_process_is_picked_up() {
    in_keyring_session("child_rotated_by_another_process");
}

#[test]
#[ignore = "run by refresh_token_rotated_by_another_process_is_picked_up in a private keyring"]
fn child_rotated_by_another_process() {
    if !is_child() {
        return;
    }
    let (auth, d) = servers();
    let p = Profile::new(&d, &auth, "imap");
    let account = p.account();
    let (_, first) = auth.issue(ALICE.name);
    p.store_refresh_token(&first);
    // The other process: it spent `first`, got `second`, and stores `second` in the keyring
    // just after this process read `first` from it.
    let (_, second) = auth.issue(ALICE.name);
    if let Some(v) = auth.lock().refresh.get_mut(&first) {
        v.1 = false;
    }
    let (other, keyring_second) = (account.clone(), second.clone());
    auth.lock().before_refresh = Some(Box::new(move |_| {
        mailbag::oauth2::store::save_refresh_token(
            "work",
            &other,
            &mailbag::credentials::Secret::new(keyring_second.clone()),
        )
        .expect("the other process stores its token");
    }));
    let token = runtime().block_on(mailbag::oauth2::access_token("work", &account));
    auth.lock().before_refresh = None;
    let token = token.unwrap_or_else(|e| panic!("{e}\n{:?}", auth.lock().log));
    assert!(auth.lock().access.contains_key(token.expose()));
    assert_eq!(auth.lock().refreshes, 1, "one refresh, with the successor");
    // That refresh rotated `second` in turn; the keyring holds the newest token.
    let valid = auth.valid_refresh_tokens();
    assert_eq!(valid.len(), 1, "{valid:?}");
    assert_ne!(valid[0], second);
    assert_eq!(p.stored_refresh_token().as_deref(), Some(valid[0].as_str()));
    println!("{CHILD_OK}");
}
