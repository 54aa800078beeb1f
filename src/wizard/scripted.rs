//! `mailbag setup` on the command line: `--non-interactive` for scripts, `--discover` to see
//! what discovery finds. In a terminal, plain `mailbag setup` opens the wizard's screens
//! ([`crate::ui::wizard`]); without one it prints a pointer to both forms.
//!
//! The non-interactive form discovers whatever is not given, tests the login with every
//! candidate in turn (a server that does not answer moves on to the next; a refused password
//! or an untrusted certificate stops with the reason and what to do), and writes the account
//! only when a login worked.
//!
//! With `--auth oauth2` it signs in first (RFC 6749 authorization code with PKCE: the address
//! is printed on stdout, the browser's redirect comes back to a loopback listener or is pasted
//! on stdin; or with `--device` the RFC 8628 device code), then tests the login with the new
//! token and saves `auth = "oauth2"` with the `oauth2_*` keys and no password.

use std::io::{IsTerminal, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use super::check::{self, CheckEvent, FailureKind};
use super::discover::{self, Discovered, Discovery, Outcome};
use super::save::{self, PasswordChoice};
use super::{Candidate, EmailAddress, Source, security_name};
use crate::config::{OAuth2Provider, Paths, Protocol, Security};
use crate::credentials::{self, Secret};
use crate::error::{Error, Result};
use crate::sanitize;

/// The options of `mailbag setup`.
#[derive(Debug, Clone, Default, Args)]
pub struct SetupArgs {
    /// Set up from the options below without asking anything (for scripts).
    #[arg(long, conflicts_with = "discover")]
    pub non_interactive: bool,
    /// Only print what discovery finds for this address; write nothing.
    #[arg(long, value_name = "EMAIL")]
    pub discover: Option<String>,
    /// With --discover: ask every source, not only up to the first that finds something.
    #[arg(long, requires = "discover")]
    pub all: bool,
    /// The account's name in config.toml (`[accounts.NAME]`).
    #[arg(long)]
    pub name: Option<String>,
    /// The email address.
    #[arg(long)]
    pub email: Option<String>,
    /// The name shown as the sender.
    #[arg(long)]
    pub display_name: Option<String>,
    /// imap or pop3 (default: what discovery finds, IMAP first).
    #[arg(long, value_parser = ["imap", "pop3"])]
    pub protocol: Option<String>,
    /// The server (default: discovered).
    #[arg(long)]
    pub host: Option<String>,
    /// The port (default: the standard port for protocol and security).
    #[arg(long)]
    pub port: Option<u16>,
    /// tls, starttls or none.
    #[arg(long, value_parser = ["tls", "starttls", "none"])]
    pub security: Option<String>,
    /// The login name (default: what discovery says, else the address).
    #[arg(long)]
    pub username: Option<String>,
    /// A command that prints the password; without it the password goes to the OS keyring
    /// (read from stdin, or asked for without echo on a terminal).
    #[arg(long, value_name = "CMD")]
    pub password_command: Option<String>,
    /// A PEM file with an extra CA (or the server's self-signed certificate) to trust.
    #[arg(long, value_name = "FILE")]
    pub tls_ca_file: Option<PathBuf>,
    /// Trust exactly the certificate with this SHA-256 fingerprint.
    #[arg(long, value_name = "HEX")]
    pub tls_cert_sha256: Option<String>,
    /// POP3: leave mail on the server after download (default true).
    #[arg(long, value_name = "BOOL")]
    pub leave_on_server: Option<bool>,
    /// POP3: delete mail from the server this many days after download.
    #[arg(long, value_name = "DAYS")]
    pub delete_after_days: Option<u32>,
    /// password (default) or oauth2: sign in with OAuth2 (docs/oauth2.md) instead of a
    /// password; the sign-in runs before the login test.
    #[arg(long, value_parser = ["password", "oauth2"])]
    pub auth: Option<String>,
    /// With --auth oauth2: google, microsoft or custom (default: what the provider list says
    /// for the server).
    #[arg(long, value_parser = ["google", "microsoft", "custom"])]
    pub oauth2_provider: Option<String>,
    /// With --auth oauth2: the client id of the app you registered.
    #[arg(long, value_name = "ID")]
    pub oauth2_client_id: Option<String>,
    /// With --auth oauth2: the client secret, if the registration has one. Better given in
    /// the environment: other users on the machine can read a command line (`ps`).
    #[arg(
        long,
        value_name = "SECRET",
        env = "MAILBAG_OAUTH2_CLIENT_SECRET",
        hide_env_values = true
    )]
    pub oauth2_client_secret: Option<String>,
    /// With --oauth2-provider custom: the authorization endpoint.
    #[arg(long, value_name = "URL")]
    pub oauth2_auth_url: Option<String>,
    /// With --oauth2-provider custom: the token endpoint.
    #[arg(long, value_name = "URL")]
    pub oauth2_token_url: Option<String>,
    /// With --oauth2-provider custom: the device authorization endpoint.
    #[arg(long, value_name = "URL")]
    pub oauth2_device_url: Option<String>,
    /// With --oauth2-provider custom: the scopes, separated by spaces.
    #[arg(long, value_name = "SCOPES")]
    pub oauth2_scopes: Option<String>,
    /// A PEM file with an extra CA to trust for the OAuth2 endpoints.
    #[arg(long, value_name = "FILE")]
    pub oauth2_ca_file: Option<PathBuf>,
    /// With --auth oauth2: sign in with a device code (RFC 8628) instead of the browser.
    #[arg(long)]
    pub device: bool,
    /// Do not start a browser for the OAuth2 sign-in (the address is printed / shown).
    #[arg(long)]
    pub no_browser: bool,
    /// Use this DNS server for discovery instead of /etc/resolv.conf (for testing).
    #[arg(long, value_name = "ADDR", hide = true)]
    pub dns_server: Option<SocketAddr>,
}

