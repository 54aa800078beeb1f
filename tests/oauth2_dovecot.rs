//! OAuth2 sign-in against the real Dovecot with its `oauth2` passdb (RFC 7628 OAUTHBEARER,
//! XOAUTH2), checking tokens at the test authorization server in `tests/common/oauth_server.rs`.
//!
//! The tests here hand mailbag its access token through `oauth2_token_command`, so they need
//! no keyring; `tests/oauth2_keyring.rs` covers refresh tokens, the sign-in flows and rotation.

mod common;

use std::path::Path;
use std::process::Output;

use common::oauth_server::AuthServer;
use common::{ALICE, Dovecot};

/// The auth server plus a Dovecot that asks it about tokens.
fn servers() -> Option<(AuthServer, Dovecot)> {
    let auth = AuthServer::start().expect("start the authorization server");
    let dovecot = Dovecot::start_oauth2(&auth.introspection_url())?;
    Some((auth, dovecot))
}

/// A profile whose `work` account gets its access token by `cat`-ing a file.
struct Profile {
    dir: tempfile::TempDir,
}

impl Profile {
    fn new(d: &Dovecot, protocol: &str, mechanism: &str) -> Profile {
        let dir = tempfile::tempdir().expect("temp dir");
        let token = dir.path().join("token");
        common::oauth_server::write_profile(
            dir.path(),
            d,
            protocol,
            &format!(
                "auth = \"oauth2\"\noauth2_mechanism = \"{mechanism}\"\n\
                 oauth2_token_command = \"cat {}\"\n",
                token.display()
            ),
        );
        Profile { dir }
    }

    fn set_token(&self, token: &str) {
        std::fs::write(self.dir.path().join("token"), token).expect("token file");
    }

    fn run(&self, args: &[&str]) -> Output {
        run_in(self.dir.path(), args)
    }
}

fn run_in(dir: &Path, args: &[&str]) -> Output {
    common::oauth_server::mailbag_in(dir, args)
        .output()
        .expect("run mailbag")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Subjects in the cached INBOX, via `mailbag list --json`.
fn subjects(p: &Profile) -> Vec<String> {
    let out = p.run(&["list", "--json", "--limit", "1000"]);
    assert!(out.status.success(), "list: {}", text(&out.stderr));
    let mut subjects: Vec<String> = text(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            v.get("subject")
                .and_then(|s| s.as_str())
                .map(str::to_string)
        })
        .collect();
    subjects.sort();
    subjects
}

fn signs_in(protocol: &str) {
    let Some((auth, d)) = servers() else { return };
    d.seed(ALICE.name, "INBOX", 3).expect("seed");
    for mechanism in ["oauthbearer", "xoauth2"] {
        let p = Profile::new(&d, protocol, mechanism);
        let (access, _) = auth.issue(ALICE.name);
        p.set_token(&access);
        let before = auth.lock().introspections;
        let out = p.run(&["sync"]);
        assert!(
            out.status.success(),
            "{protocol} {mechanism}: sync failed: {}\n{}",
            text(&out.stderr),
            d.logs()
        );
        assert_eq!(subjects(&p).len(), 3, "{protocol} {mechanism}");
        assert!(
            auth.lock().introspections > before,
            "dovecot never asked the authorization server"
        );
        let mech_upper = mechanism.to_uppercase();
        let logins = d
            .logs()
            .lines()
            .filter(|l| {
                l.contains("Login: user=<alice>") && l.contains(&format!("method={mech_upper}"))
            })
            .count();
        assert!(
            logins >= 1,
            "dovecot did not log a {mech_upper} login:\n{}",
            d.logs()
        );
    }
}

#[test]
fn imap_signs_in_with_oauthbearer_and_xoauth2() {
    signs_in("imap");
}

#[test]
fn pop3_signs_in_with_oauthbearer_and_xoauth2() {
    signs_in("pop3");
}

fn refused_token_is_a_sign_in_again_error(protocol: &str) {
    let Some((auth, d)) = servers() else { return };
    for mechanism in ["oauthbearer", "xoauth2"] {
        let p = Profile::new(&d, protocol, mechanism);
        let (access, _) = auth.issue(ALICE.name);
        auth.expire_access_tokens();
        p.set_token(&access);
        let out = p.run(&["sync"]);
        let err = text(&out.stderr);
        assert!(
            !out.status.success(),
            "{protocol} {mechanism}: sync succeeded"
        );
        assert!(
            err.contains("refused the access token from oauth2_token_command twice")
                && err.contains("sign in again"),
            "{protocol} {mechanism}: {err}"
        );
        assert_eq!(
            err.trim()
                .lines()
                .filter(|l| l.contains("sign in again"))
                .count(),
            1,
            "one line, no loop: {err}"
        );
        assert!(!err.contains(&access), "the token leaked: {err}");
    }
}

#[test]
fn imap_refused_token_asks_to_sign_in_again() {
    refused_token_is_a_sign_in_again_error("imap");
}

#[test]
fn pop3_refused_token_asks_to_sign_in_again() {
    refused_token_is_a_sign_in_again_error("pop3");
}