/// Runs `mailbag setup` with `args`; returns the exit code.
pub fn run(paths: &Paths, args: SetupArgs) -> Result<i32> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the async runtime", e))?;
    if let Some(address) = &args.discover {
        let email = EmailAddress::parse(address).map_err(Error::Usage)?;
        let d = discovery(&args);
        let found = runtime.block_on(discover::discover(&email, &d));
        let mut out = std::io::stdout().lock();
        print_discovered(&mut out, &email, &found)
            .map_err(|e| Error::io("cannot write to stdout", e))?;
        return Ok(if found.candidates.is_empty() { 1 } else { 0 });
    }
    if !args.non_interactive {
        if args.name.is_some() || args.email.is_some() {
            return Err(Error::Usage(
                "add --non-interactive to set up from options".into(),
            ));
        }
        println!("{}", INTERACTIVE_PENDING);
        return Ok(0);
    }
    let mut signed_in = Vec::new();
    let result = runtime.block_on(non_interactive(paths, &args, &mut signed_in));
    // NOTE: whatever happened, a refresh token that no saved account uses goes (a failed
    // login test, another candidate saved instead, an error).
    if let Err(e) = crate::oauth2::store::forget_unsaved(&paths.config_file, &signed_in) {
        eprintln!(
            "warning: a refresh token of the unsaved sign-in may be left in the OS keyring: {}",
            sanitize::line(&e.to_string())
        );
    }
    result
}

/// What `mailbag setup` prints when it is not run in a terminal.
pub const INTERACTIVE_PENDING: &str =
    "The interactive setup wizard comes with the TUI: run `mailbag setup` (or `mailbag`) in a
terminal. Without a terminal, set up an account with:

  mailbag setup --non-interactive --name NAME --email ADDRESS \\
      [--protocol imap|pop3] [--host HOST] [--port PORT] [--security tls|starttls|none] \\
      [--username USER] [--password-command CMD] [--tls-ca-file FILE] \\
      [--leave-on-server true|false]

Settings not given are discovered. The password is read from stdin (or asked for) and kept
in the OS keyring, unless --password-command is given. For OAuth2 (Gmail, Microsoft 365),
add --auth oauth2 --oauth2-client-id ID [--oauth2-provider google|microsoft|custom]
[--device]: the sign-in address is printed, and the refresh token kept in the OS keyring
(see docs/oauth2.md). To see what discovery finds:

  mailbag setup --discover ADDRESS";

fn discovery(args: &SetupArgs) -> Discovery {
    Discovery {
        all_sources: args.all,
        nameserver: args.dns_server,
        trust: crate::tls::TlsTrust {
            ca_file: args.tls_ca_file.clone(),
            cert_sha256: None,
        },
        ..Discovery::default()
    }
}

/// Prints discovery's findings: one block per candidate, then what each source did.
pub fn print_discovered(
    out: &mut impl Write,
    email: &EmailAddress,
    found: &Discovered,
) -> std::io::Result<()> {
    writeln!(out, "Discovery for {}:", sanitize::line(&email.address))?;
    if found.candidates.is_empty() {
        writeln!(out, "  no server settings found")?;
    }
    for (i, c) in found.candidates.iter().enumerate() {
        writeln!(
            out,
            "{:>3}. {:<5} {}:{}  security {}  user {}",
            i + 1,
            c.protocol.as_str(),
            sanitize::line(&c.host),
            c.port,
            security_name(c.security),
            sanitize::line(&c.username)
        )?;
        writeln!(
            out,
            "     source: {}",
            sanitize::line(&c.source.to_string())
        )?;
        if let Some(p) = &c.provider {
            writeln!(out, "     provider: {}", sanitize::line(p))?;
        }
        if c.oauth2 {
            writeln!(
                out,
                "     note: OAuth2 only: set up with --auth oauth2 (see docs/oauth2.md)."
            )?;
        }
        for n in &c.notes {
            writeln!(out, "     note: {}", sanitize::line(n))?;
        }
    }
    writeln!(out, "Sources:")?;
    for r in &found.reports {
        match &r.outcome {
            Outcome::Found(n) => writeln!(out, "  {}: {n} found", r.step.label())?,
            Outcome::Skipped => writeln!(out, "  {}: not asked", r.step.label())?,
            Outcome::Nothing(notes) => {
                writeln!(out, "  {}: nothing", r.step.label())?;
                for n in notes {
                    writeln!(out, "    {}", sanitize::line(n))?;
                }
            }
        }
    }
    Ok(())
}

fn parse_protocol(s: &str) -> Protocol {
    if s == "pop3" {
        Protocol::Pop3
    } else {
        Protocol::Imap
    }
}

fn parse_security(s: &str) -> Security {
    match s {
        "starttls" => Security::Starttls,
        "none" => Security::None,
        _ => Security::Tls,
    }
}

/// `signed_in` gets every account an OAuth2 sign-in was run for.
async fn non_interactive(
    paths: &Paths,
    args: &SetupArgs,
    signed_in: &mut Vec<crate::config::Account>,
) -> Result<i32> {
    let name = args
        .name
        .as_deref()
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| Error::Usage("--non-interactive needs --name".into()))?;
    let address = args
        .email
        .as_deref()
        .ok_or_else(|| Error::Usage("--non-interactive needs --email".into()))?;
    let email = EmailAddress::parse(address).map_err(Error::Usage)?;
    let config = crate::config::load(&paths.config_file)?;
    if config.account(name).is_some() {
        return Err(Error::Usage(format!(
            "an account named {} already exists in {}: pick another --name",
            sanitize::line(name),
            paths.config_file.display()
        )));
    }
    let protocol = args.protocol.as_deref().map(parse_protocol);
    let security = args.security.as_deref().map(parse_security);
    let pin = match &args.tls_cert_sha256 {
        Some(fp) => Some(
            crate::tls::parse_fingerprint(fp)
                .map(|b| b.iter().map(|x| format!("{x:02x}")).collect::<String>())
                .ok_or_else(|| {
                    Error::Usage("--tls-cert-sha256 needs 64 hex digits (colons allowed)".into())
                })?,
        ),
        None => None,
    };
    let oauth2 = oauth2_settings(args)?;
    if protocol == Some(Protocol::Imap)
        && (args.leave_on_server.is_some() || args.delete_after_days.is_some())
    {
        return Err(Error::Usage(
            "--leave-on-server and --delete-after-days are for POP3 accounts".into(),
        ));
    }

    let candidates = match &args.host {
        Some(host) => {
            let protocol = protocol.unwrap_or(Protocol::Imap);
            let security = security.unwrap_or(Security::Tls);
            let default_port =
                super::blank_account(&email.address, protocol, host, security).port();
            vec![Candidate {
                source: Source::Manual,
                provider: None,
                protocol,
                host: host.clone(),
                port: args.port.unwrap_or(default_port),
                security,
                username: email.address.clone(),
                oauth2: false,
                notes: Vec::new(),
            }]
        }
        None => {
            eprintln!(
                "discovering settings for {} ...",
                sanitize::line(&email.address)
            );
            let found = discover::discover(&email, &discovery(args)).await;
            let mut oauth_only = Vec::new();
            let usable: Vec<Candidate> = found
                .candidates
                .iter()
                .filter(|c| protocol.is_none_or(|p| c.protocol == p))
                .filter(|c| match security {
                    Some(s) => c.security == s,
                    None => c.security != Security::None,
                })
                .filter(|c| args.port.is_none_or(|p| c.port == p))
                .filter(|c| {
                    if c.oauth2 && oauth2.is_none() {
                        oauth_only.push(c.provider.clone().unwrap_or_else(|| c.host.clone()));
                    }
                    !c.oauth2 || oauth2.is_some()
                })
                .cloned()
                .collect();
            if usable.is_empty() {
                let mut err = std::io::stderr().lock();
                let _ = print_discovered(&mut err, &email, &found);
                if let Some(p) = oauth_only.first() {
                    return Err(Error::Usage(format!(
                        "{} accepts only OAuth2 sign-in: add --auth oauth2 --oauth2-client-id ID \
                         (see docs/oauth2.md)",
                        sanitize::line(p)
                    )));
                }
                return Err(Error::Usage(format!(
                    "no usable server settings found for {}: give --host (and --protocol, --port, --security)",
                    email.domain
                )));
            }
            usable
        }
    };

    let password = match &args.password_command {
        // NOTE: an OAuth2 login uses the token the sign-in stores; there is no password.
        _ if oauth2.is_some() => Secret::new(String::new()),
        Some(cmd) => {
            let cmd = cmd.clone();
            let name = name.to_string();
            tokio::task::spawn_blocking(move || {
                credentials::run_password_command(
                    &name,
                    &cmd,
                    credentials::PASSWORD_COMMAND_TIMEOUT,
                )
            })
            .await
            .map_err(|e| Error::Usage(format!("password command failed: {e}")))??
        }
        None => read_password(&email.address)?,
    };

    // NOTE: a refresh token belongs to a user on one host: with OAuth2 only the first
    // candidate is signed in to and tested, so the user signs in once.
    let candidates = if oauth2.is_some() {
        candidates.into_iter().take(1).collect()
    } else {
        candidates
    };
    let total = candidates.len();
    for (i, c) in candidates.iter().enumerate() {
        let mut account = c.to_account(&email.address, args.display_name.as_deref());
        if let Some(u) = &args.username {
            account.username = (u != &email.address).then(|| u.clone());
        }
        account.password_command = args.password_command.clone();
        account.tls_ca_file = args.tls_ca_file.clone();
        account.tls_cert_sha256 = pin.clone();
        if account.protocol == Protocol::Pop3 {
            account.leave_on_server = args.leave_on_server;
            account.delete_after_days = args.delete_after_days;
        } else if args.leave_on_server.is_some() || args.delete_after_days.is_some() {
            eprintln!(
                "note: --leave-on-server and --delete-after-days apply to POP3 only; ignored for IMAP"
            );
        }
        if let Some(o) = &oauth2 {
            o.apply(&mut account, c)?;
            let method = if args.device {
                crate::oauth2::Method::Device
            } else {
                crate::oauth2::Method::Browser {
                    open_browser: !args.no_browser,
                    pasted: Some(crate::cli::stdin_lines()),
                }
            };
            eprintln!(
                "signing in {} with OAuth2 ...",
                sanitize::line(account.username())
            );
            signed_in.push(account.clone());
            crate::oauth2::sign_in(name, &account, method, &mut crate::cli::PrintPrompt).await?;
        }
        eprintln!(
            "testing {} ({})",
            sanitize::line(
                &super::Candidate {
                    username: account.username().to_string(),
                    ..c.clone()
                }
                .summary()
            ),
            sanitize::line(&c.source.to_string())
        );
        let mut show = |e: CheckEvent| match e {
            CheckEvent::Done(step, detail) => {
                eprintln!("  ok      {:<13} {}", step.label(), sanitize::line(&detail))
            }
            CheckEvent::Failed(step, reason) => {
                eprintln!("  FAILED  {:<13} {}", step.label(), sanitize::line(&reason))
            }
        };
        match check::test_login(&account, &password, c.provider.as_deref(), &mut show).await {
            Ok(_) => {
                let choice = if account.uses_oauth2() {
                    PasswordChoice::OAuth2
                } else if account.password_command.is_some() {
                    PasswordChoice::Command
                } else {
                    PasswordChoice::Keyring(&password)
                };
                let saved = save::save_account(&paths.config_file, name, &account, choice)
                    .map_err(|e| Error::Usage(e.to_string()))?;
                eprintln!(
                    "saved account {} to {}{}",
                    sanitize::line(name),
                    saved.config_file.display(),
                    if account.uses_oauth2() {
                        "; signed in with OAuth2, the refresh token is in the OS keyring"
                    } else if saved.in_keyring {
                        "; the password is in the OS keyring"
                    } else {
                        ""
                    }
                );
                eprintln!("fetch its mail with: mailbag sync {}", sanitize::line(name));
                return Ok(0);
            }
            Err(f) if f.kind == FailureKind::Unreachable && i + 1 < total => {
                eprintln!("  -> {}", sanitize::line(&f.hint));
                continue;
            }
            Err(f) => {
                if let FailureKind::Certificate { cert: Some(cert) } = &f.kind {
                    eprintln!("  certificate subject: {}", sanitize::line(&cert.subject));
                    eprintln!("  certificate issuer:  {}", sanitize::line(&cert.issuer));
                    eprintln!("  SHA-256 fingerprint: {}", cert.fingerprint());
                    return Err(Error::Usage(format!(
                        "{}: if this is your server's certificate, re-run with --tls-cert-sha256 {} to trust exactly it",
                        f,
                        cert.config_value()
                    )));
                }
                return Err(Error::Usage(format!("{f}: {}", f.hint)));
            }
        }
    }
    Err(Error::Usage("no candidate could be tested".into()))
}

/// `--auth oauth2` and its options.
struct OAuth2Settings {
    provider: Option<OAuth2Provider>,
    client_id: String,
    client_secret: Option<String>,
    auth_url: Option<String>,
    token_url: Option<String>,
    device_url: Option<String>,
    scopes: Option<Vec<String>>,
    ca_file: Option<PathBuf>,
}

/// The OAuth2 options, checked; `None` for a password login (then none may be given).
fn oauth2_settings(args: &SetupArgs) -> Result<Option<OAuth2Settings>> {
    let given = args.oauth2_provider.is_some()
        || args.oauth2_client_id.is_some()
        || args.oauth2_client_secret.is_some()
        || args.oauth2_auth_url.is_some()
        || args.oauth2_token_url.is_some()
        || args.oauth2_device_url.is_some()
        || args.oauth2_scopes.is_some()
        || args.oauth2_ca_file.is_some()
        || args.device;
    if args.auth.as_deref() != Some("oauth2") {
        if given {
            return Err(Error::Usage(
                "the --oauth2-* options and --device need --auth oauth2".into(),
            ));
        }
        return Ok(None);
    }
    if args.password_command.is_some() {
        return Err(Error::Usage(
            "--auth oauth2 signs in without a password: leave out --password-command".into(),
        ));
    }
    let Some(client_id) = args
        .oauth2_client_id
        .clone()
        .filter(|s| !s.trim().is_empty())
    else {
        return Err(Error::Usage(
            "--auth oauth2 needs --oauth2-client-id: mailbag cannot ship one; register an app \
             as docs/oauth2.md explains"
                .into(),
        ));
    };
    let provider = args.oauth2_provider.as_deref().map(|p| match p {
        "google" => OAuth2Provider::Google,
        "microsoft" => OAuth2Provider::Microsoft,
        _ => OAuth2Provider::Custom,
    });
    let https = |what: &str, v: &Option<String>| match v {
        Some(u) if !u.starts_with("https://") => {
            Err(Error::Usage(format!("{what} must be an https:// URL")))
        }
        _ => Ok(()),
    };
    https("--oauth2-auth-url", &args.oauth2_auth_url)?;
    https("--oauth2-token-url", &args.oauth2_token_url)?;
    https("--oauth2-device-url", &args.oauth2_device_url)?;
    // NOTE: checked before the sign-in, not only when the config is saved after it.
    if args
        .oauth2_scopes
        .as_deref()
        .is_some_and(|s| s.split_whitespace().next().is_none())
    {
        return Err(Error::Usage(
            "--oauth2-scopes needs at least one scope".into(),
        ));
    }
    if provider == Some(OAuth2Provider::Custom) {
        if args.oauth2_token_url.is_none() {
            return Err(Error::Usage(
                "--oauth2-provider custom needs --oauth2-token-url".into(),
            ));
        }
        let needed = if args.device {
            args.oauth2_device_url
                .is_none()
                .then_some("--oauth2-device-url")
        } else {
            args.oauth2_auth_url
                .is_none()
                .then_some("--oauth2-auth-url")
        };
        if let Some(option) = needed {
            return Err(Error::Usage(format!(
                "--oauth2-provider custom needs {option} for this sign-in"
            )));
        }
    }
    Ok(Some(OAuth2Settings {
        provider,
        client_id,
        client_secret: args.oauth2_client_secret.clone(),
        auth_url: args.oauth2_auth_url.clone(),
        token_url: args.oauth2_token_url.clone(),
        device_url: args.oauth2_device_url.clone(),
        scopes: args
            .oauth2_scopes
            .as_deref()
            .map(|s| s.split_whitespace().map(str::to_string).collect()),
        ca_file: args.oauth2_ca_file.clone(),
    }))
}

impl OAuth2Settings {
    /// Makes `account` (made from `c`) an OAuth2 account; the provider defaults to what the
    /// bundled list says for `c`'s server.
    fn apply(&self, account: &mut crate::config::Account, c: &Candidate) -> Result<()> {
        let provider = match self.provider {
            Some(p) => p,
            None => super::providers::bundled_oauth2_for_host(&c.host).ok_or_else(|| {
                Error::Usage(format!(
                    "{} is not a known OAuth2 provider's server: give --oauth2-provider \
                         (google, microsoft, or custom with its URLs)",
                    sanitize::line(&c.host)
                ))
            })?,
        };
        crate::oauth2::configure(
            account,
            provider,
            &self.client_id,
            self.client_secret.as_deref(),
        );
        account.oauth2_auth_url = self.auth_url.clone();
        account.oauth2_token_url = self.token_url.clone();
        account.oauth2_device_url = self.device_url.clone();
        account.oauth2_scopes = self.scopes.clone();
        account.oauth2_ca_file = self.ca_file.clone();
        Ok(())
    }
}

/// Reads the password: one line from stdin when it is not a terminal, else asked for on the
/// terminal with echo off.
fn read_password(address: &str) -> Result<Secret> {
    let stdin = std::io::stdin();
    let text = if stdin.is_terminal() {
        prompt_hidden(&format!("password for {}: ", sanitize::line(address)))?
    } else {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stdin.lock().take(64 * 1024), &mut line)
            .map_err(|e| Error::io("cannot read the password from stdin", e))?;
        let first = line.strip_suffix('\n').unwrap_or(&line);
        let first = first.strip_suffix('\r').unwrap_or(first).to_string();
        // NOTE: overwrite the buffer that held the line ending too.
        let mut bytes = line.into_bytes();
        bytes.iter_mut().for_each(|b| *b = 0);
        first
    };
    if text.is_empty() {
        return Err(Error::Usage(
            "no password given (on stdin, or use --password-command)".into(),
        ));
    }
    Ok(Secret::new(text))
}

/// Asks on the terminal with echo off (raw mode), reading until Enter.
fn prompt_hidden(prompt: &str) -> Result<String> {
    let io = |e| Error::io("cannot read the password from the terminal", e);
    let mut err = std::io::stderr();
    write!(err, "{prompt}").map_err(io)?;
    err.flush().map_err(io)?;
    crossterm::terminal::enable_raw_mode().map_err(io)?;
    let mut bytes = Vec::new();
    let mut result = Ok(());
    let mut stdin = std::io::stdin().lock();
    let mut byte = [0u8; 1];
    loop {
        match stdin.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => match byte[0] {
                b'\r' | b'\n' => break,
                3 => {
                    result = Err(Error::Usage("cancelled".into()));
                    break;
                }
                8 | 127 => {
                    // NOTE: remove a whole UTF-8 character, not one byte of it.
                    while let Some(b) = bytes.pop() {
                        if b & 0xC0 != 0x80 {
                            break;
                        }
                    }
                }
                b => bytes.push(b),
            },
            Err(e) => {
                result = Err(io(e));
                break;
            }
        }
    }
    let _ = crossterm::terminal::disable_raw_mode();
    let _ = writeln!(err);
    result?;
    String::from_utf8(bytes).map_err(|_| Error::Usage("the password is not valid UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_oauth2_scopes_are_refused_before_the_sign_in() {
        let mut args = SetupArgs {
            auth: Some("oauth2".into()),
            oauth2_client_id: Some("client".into()),
            oauth2_scopes: Some("  ".into()),
            ..SetupArgs::default()
        };
        match oauth2_settings(&args) {
            Err(Error::Usage(m)) => assert!(m.contains("--oauth2-scopes"), "{m}"),
            Err(e) => panic!("expected a usage error, got {e}"),
            Ok(_) => panic!("empty scopes were accepted"),
        }
        args.oauth2_scopes = Some("mail offline_access".into());
        let settings = oauth2_settings(&args).unwrap().unwrap();
        assert_eq!(
            settings.scopes,
            Some(vec!["mail".to_string(), "offline_access".to_string()])
        );
    }
}
