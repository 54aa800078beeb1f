//! The account setup wizard's screens: from a name, an address and a password to a tested,
//! saved account, in the TUI.
//!
//! The screens, each with Back (Esc) to the one before:
//!
//! 1. **Who you are**: name, email address, and the account's name in `config.toml`;
//! 2. **Password** (masked), or a password command;
//! 3. **Server settings**: what discovery found ([`crate::wizard::discover`]), each candidate
//!    with where it came from, IMAP and POP3 explained, IMAP recommended when both exist;
//!    every field can be edited by hand (**Edit server settings**);
//! 4. **POP3 options**: leave mail on the server (default on), delete it after N days;
//!    **Sign-in method**: for a provider that offers OAuth2 (Gmail, Outlook.com, Microsoft 365
//!    in the bundled list), "sign in in the browser (OAuth2)" or "app password"; by hand, the
//!    **Sign-in** choice of the edit form (password, or OAuth2 google / microsoft / custom);
//!    **OAuth2 client**: the client id (and secret; for custom the endpoints) the user
//!    registered (docs/oauth2.md); **Sign in**: [`crate::oauth2::sign_in`] on a task, showing
//!    the authorization URL (RFC 6749 §4.1 with PKCE, RFC 7636) or the device code (RFC 8628
//!    §3.3), its status lines, and a field for pasting the address the browser ended on; Tab
//!    switches browser ↔ device, Esc cancels (the loopback listener closes with the task);
//! 5. **Test**: each step of [`crate::wizard::check::test_login`] live (resolve, connect,
//!    TLS, capabilities, login, LIST per RFC 3501 §6.3.8 or STAT per RFC 1939 §5); on failure
//!    the one-line hint. An untrusted certificate shows its subject, issuer and SHA-256
//!    fingerprint and `t` trusts exactly it (`tls_cert_sha256`); a server that does not answer
//!    moves on to the next candidate;
//! 6. **Saving**: the password into the OS keyring; with no keyring reachable, one line says
//!    so and a password command is asked for instead (**Password storage**).
//!
//! [`Wizard`] is plain state: keys and [`WizardEvent`]s go in, [`Effect`]s (discover, test,
//! save, finish) come out, and [`Wizard::draw`] only reads state. [`run`] carries the effects
//! out on tokio tasks (blocking work — the keyring, a password command — on the blocking
//! pool) and feeds the results back as events, so the draw loop never waits on the network.
//! Every string from discovery or a server reaches the screen through [`super::text`].

use std::path::PathBuf;

use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::Frame;
use ratatui::layout::{Constraint, Direction, Layout, Position};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};
use tokio::sync::mpsc::{self, UnboundedSender};

use super::text;
use crate::config::{Account, OAuth2Provider, Protocol, Security};
use crate::credentials::{self, Secret};
use crate::wizard::check::{self, CheckEvent, CheckFailure, CheckOk, CheckStep, FailureKind};
use crate::wizard::discover::{self, Discovered, Discovery, Outcome};
use crate::wizard::save::{self, PasswordChoice, SaveError, Saved};
use crate::wizard::{Candidate, EmailAddress, Source, protocol_explained, security_name};

/// What the wizard starts from.
#[derive(Debug, Clone)]
pub struct WizardOptions {
    /// The config file the account is added to.
    pub config_file: PathBuf,
    /// Account names already in use (`[accounts.NAME]`).
    pub taken: Vec<String>,
    /// How discovery runs (tests point DNS at a local server).
    pub discovery: Discovery,
    /// A CA file every tested account trusts (`mailbag setup --tls-ca-file`).
    pub tls_ca_file: Option<PathBuf>,
    /// Pre-filled fields (`mailbag setup --email ... --name ...`).
    pub email: Option<String>,
    pub display_name: Option<String>,
    pub account_name: Option<String>,
    /// No account exists yet: the first screen says so.
    pub first_run: bool,
    /// A CA file the OAuth2 endpoints are trusted with (`mailbag setup --oauth2-ca-file`).
    pub oauth2_ca_file: Option<PathBuf>,
    /// Start the system browser on the OAuth2 sign-in URL (`--no-browser` turns it off).
    pub open_browser: bool,
}

impl WizardOptions {
    /// Options for adding an account to `config_file`, with default discovery.
    pub fn new(config_file: PathBuf, taken: Vec<String>) -> WizardOptions {
        WizardOptions {
            first_run: taken.is_empty(),
            config_file,
            taken,
            discovery: Discovery::default(),
            tls_ca_file: None,
            email: None,
            display_name: None,
            account_name: None,
            oauth2_ca_file: None,
            open_browser: true,
        }
    }
}

/// Where the password for the login test comes from.
#[derive(Debug)]
pub enum TestPassword {
    /// Typed in.
    Given(Secret),
    /// Printed by this command.
    Command(String),
    /// None: the account signs in with OAuth2 (already done).
    OAuth2,
}

/// What an OAuth2 sign-in running for the wizard reports, shown on the **Sign in** screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInProgress {
    /// The authorization URL to open.
    Url(String),
    /// The device flow's code and where to enter it.
    DeviceCode {
        user_code: String,
        verification_uri: String,
        complete: Option<String>,
    },
    /// A progress line.
    Status(String),
}

/// Work the wizard asks for; [`run`] carries it out and answers with a [`WizardEvent`].
#[derive(Debug)]
pub enum Effect {
    /// Run discovery for this address ([`WizardEvent::Discovered`]).
    Discover {
        email: EmailAddress,
        discovery: Box<Discovery>,
    },
    /// Run the login test ([`WizardEvent::Check`] per step, then [`WizardEvent::Tested`]).
    Test {
        run: u64,
        account: Box<Account>,
        password: TestPassword,
        provider: Option<String>,
    },
    /// Save the account ([`WizardEvent::Saved`]); `password: None` keeps `password_command`.
    Save {
        config_file: PathBuf,
        name: String,
        account: Box<Account>,
        password: Option<Secret>,
    },
    /// Run the OAuth2 sign-in for `account` ([`WizardEvent::SignInProgress`], then
    /// [`WizardEvent::SignedIn`]); the refresh token goes to the OS keyring.
    SignIn {
        run: u64,
        account: Box<Account>,
        /// The device flow (RFC 8628) rather than the browser.
        device: bool,
        open_browser: bool,
    },
    /// The user pasted the address the browser ended on, for sign-in `run`.
    Paste { run: u64, line: Secret },
    /// Stop sign-in `run` (its loopback listener closes).
    CancelSignIn { run: u64 },
    /// The account is saved: leave the wizard and start syncing it.
    Finished { name: String, notice: String },
    /// The user went back from the first screen.
    Cancelled,
    /// The user pressed Ctrl-C.
    Quit,
}

/// Results of the work, fed back into [`Wizard::handle_event`].
#[derive(Debug)]
pub enum WizardEvent {
    /// Discovery for `email` finished.
    Discovered { email: String, found: Discovered },
    /// A step of login test `run` finished or failed.
    Check { run: u64, event: CheckEvent },
    /// Login test `run` ended.
    Tested {
        run: u64,
        result: Result<CheckOk, CheckFailure>,
    },
    /// Saving ended.
    Saved { result: Result<Saved, SaveError> },
    /// Sign-in `run` has something to show.
    SignInProgress { run: u64, progress: SignInProgress },
    /// Sign-in `run` ended; the error is one line.
    SignedIn {
        run: u64,
        result: Result<(), String>,
    },
}

/// A one-line text field; the cursor is always at the end.
#[derive(Clone, Default)]
struct Input {
    text: String,
}

// NOTE: a field may hold a password or an OAuth2 client secret: Debug shows only its length.
impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Input({} chars)", self.text.chars().count())
    }
}

impl Input {
    fn from(s: &str) -> Input {
        Input {
            text: s.to_string(),
        }
    }

    /// Edit with `key`; returns whether it was an editing key.
    fn edit(&mut self, key: &KeyEvent) -> bool {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('u') if ctrl => self.wipe(),
            KeyCode::Char(c)
                if !ctrl && !key.modifiers.contains(KeyModifiers::ALT) && !c.is_control() =>
            {
                self.text.push(c)
            }
            KeyCode::Backspace => {
                self.text.pop();
            }
            _ => return false,
        }
        true
    }

    /// Empties the field, overwriting what it held (it may be a password).
    fn wipe(&mut self) {
        let mut bytes = std::mem::take(&mut self.text).into_bytes();
        bytes.iter_mut().for_each(|b| *b = 0);
        std::hint::black_box(&mut bytes);
    }

    fn trimmed(&self) -> &str {
        self.text.trim()
    }
}

/// The screens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Screen {
    Identity,
    Password,
    Settings,
    Manual,
    Pop3,
    Test,
    NoKeyring,
    AuthChoice,
    OAuth2Client,
    SignIn,
}

/// The OAuth2 client the user registered, and for `custom` the endpoints.
#[derive(Debug, Clone)]
struct OAuth2Form {
    provider: OAuth2Provider,
    client_id: Input,
    client_secret: Input,
    auth_url: Input,
    token_url: Input,
    device_url: Input,
    scopes: Input,
}

impl OAuth2Form {
    fn new(provider: OAuth2Provider) -> OAuth2Form {
        OAuth2Form {
            provider,
            client_id: Input::default(),
            client_secret: Input::default(),
            auth_url: Input::default(),
            token_url: Input::default(),
            device_url: Input::default(),
            scopes: Input::default(),
        }
    }

    fn fields(&self) -> usize {
        if self.provider == OAuth2Provider::Custom {
            6
        } else {
            2
        }
    }

    fn field_mut(&mut self, i: usize) -> &mut Input {
        match i {
            0 => &mut self.client_id,
            1 => &mut self.client_secret,
            2 => &mut self.auth_url,
            3 => &mut self.token_url,
            4 => &mut self.device_url,
            _ => &mut self.scopes,
        }
    }

    /// Makes `a` an OAuth2 account with these settings.
    fn apply(&self, a: &mut Account, ca_file: Option<&PathBuf>) {
        let secret = Some(self.client_secret.trimmed()).filter(|s| !s.is_empty());
        crate::oauth2::configure(a, self.provider, self.client_id.trimmed(), secret);
        if self.provider == OAuth2Provider::Custom {
            let url = |i: &Input| Some(i.trimmed().to_string()).filter(|s| !s.is_empty());
            a.oauth2_auth_url = url(&self.auth_url);
            a.oauth2_token_url = url(&self.token_url);
            a.oauth2_device_url = url(&self.device_url);
            let scopes: Vec<String> = self
                .scopes
                .trimmed()
                .split_whitespace()
                .map(str::to_string)
                .collect();
            a.oauth2_scopes = (!scopes.is_empty()).then_some(scopes);
        }
        a.oauth2_ca_file = ca_file.cloned();
    }

    /// What is wrong with the form, with the field to focus.
    fn problem(&self) -> Option<(usize, &'static str)> {
        if self.client_id.trimmed().is_empty() {
            return Some((
                0,
                "give the client id of the app you registered (see docs/oauth2.md)",
            ));
        }
        if self.provider != OAuth2Provider::Custom {
            return None;
        }
        let https = |i: &Input| i.trimmed().is_empty() || i.trimmed().starts_with("https://");
        if !https(&self.auth_url) {
            return Some((2, "the authorization URL must start with https://"));
        }
        if self.token_url.trimmed().is_empty() || !https(&self.token_url) {
            return Some((3, "give the token URL (https://...)"));
        }
        if !https(&self.device_url) {
            return Some((4, "the device URL must start with https://"));
        }
        if self.auth_url.trimmed().is_empty() && self.device_url.trimmed().is_empty() {
            return Some((2, "give the authorization URL, the device URL, or both"));
        }
        None
    }
}

/// The OAuth2 sign-in on screen.
#[derive(Debug, Clone)]
struct SigningIn {
    run: u64,
    device: bool,
    url: Option<String>,
    device_code: Option<(String, String)>,
    status: Vec<String>,
    failed: Option<String>,
    paste: Input,
}

/// The provider's name for the OAuth2 screens.
fn provider_name(p: OAuth2Provider) -> &'static str {
    match p {
        OAuth2Provider::Google => "Google",
        OAuth2Provider::Microsoft => "Microsoft",
        OAuth2Provider::Custom => "your provider",
    }
}

/// The manual form's sign-in choices, in the order Space walks them.
const SIGN_IN_CHOICES: [Option<OAuth2Provider>; 4] = [
    None,
    Some(OAuth2Provider::Google),
    Some(OAuth2Provider::Microsoft),
    Some(OAuth2Provider::Custom),
];

fn sign_in_name(p: Option<OAuth2Provider>) -> &'static str {
    match p {
        None => "password",
        Some(OAuth2Provider::Google) => "OAuth2 google",
        Some(OAuth2Provider::Microsoft) => "OAuth2 microsoft",
        Some(OAuth2Provider::Custom) => "OAuth2 custom",
    }
}

/// Discovery for the address on the first screen.
#[derive(Debug, Clone)]
enum Finding {
    NotStarted,
    Running(String),
    Done(String, Discovered),
}

/// How one step of the test went.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StepState {
    Waiting,
    Done(String),
    Failed(String),
}

/// The login test on screen.
#[derive(Debug, Clone)]
struct Testing {
    run: u64,
    candidate: Candidate,
    account: Account,
    steps: Vec<(CheckStep, StepState)>,
    result: Option<Result<CheckOk, CheckFailure>>,
    /// Earlier candidates that did not answer, one line each.
    passed_over: Vec<String>,
    saving: bool,
    save_error: Option<String>,
}

/// The hand-edited server settings.
#[derive(Debug, Clone)]
struct ManualForm {
    protocol: Protocol,
    host: Input,
    port: Input,
    security: Security,
    username: Input,
    /// `None`: a password; else OAuth2 with this preset.
    sign_in: Option<OAuth2Provider>,
}

impl ManualForm {
    const FIELDS: usize = 6;

    fn from_candidate(c: &Candidate) -> ManualForm {
        ManualForm {
            protocol: c.protocol,
            host: Input::from(&c.host),
            port: Input::from(&c.port.to_string()),
            security: c.security,
            username: Input::from(&c.username),
            sign_in: None,
        }
    }

    fn default_port(&self) -> u16 {
        crate::wizard::blank_account("", self.protocol, "", self.security).port()
    }

    /// Switch protocol or security; a port still at the old default follows the new one.
    fn toggle(&mut self, field: usize, forward: bool) {
        let old_default = self.default_port().to_string();
        match field {
            0 => {
                self.protocol = match self.protocol {
                    Protocol::Imap => Protocol::Pop3,
                    Protocol::Pop3 => Protocol::Imap,
                }
            }
            5 => {
                let i = SIGN_IN_CHOICES
                    .iter()
                    .position(|s| *s == self.sign_in)
                    .unwrap_or(0);
                let n = SIGN_IN_CHOICES.len();
                let next = if forward { i + 1 } else { i + n - 1 };
                self.sign_in = SIGN_IN_CHOICES.get(next % n).copied().flatten();
                return;
            }
            3 => {
                let order = [Security::Tls, Security::Starttls, Security::None];
                let i = order.iter().position(|s| *s == self.security).unwrap_or(0);
                let next = if forward { i + 1 } else { i + order.len() - 1 };
                self.security = order.get(next % order.len()).copied().unwrap_or_default();
            }
            _ => return,
        }
        if self.port.trimmed().is_empty() || self.port.trimmed() == old_default {
            self.port = Input::from(&self.default_port().to_string());
        }
    }
}

/// The whole wizard state.
pub struct Wizard {
    options: WizardOptions,
    screen: Screen,
    focus: usize,
    display_name: Input,
    email: Input,
    account_name: Input,
    /// The account name was typed, not derived from the address.
    account_name_edited: bool,
    password: Input,
    password_command: Input,
    finding: Finding,
    /// Selected row on the settings screen (the last row is "by hand").
    selected: usize,
    manual: ManualForm,
    leave_on_server: bool,
    delete_after_days: Input,
    /// The settings being used and the candidates to try when they do not answer.
    chosen: Option<Candidate>,
    next_candidates: Vec<Candidate>,
    /// `tls_cert_sha256` the user chose to trust, for the host and port it was shown for.
    pinned: Option<(String, u16, String)>,
    /// The settings last edited by hand, listed first on the settings screen.
    edited: Option<Candidate>,
    keyring_command: Input,
    testing: Option<Testing>,
    next_run: u64,
    /// The OAuth2 preset offered for the chosen settings (**Sign-in method**).
    offered: Option<OAuth2Provider>,
    /// The selected row there: 0 OAuth2, 1 app password.
    auth_row: usize,
    /// Sign in with OAuth2 with these settings (else a password).
    oauth2: Option<OAuth2Form>,
    /// Where Esc on **OAuth2 client** goes.
    oauth2_back: Screen,
    signing: Option<SigningIn>,
    /// A one-line problem with what was typed.
    error: Option<String>,
}

impl Drop for Wizard {
    fn drop(&mut self) {
        self.password.wipe();
    }
}

/// Text wrapped to `width`, the first line after `lead`, the rest indented as far (sanitised:
/// it may quote a server).
fn prose(lines: &mut Vec<Line<'static>>, lead: &str, s: &str, style: Style, width: usize) {
    let indent = " ".repeat(text::width(lead));
    let wrapped = text::wrap(
        &crate::sanitize::line(s),
        width.saturating_sub(indent.len() + 1),
    );
    for (i, l) in wrapped.into_iter().enumerate() {
        let first = if i == 0 { lead } else { indent.as_str() };
        lines.push(Line::styled(format!("{first}{l}"), style));
    }
}

/// Draws a labelled text field (lines, label, value, field index) and notes the cursor.
type FieldFn<'a> = dyn FnMut(&mut Vec<Line<'static>>, &str, &str, usize) + 'a;

/// The OAuth2 preset of the provider `c`'s server belongs to, if it offers OAuth2.
fn oauth2_preset(c: &Candidate) -> Option<OAuth2Provider> {
    crate::wizard::providers::bundled_oauth2_for_host(&c.host)
}

fn is_ctrl_c(key: &KeyEvent) -> bool {
    key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL)
}

/// An account name from the address's domain (`example` for `me@example.com`), made unique.
fn derive_name(email: &str, taken: &[String]) -> String {
    let domain = email.rsplit_once('@').map_or("", |(_, d)| d);
    let first = domain.split('.').next().unwrap_or("");
    let mut base: String = first
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect::<String>()
        .to_ascii_lowercase();
    if base.is_empty() {
        base = "mail".into();
    }
    if !taken.contains(&base) {
        return base;
    }
    (2..)
        .map(|n| format!("{base}{n}"))
        .find(|n| !taken.contains(n))
        .unwrap_or(base)
}

impl Wizard {
    /// A wizard on its first screen.
    pub fn new(options: WizardOptions) -> Wizard {
        let email = Input::from(options.email.as_deref().unwrap_or(""));
        let (account_name, edited) = match &options.account_name {
            Some(n) => (Input::from(n), true),
            None => (
                Input::from(&if email.text.is_empty() {
                    String::new()
                } else {
                    derive_name(&email.text, &options.taken)
                }),
                false,
            ),
        };
        Wizard {
            display_name: Input::from(options.display_name.as_deref().unwrap_or("")),
            email,
            account_name,
            account_name_edited: edited,
            options,
            screen: Screen::Identity,
            focus: 0,
            password: Input::default(),
            password_command: Input::default(),
            finding: Finding::NotStarted,
            selected: 0,
            manual: ManualForm {
                protocol: Protocol::Imap,
                host: Input::default(),
                port: Input::from("993"),
                security: Security::Tls,
                username: Input::default(),
                sign_in: None,
            },
            leave_on_server: true,
            delete_after_days: Input::default(),
            chosen: None,
            next_candidates: Vec::new(),
            edited: None,
            pinned: None,
            keyring_command: Input::default(),
            testing: None,
            next_run: 1,
            offered: None,
            auth_row: 0,
            oauth2: None,
            oauth2_back: Screen::Settings,
            signing: None,
            error: None,
        }
    }

    /// How many fields the current screen has for Tab and the arrows to walk (0: none).
    fn fields(&self) -> usize {
        match self.screen {
            Screen::Identity => 3,
            Screen::Password => 2,
            Screen::Manual => ManualForm::FIELDS,
            Screen::Pop3 => 2,
            Screen::NoKeyring => 1,
            Screen::OAuth2Client => self.oauth2.as_ref().map_or(0, OAuth2Form::fields),
            Screen::Settings | Screen::Test | Screen::AuthChoice | Screen::SignIn => 0,
        }
    }

    /// Whether the password comes from `password_command` (typed on screen 2, or given when
    /// no keyring is reachable) rather than the keyring.
    fn uses_command(&self) -> bool {
        !self.password_command.trimmed().is_empty()
    }

    fn go(&mut self, screen: Screen) {
        self.screen = screen;
        self.focus = 0;
        self.error = None;
    }

    /// React to a key; returns the work to do.
    pub fn handle_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        if key.kind == KeyEventKind::Release {
            return Vec::new();
        }
        if is_ctrl_c(&key) {
            return vec![Effect::Quit];
        }
        let fields = self.fields();
        match key.code {
            KeyCode::Esc => return self.back(),
            KeyCode::Tab | KeyCode::Down if fields > 0 => {
                self.focus = (self.focus + 1) % fields;
                return Vec::new();
            }
            KeyCode::BackTab | KeyCode::Up if fields > 0 => {
                self.focus = (self.focus + fields - 1) % fields;
                return Vec::new();
            }
            _ => {}
        }
        match self.screen {
            Screen::Identity => self.identity_key(&key),
            Screen::Password => self.password_key(&key),
            Screen::Settings => self.settings_key(&key),
            Screen::Manual => self.manual_key(&key),
            Screen::Pop3 => self.pop3_key(&key),
            Screen::Test => self.test_key(&key),
            Screen::NoKeyring => self.no_keyring_key(&key),
            Screen::AuthChoice => self.auth_choice_key(&key),
            Screen::OAuth2Client => self.oauth2_client_key(&key),
            Screen::SignIn => self.sign_in_key(&key),
        }
    }

    fn back(&mut self) -> Vec<Effect> {
        let to = match self.screen {
            Screen::Identity => return vec![Effect::Cancelled],
            Screen::Password => Screen::Identity,
            Screen::Settings => Screen::Password,
            Screen::Manual | Screen::AuthChoice => Screen::Settings,
            Screen::Pop3 if self.oauth2.is_some() => Screen::OAuth2Client,
            Screen::Pop3 => Screen::Settings,
            // NOTE: the account may already be in config.toml: wait for the save to answer.
            Screen::Test if self.testing.as_ref().is_some_and(|t| t.saving) => {
                return Vec::new();
            }
            Screen::Test => {
                // NOTE: results of a test still running are ignored from now on.
                self.testing = None;
                if self.chosen.as_ref().map(|c| c.protocol) == Some(Protocol::Pop3) {
                    Screen::Pop3
                } else if self.oauth2.is_some() {
                    Screen::OAuth2Client
                } else {
                    Screen::Settings
                }
            }
            Screen::OAuth2Client => self.oauth2_back,
            Screen::SignIn => {
                let run = self.signing.take().map(|s| s.run);
                self.go(Screen::OAuth2Client);
                return run
                    .map(|run| vec![Effect::CancelSignIn { run }])
                    .unwrap_or_default();
            }
            Screen::NoKeyring => {
                if let Some(t) = self.testing.as_mut() {
                    t.saving = false;
                }
                Screen::Test
            }
        };
        self.go(to);
        Vec::new()
    }

    fn identity_key(&mut self, key: &KeyEvent) -> Vec<Effect> {
        if key.code == KeyCode::Enter {
            return self.submit_identity();
        }
        let field = match self.focus {
            0 => &mut self.display_name,
            1 => &mut self.email,
            _ => &mut self.account_name,
        };
        if field.edit(key) {
            self.error = None;
            if self.focus == 2 {
                self.account_name_edited = true;
            } else if self.focus == 1 && !self.account_name_edited {
                self.account_name =
                    Input::from(&derive_name(self.email.trimmed(), &self.options.taken));
            }
        }
        Vec::new()
    }

    fn submit_identity(&mut self) -> Vec<Effect> {
        let email = match EmailAddress::parse(&self.email.text) {
            Ok(e) => e,
            Err(e) => {
                self.focus = 1;
                self.error = Some(e);
                return Vec::new();
            }
        };
        let name = self.account_name.trimmed().to_string();
        let problem = if name.is_empty() {
            Some("give the account a name (it is how mailbag and config.toml call it)".into())
        } else if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            Some("the account name may use only letters, digits, - and _".into())
        } else if self.options.taken.contains(&name) {
            Some(format!(
                "an account named {name} already exists: pick another name"
            ))
        } else {
            None
        };
        if let Some(p) = problem {
            self.focus = 2;
            self.error = Some(p);
            return Vec::new();
        }
        self.go(Screen::Password);
        let same = match &self.finding {
            Finding::Running(a) | Finding::Done(a, _) => *a == email.address,
            Finding::NotStarted => false,
        };
        if same {
            return Vec::new();
        }
        self.finding = Finding::Running(email.address.clone());
        self.selected = 0;
        self.pinned = None;
        self.edited = None;
        vec![Effect::Discover {
            email,
            discovery: Box::new(self.options.discovery.clone()),
        }]
    }

    fn password_key(&mut self, key: &KeyEvent) -> Vec<Effect> {
        if key.code == KeyCode::Enter {
            // NOTE: both may stay empty for an OAuth2 sign-in; a password login asks again.
            self.go(Screen::Settings);
            return Vec::new();
        }
        let field = if self.focus == 0 {
            &mut self.password
        } else {
            &mut self.password_command
        };
        if field.edit(key) {
            self.error = None;
        }
        Vec::new()
    }

    /// The candidates on the settings screen: the one edited by hand (if any), then what
    /// discovery found (nothing while it runs).
    fn candidates(&self) -> Vec<Candidate> {
        let found = match &self.finding {
            Finding::Done(_, found) => found.candidates.as_slice(),
            _ => &[],
        };
        self.edited.iter().chain(found).cloned().collect()
    }

    fn settings_key(&mut self, key: &KeyEvent) -> Vec<Effect> {
        let n = self.candidates().len();
        match key.code {
            KeyCode::Down | KeyCode::Char('j') | KeyCode::Tab => {
                self.selected = (self.selected + 1).min(n);
            }
            KeyCode::Up | KeyCode::Char('k') | KeyCode::BackTab => {
                self.selected = self.selected.saturating_sub(1);
            }
            KeyCode::Char('e') | KeyCode::Char('m') => self.open_manual(),
            KeyCode::Enter => {
                let all = self.candidates();
                let Some(c) = all.get(self.selected).cloned() else {
                    self.open_manual();
                    return Vec::new();
                };
                let preset = oauth2_preset(&c);
                if c.oauth2 && preset.is_none() {
                    self.error = Some(format!(
                        "{} accepts only OAuth2: press e and choose the Sign-in OAuth2 custom",
                        c.provider.as_deref().unwrap_or(&c.host)
                    ));
                    return Vec::new();
                }
                // NOTE: when these settings do not answer, the next candidates of the same
                // protocol are tried in order (never an unencrypted one unless chosen).
                let rest: Vec<Candidate> = all
                    .iter()
                    .skip(self.selected + 1)
                    .filter(|o| o.protocol == c.protocol && !o.oauth2)
                    .filter(|o| o.security != Security::None || c.security == Security::None)
                    .cloned()
                    .collect();
                return self.choose(c, rest, preset);
            }
            _ => {}
        }
        self.error = None;
        Vec::new()
    }

    /// The hand-edit form, filled from the selected candidate (or sensible defaults).
    fn open_manual(&mut self) {
        let from = self
            .candidates()
            .get(self.selected)
            .or(self.chosen.as_ref())
            .cloned();
        self.open_manual_from(from);
    }

    /// The hand-edit form, filled from `from` (or sensible defaults).
    fn open_manual_from(&mut self, from: Option<Candidate>) {
        self.manual = match from {
            Some(c) => ManualForm {
                sign_in: self.oauth2.as_ref().map(|f| f.provider),
                ..ManualForm::from_candidate(&c)
            },
            None => {
                let email = self.email.trimmed().to_string();
                let domain = email.rsplit_once('@').map_or("", |(_, d)| d).to_string();
                ManualForm {
                    protocol: Protocol::Imap,
                    host: Input::from(&format!("mail.{domain}")),
                    port: Input::from("993"),
                    security: Security::Tls,
                    username: Input::from(&email),
                    sign_in: None,
                }
            }
        };
        self.go(Screen::Manual);
    }

    fn manual_key(&mut self, key: &KeyEvent) -> Vec<Effect> {
        match (self.focus, key.code) {
            (_, KeyCode::Enter) => return self.submit_manual(),
            (0 | 3 | 5, KeyCode::Char(' ') | KeyCode::Right) => {
                self.manual.toggle(self.focus, true)
            }
            (0 | 3 | 5, KeyCode::Left) => self.manual.toggle(self.focus, false),
            (1, _) => {
                self.manual.host.edit(key);
            }
            (2, KeyCode::Char(c))
                if !c.is_ascii_digit() && !key.modifiers.contains(KeyModifiers::CONTROL) => {}
            (2, _) => {
                self.manual.port.edit(key);
            }
            (4, _) => {
                self.manual.username.edit(key);
            }
            _ => {}
        }
        self.error = None;
        Vec::new()
    }

    fn submit_manual(&mut self) -> Vec<Effect> {
        let host = self.manual.host.trimmed().to_string();
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            self.focus = 1;
            self.error = Some("give the server's host name, e.g. mail.example.com".into());
            return Vec::new();
        }
        let Some(port) = self
            .manual
            .port
            .trimmed()
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
        else {
            self.focus = 2;
            self.error = Some("the port is a number from 1 to 65535".into());
            return Vec::new();
        };
        let username = match self.manual.username.trimmed() {
            "" => self.email.trimmed().to_string(),
            u => u.to_string(),
        };
        let provider = self.chosen.as_ref().and_then(|c| c.provider.clone());
        let c = Candidate {
            source: Source::Manual,
            provider,
            protocol: self.manual.protocol,
            host,
            port,
            security: self.manual.security,
            username,
            oauth2: false,
            notes: Vec::new(),
        };
        self.edited = Some(c.clone());
        self.selected = 0;
        match self.manual.sign_in {
            Some(p) => {
                self.chosen = Some(c);
                self.next_candidates = Vec::new();
                self.open_oauth2(p, Screen::Manual);
                Vec::new()
            }
            None => self.choose(c, Vec::new(), None),
        }
    }

    /// Use `c` (then `rest` if it does not answer). With an OAuth2 `preset`, the sign-in
    /// method comes first (only OAuth2 if the provider takes nothing else); then the POP3
    /// options, then the test.
    fn choose(
        &mut self,
        c: Candidate,
        rest: Vec<Candidate>,
        preset: Option<OAuth2Provider>,
    ) -> Vec<Effect> {
        let only_oauth2 = c.oauth2;
        self.chosen = Some(c);
        self.next_candidates = rest;
        self.offered = preset;
        match preset {
            Some(p) if only_oauth2 => {
                // NOTE: another candidate would need a sign-in of its own (the refresh token
                // belongs to a user on a host).
                self.next_candidates.clear();
                self.open_oauth2(p, Screen::Settings);
                Vec::new()
            }
            Some(_) => {
                self.auth_row = 0;
                self.go(Screen::AuthChoice);
                Vec::new()
            }
            None => self.with_password(),
        }
    }

    /// Go on with a password login: it must have been given.
    fn with_password(&mut self) -> Vec<Effect> {
        self.oauth2 = None;
        if self.password.text.is_empty() && self.password_command.trimmed().is_empty() {
            self.go(Screen::Password);
            self.error =
                Some("these settings need the password (or a command that prints it)".into());
            return Vec::new();
        }
        self.pop3_or_test()
    }

    /// The POP3 options for a POP3 account, else the test.
    fn pop3_or_test(&mut self) -> Vec<Effect> {
        if self.chosen.as_ref().map(|c| c.protocol) == Some(Protocol::Pop3) {
            self.go(Screen::Pop3);
            Vec::new()
        } else {
            self.start_test(Vec::new())
        }
    }

    /// The OAuth2 client form for `provider` (what was typed for it earlier is kept).
    fn open_oauth2(&mut self, provider: OAuth2Provider, back: Screen) {
        if self.oauth2.as_ref().map(|f| f.provider) != Some(provider) {
            self.oauth2 = Some(OAuth2Form::new(provider));
        }
        self.oauth2_back = back;
        self.go(Screen::OAuth2Client);
    }

    fn auth_choice_key(&mut self, key: &KeyEvent) -> Vec<Effect> {
        match key.code {
            KeyCode::Tab | KeyCode::BackTab => self.auth_row = 1 - self.auth_row.min(1),
            KeyCode::Down | KeyCode::Char('j') => self.auth_row = 1,
            KeyCode::Up | KeyCode::Char('k') => self.auth_row = 0,
            KeyCode::Enter => match (self.auth_row, self.offered) {
                (0, Some(p)) => {
                    self.next_candidates.clear();
                    self.open_oauth2(p, Screen::AuthChoice);
                }
                _ => return self.with_password(),
            },
            _ => {}
        }
        Vec::new()
    }

    fn oauth2_client_key(&mut self, key: &KeyEvent) -> Vec<Effect> {
        if key.code == KeyCode::Enter {
            return self.submit_oauth2();
        }
        let focus = self.focus;
        if let Some(form) = self.oauth2.as_mut()
            && form.field_mut(focus).edit(key)
        {
            self.error = None;
        }
        Vec::new()
    }

    fn submit_oauth2(&mut self) -> Vec<Effect> {
        let Some(form) = &self.oauth2 else {
            self.go(Screen::Settings);
            return Vec::new();
        };
        if let Some((field, problem)) = form.problem() {
            self.focus = field;
            self.error = Some(problem.into());
            return Vec::new();
        }
        // NOTE: without an authorization URL only the device flow is possible.
        let device = form.provider == OAuth2Provider::Custom && form.auth_url.trimmed().is_empty();
        self.start_sign_in(device)
    }

    /// Start (or restart) the sign-in on the **Sign in** screen.
    fn start_sign_in(&mut self, device: bool) -> Vec<Effect> {
        let Some(c) = self.chosen.clone() else {
            self.go(Screen::Settings);
            return Vec::new();
        };
        let mut effects: Vec<Effect> = self
            .signing
            .take()
            .map(|s| Effect::CancelSignIn { run: s.run })
            .into_iter()
            .collect();
        let account = self.account(&c);
        let run = self.next_run;
        self.next_run += 1;
        self.signing = Some(SigningIn {
            run,
            device,
            url: None,
            device_code: None,
            status: Vec::new(),
            failed: None,
            paste: Input::default(),
        });
        self.go(Screen::SignIn);
        effects.push(Effect::SignIn {
            run,
            account: Box::new(account),
            device,
            open_browser: self.options.open_browser,
        });
        effects
    }

    fn sign_in_key(&mut self, key: &KeyEvent) -> Vec<Effect> {
        let Some(s) = self.signing.as_mut() else {
            return Vec::new();
        };
        let (run, device, failed) = (s.run, s.device, s.failed.is_some());
        match key.code {
            KeyCode::Tab | KeyCode::BackTab => {
                let has = |f: fn(&OAuth2Form) -> &Input| {
                    self.oauth2.as_ref().is_some_and(|o| {
                        o.provider != OAuth2Provider::Custom || !f(o).trimmed().is_empty()
                    })
                };
                let other = !device;
                let possible = if other {
                    has(|o| &o.device_url)
                } else {
                    has(|o| &o.auth_url)
                };
                if !possible {
                    self.error = Some(if other {
                        "no device URL was given: only the browser sign-in is possible".into()
                    } else {
                        "no authorization URL was given: only the device sign-in is possible".into()
                    });
                    return Vec::new();
                }
                self.start_sign_in(other)
            }
            KeyCode::Enter if failed => self.start_sign_in(device),
            KeyCode::Enter => {
                let line = std::mem::take(&mut s.paste.text);
                if line.trim().is_empty() || device {
                    return Vec::new();
                }
                s.status.push("checking the pasted address…".into());
                vec![Effect::Paste {
                    run,
                    line: Secret::new(line),
                }]
            }
            _ => {
                if !device && s.paste.edit(key) {
                    self.error = None;
                }
                Vec::new()
            }
        }
    }

    fn pop3_key(&mut self, key: &KeyEvent) -> Vec<Effect> {
        match (self.focus, key.code) {
            (_, KeyCode::Enter) => {
                let days = self.delete_after_days.trimmed();
                if !days.is_empty() {
                    if days.parse::<u32>().ok().filter(|d| *d > 0).is_none() {
                        self.focus = 1;
                        self.error = Some("the days are a whole number, or empty for never".into());
                        return Vec::new();
                    }
                    if !self.leave_on_server {
                        self.focus = 1;
                        self.error = Some(
                            "mail not left on the server needs no deleting: leave the days empty"
                                .into(),
                        );
                        return Vec::new();
                    }
                }
                return self.start_test(Vec::new());
            }
            (0, KeyCode::Char(' ') | KeyCode::Left | KeyCode::Right) => {
                self.leave_on_server = !self.leave_on_server;
            }
            (1, KeyCode::Char(c))
                if !c.is_ascii_digit() && !key.modifiers.contains(KeyModifiers::CONTROL) => {}
            (1, _) => {
                self.delete_after_days.edit(key);
            }
            _ => {}
        }
        self.error = None;
        Vec::new()
    }

    /// The account the chosen settings make, with everything chosen on the screens.
    fn account(&self, c: &Candidate) -> Account {
        let display = Some(self.display_name.trimmed()).filter(|s| !s.is_empty());
        let mut a = c.to_account(self.email.trimmed(), display);
        a.tls_ca_file = self.options.tls_ca_file.clone();
        a.tls_cert_sha256 = self
            .pinned
            .as_ref()
            .filter(|(h, p, _)| *h == c.host && *p == c.port)
            .map(|(_, _, fp)| fp.clone());
        if c.protocol == Protocol::Pop3 {
            a.leave_on_server = Some(self.leave_on_server);
            a.delete_after_days = self
                .delete_after_days
                .trimmed()
                .parse::<u32>()
                .ok()
                .filter(|_| self.leave_on_server);
        }
        if let Some(form) = &self.oauth2 {
            form.apply(&mut a, self.options.oauth2_ca_file.as_ref());
        } else if self.uses_command() {
            a.password_command = Some(self.password_command.trimmed().to_string());
        }
        a
    }

    fn start_test(&mut self, passed_over: Vec<String>) -> Vec<Effect> {
        let Some(c) = self.chosen.clone() else {
            self.go(Screen::Settings);
            return Vec::new();
        };
        let account = self.account(&c);
        let run = self.next_run;
        self.next_run += 1;
        self.testing = Some(Testing {
            run,
            steps: CheckStep::plan(&account)
                .into_iter()
                .map(|s| (s, StepState::Waiting))
                .collect(),
            candidate: c.clone(),
            account: account.clone(),
            result: None,
            passed_over,
            saving: false,
            save_error: None,
        });
        self.go(Screen::Test);
        let password = match &account.password_command {
            _ if account.uses_oauth2() => TestPassword::OAuth2,
            Some(cmd) => TestPassword::Command(cmd.clone()),
            None => TestPassword::Given(Secret::new(self.password.text.clone())),
        };
        vec![Effect::Test {
            run,
            account: Box::new(account),
            password,
            provider: c.provider.clone(),
        }]
    }

    fn test_key(&mut self, key: &KeyEvent) -> Vec<Effect> {
        let Some(t) = self.testing.as_ref().filter(|t| !t.saving) else {
            return Vec::new();
        };
        let passed_over = t.passed_over.clone();
        let worked = matches!(t.result, Some(Ok(_)));
        let finished = t.result.is_some();
        let failure = match &t.result {
            Some(Err(f)) => Some(f.kind.clone()),
            _ => None,
        };
        let tested = t.candidate.clone();
        let account = t.account.clone();
        match (key.code, failure) {
            (KeyCode::Enter, None) if worked => {
                let password = (!self.uses_command() && self.oauth2.is_none())
                    .then(|| Secret::new(self.password.text.clone()));
                if let Some(t) = self.testing.as_mut() {
                    t.saving = true;
                    t.save_error = None;
                }
                vec![Effect::Save {
                    config_file: self.options.config_file.clone(),
                    name: self.account_name.trimmed().to_string(),
                    account: Box::new(account),
                    password,
                }]
            }
            (KeyCode::Char('t'), Some(FailureKind::Certificate { cert: Some(cert) })) => {
                self.pinned = Some((tested.host, tested.port, cert.config_value()));
                self.start_test(passed_over)
            }
            (KeyCode::Enter | KeyCode::Char('r'), Some(_)) => self.start_test(passed_over),
            (KeyCode::Char('e'), _) if finished => {
                // NOTE: the settings tested, which after a server that did not answer are not
                // the ones selected on the settings screen.
                self.open_manual_from(Some(tested));
                Vec::new()
            }
            (KeyCode::Char('p'), Some(FailureKind::WrongPassword)) if self.oauth2.is_none() => {
                self.go(Screen::Password);
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    fn no_keyring_key(&mut self, key: &KeyEvent) -> Vec<Effect> {
        if key.code == KeyCode::Enter {
            let cmd = self.keyring_command.trimmed().to_string();
            if cmd.is_empty() {
                self.error = Some("give a command that prints the password".into());
                return Vec::new();
            }
            self.password_command = Input::from(&cmd);
            let passed_over = self
                .testing
                .as_ref()
                .map(|t| t.passed_over.clone())
                .unwrap_or_default();
            return self.start_test(passed_over);
        }
        if self.keyring_command.edit(key) {
            self.error = None;
        }
        Vec::new()
    }

    /// React to the result of work asked for earlier; stale results are dropped.
    pub fn handle_event(&mut self, event: WizardEvent) -> Vec<Effect> {
        match event {
            WizardEvent::Discovered { email, found } => {
                if matches!(&self.finding, Finding::Running(a) if *a == email) {
                    // NOTE: settings the user edited by hand stay selected.
                    if self.edited.is_none() {
                        self.selected = found
                            .best(Protocol::Imap)
                            .or_else(|| found.candidates.iter().find(|c| !c.oauth2))
                            .or_else(|| found.candidates.first())
                            .and_then(|b| found.candidates.iter().position(|c| c == b))
                            .unwrap_or(found.candidates.len());
                    }
                    self.finding = Finding::Done(email, found);
                }
                Vec::new()
            }
            WizardEvent::Check { run, event } => {
                if let Some(t) = self.testing.as_mut().filter(|t| t.run == run) {
                    let (step, state) = match event {
                        CheckEvent::Done(s, d) => (s, StepState::Done(d)),
                        CheckEvent::Failed(s, r) => (s, StepState::Failed(r)),
                    };
                    if let Some(slot) = t.steps.iter_mut().find(|(s, _)| *s == step) {
                        slot.1 = state;
                    }
                }
                Vec::new()
            }
            WizardEvent::Tested { run, result } => {
                let Some(t) = self.testing.as_mut().filter(|t| t.run == run) else {
                    return Vec::new();
                };
                if let Err(f) = &result
                    && f.kind == FailureKind::Unreachable
                    && !self.next_candidates.is_empty()
                {
                    let mut passed_over = t.passed_over.clone();
                    passed_over.push(format!(
                        "{} ({}): {}",
                        t.candidate.summary(),
                        t.candidate.source,
                        f.reason
                    ));
                    let next = self.next_candidates.remove(0);
                    self.chosen = Some(next);
                    return self.start_test(passed_over);
                }
                t.result = Some(result);
                Vec::new()
            }
            WizardEvent::Saved { result } => {
                let Some(t) = self.testing.as_mut().filter(|t| t.saving) else {
                    return Vec::new();
                };
                match result {
                    Ok(saved) => {
                        let name = self.account_name.trimmed().to_string();
                        let notice = format!(
                            "added account {name} ({}); the first sync is running",
                            if self.oauth2.is_some() {
                                "signed in with OAuth2"
                            } else if saved.in_keyring {
                                "password in the OS keyring"
                            } else {
                                "password from password_command"
                            }
                        );
                        vec![Effect::Finished { name, notice }]
                    }
                    Err(SaveError::NoKeyring) => {
                        t.saving = false;
                        self.go(Screen::NoKeyring);
                        Vec::new()
                    }
                    Err(e) => {
                        t.saving = false;
                        t.save_error = Some(e.to_string());
                        Vec::new()
                    }
                }
            }
            WizardEvent::SignInProgress { run, progress } => {
                if let Some(s) = self.signing.as_mut().filter(|s| s.run == run) {
                    match progress {
                        SignInProgress::Url(url) => s.url = Some(url),
                        SignInProgress::DeviceCode {
                            user_code,
                            verification_uri,
                            complete,
                        } => {
                            s.device_code = Some((user_code, complete.unwrap_or(verification_uri)));
                        }
                        SignInProgress::Status(line) => {
                            s.status.push(line);
                            let excess = s.status.len().saturating_sub(3);
                            s.status.drain(..excess);
                        }
                    }
                }
                Vec::new()
            }
            WizardEvent::SignedIn { run, result } => {
                let Some(s) = self.signing.as_mut().filter(|s| s.run == run) else {
                    return Vec::new();
                };
                match result {
                    Ok(()) => {
                        self.signing = None;
                        self.pop3_or_test()
                    }
                    Err(e) => {
                        s.failed = Some(e);
                        Vec::new()
                    }
                }
            }
        }
    }

    // ---- drawing --------------------------------------------------------------------------

    fn title(&self) -> &'static str {
        match self.screen {
            Screen::Identity => " Add an account — 1/5 Who you are ",
            Screen::Password => " Add an account — 2/5 Password ",
            Screen::Settings => " Add an account — 3/5 Server settings ",
            Screen::Manual => " Add an account — 3/5 Edit server settings ",
            Screen::Pop3 => " Add an account — 4/5 POP3 options ",
            Screen::Test => " Add an account — 5/5 Test the login ",
            Screen::NoKeyring => " Add an account — 5/5 Password storage ",
            Screen::AuthChoice => " Add an account — 3/5 Sign-in method ",
            Screen::OAuth2Client => " Add an account — 4/5 OAuth2 client ",
            Screen::SignIn => " Add an account — 4/5 Sign in ",
        }
    }

    fn footer(&self) -> String {
        let fields = "Tab/↑↓ next field · ";
        match self.screen {
            Screen::Identity => format!("Enter continue · {fields}Esc cancel · C-c quit"),
            Screen::Password => format!("Enter continue · {fields}Esc back"),
            Screen::Settings => {
                "Enter use these · ↑↓ choose · e edit by hand · Esc back".to_string()
            }
            Screen::Manual => {
                format!("Enter test these · {fields}Space/←→ change a choice · Esc back")
            }
            Screen::Pop3 => format!("Enter test the login · {fields}Space on/off · Esc back"),
            Screen::Test => match self.testing.as_ref().map(|t| (&t.result, t.saving)) {
                Some((_, true)) => "saving…".to_string(),
                Some((Some(Ok(_)), _)) => {
                    "Enter save the account · e edit settings · Esc back".to_string()
                }
                Some((Some(Err(f)), _)) => {
                    let mut s = String::new();
                    if matches!(f.kind, FailureKind::Certificate { cert: Some(_) }) {
                        s.push_str("t trust this certificate · ");
                    }
                    // NOTE: an OAuth2 account has no password to change (test_key agrees).
                    if f.kind == FailureKind::WrongPassword && self.oauth2.is_none() {
                        s.push_str("p change the password · ");
                    }
                    s.push_str("Enter test again · e edit settings · Esc back");
                    s
                }
                _ => "testing… · Esc back".to_string(),
            },
            Screen::NoKeyring => "Enter test the command and save · Esc back".to_string(),
            Screen::AuthChoice => "Enter use this · ↑↓ choose · Esc back".to_string(),
            Screen::OAuth2Client => format!("Enter sign in · {fields}Esc back"),
            Screen::SignIn => match &self.signing {
                Some(s) if s.failed.is_some() => "Enter try again · Esc back".to_string(),
                Some(s) if s.device => {
                    "Tab sign in in the browser instead · Esc cancel".to_string()
                }
                _ => "Enter use the pasted address · Tab use a device code instead · Esc cancel"
                    .to_string(),
            },
        }
    }

    /// A labelled field; the focused one is reversed. Returns the line and where its
    /// text ends (for the cursor), relative to the line.
    fn field(label: &str, value: &str, focused: bool, width: usize) -> (Line<'static>, u16) {
        let (label_style, value_style) = Wizard::field_styles(focused);
        let w = width.saturating_sub(24).clamp(8, 48);
        let shown = crate::sanitize::line(value);
        let cursor = 2 + 18 + 1 + text::width(&shown).min(w.saturating_sub(1));
        (
            Line::from(vec![
                Span::raw("  "),
                Span::styled(text::fit(label, 18), label_style),
                Span::raw("["),
                text::untrusted_fit(value, w, value_style),
                Span::raw("]"),
            ]),
            cursor as u16,
        )
    }

    /// The label and value styles of a field: bold and reversed when it has the keyboard.
    fn field_styles(focused: bool) -> (Style, Style) {
        if focused {
            (
                Style::default().add_modifier(Modifier::BOLD),
                Style::default().add_modifier(Modifier::REVERSED),
            )
        } else {
            (Style::default(), Style::default())
        }
    }

    fn choice(label: &str, value: &str, focused: bool) -> Line<'static> {
        let (label_style, value_style) = Wizard::field_styles(focused);
        Line::from(vec![
            Span::raw("  "),
            Span::styled(text::fit(label, 18), label_style),
            Span::styled(format!("‹ {value} ›"), value_style),
        ])
    }

    /// Draw the current screen. Reads only state.
    pub fn draw(&self, frame: &mut Frame) {
        let area = frame.area();
        if area.width < 30 || area.height < 10 {
            frame.render_widget(
                Paragraph::new(vec![Line::raw("mailbag:"), Line::raw("terminal too small")]),
                area,
            );
            return;
        }
        let rect = super::help::centered(area, 100, area.height);
        let block = Block::default().borders(Borders::ALL).title(self.title());
        let inner = block.inner(rect);
        frame.render_widget(Clear, rect);
        frame.render_widget(block, rect);
        // NOTE: the key hints wrap onto a second line in a narrow terminal rather than lose
        // their end.
        let dim = Style::default().add_modifier(Modifier::DIM);
        let mut footer = Vec::new();
        prose(&mut footer, " ", &self.footer(), dim, inner.width as usize);
        footer.truncate(2);
        let [body, error_area, footer_area] = Layout::default()
            .direction(Direction::Vertical)
            .constraints([
                Constraint::Min(3),
                Constraint::Length(1),
                Constraint::Length(footer.len() as u16),
            ])
            .areas(inner);
        let width = body.width as usize;
        let (lines, cursor) = self.body(width);
        frame.render_widget(Paragraph::new(lines), body);
        if let Some((row, col)) = cursor
            && row < body.height
        {
            frame.set_cursor_position(Position::new(body.x + col, body.y + row));
        }
        if let Some(e) = &self.error {
            frame.render_widget(
                Paragraph::new(Line::from(vec![
                    Span::styled(" ✗ ", Style::default().add_modifier(Modifier::BOLD)),
                    text::untrusted(e, Style::default().add_modifier(Modifier::BOLD)),
                ])),
                error_area,
            );
        }
        frame.render_widget(Paragraph::new(footer), footer_area);
    }

    /// The lines of the current screen and the cursor (row, column) in a text field.
    fn body(&self, width: usize) -> (Vec<Line<'static>>, Option<(u16, u16)>) {
        let bold = Style::default().add_modifier(Modifier::BOLD);
        let dim = Style::default().add_modifier(Modifier::DIM);
        let mut lines = vec![Line::raw("")];
        let mut cursor = None;
        let mut field = |lines: &mut Vec<Line<'static>>, label: &str, value: &str, i: usize| {
            let (line, col) = Wizard::field(label, value, self.focus == i, width);
            if self.focus == i {
                cursor = Some((lines.len() as u16, col));
            }
            lines.push(line);
        };
        match self.screen {
            Screen::Identity => {
                if self.options.first_run {
                    lines.push(Line::styled("  Welcome to mailbag", bold));
                    prose(
                        &mut lines,
                        "  ",
                        "mailbag has no account yet. Set one up here: a name, an address and a \
                         password, and mailbag finds the rest.",
                        Style::default(),
                        width,
                    );
                    prose(
                        &mut lines,
                        "  ",
                        "(Esc leaves; to look around first, try the built-in demo: mailbag --demo)",
                        dim,
                        width,
                    );
                    lines.push(Line::raw(""));
                }
                field(&mut lines, "Your name", &self.display_name.text, 0);
                field(&mut lines, "Email address", &self.email.text, 1);
                field(&mut lines, "Account name", &self.account_name.text, 2);
                lines.push(Line::raw(""));
                prose(
                    &mut lines,
                    "  ",
                    "Your name is shown as the sender. The account name is what mailbag calls \
                     this account (in the sidebar and as [accounts.NAME] in config.toml).",
                    dim,
                    width,
                );
            }
            Screen::Password => {
                let masked: String = "•".repeat(self.password.text.chars().count());
                prose(
                    &mut lines,
                    "  ",
                    &format!(
                        "The password for {}. It is tested with the server, then kept in the \
                         OS keyring, never in config.toml.",
                        self.email.trimmed()
                    ),
                    Style::default(),
                    width,
                );
                lines.push(Line::raw(""));
                field(&mut lines, "Password", &masked, 0);
                lines.push(Line::raw(""));
                prose(
                    &mut lines,
                    "  ",
                    "Or, instead, a command that prints the password (e.g. pass show mail/work):",
                    Style::default(),
                    width,
                );
                field(
                    &mut lines,
                    "Password command",
                    &self.password_command.text,
                    1,
                );
                prose(
                    &mut lines,
                    "  ",
                    "(Leave both empty to sign in with OAuth2 in the browser instead: Gmail, \
                     Outlook.com, Microsoft 365 or a server of your own.)",
                    dim,
                    width,
                );
                lines.push(Line::raw(""));
                lines.push(Line::styled(self.finding_line(), dim));
            }
            Screen::Settings => self.settings_lines(&mut lines, width),
            Screen::Manual => {
                prose(
                    &mut lines,
                    "  ",
                    "Every setting can be changed by hand. Ask your provider if unsure.",
                    Style::default(),
                    width,
                );
                lines.push(Line::raw(""));
                lines.push(Wizard::choice(
                    "Protocol",
                    self.manual.protocol.as_str(),
                    self.focus == 0,
                ));
                field(&mut lines, "Server", &self.manual.host.text, 1);
                field(&mut lines, "Port", &self.manual.port.text, 2);
                lines.push(Wizard::choice(
                    "Security",
                    security_name(self.manual.security),
                    self.focus == 3,
                ));
                field(&mut lines, "User name", &self.manual.username.text, 4);
                lines.push(Wizard::choice(
                    "Sign-in",
                    sign_in_name(self.manual.sign_in),
                    self.focus == 5,
                ));
                lines.push(Line::raw(""));
                prose(
                    &mut lines,
                    "  ",
                    protocol_explained(self.manual.protocol),
                    Style::default(),
                    width,
                );
                prose(
                    &mut lines,
                    "  ",
                    match self.manual.security {
                        Security::Tls => "tls: encrypted from the first byte (ports 993, 995).",
                        Security::Starttls => {
                            "starttls: connect, then switch to encryption before the password \
                             (ports 143, 110)."
                        }
                        Security::None => {
                            "none: no encryption — the password crosses the network readable. \
                             Only for a server on this machine."
                        }
                    },
                    dim,
                    width,
                );
            }
            Screen::Pop3 => {
                prose(
                    &mut lines,
                    "  ",
                    protocol_explained(Protocol::Pop3),
                    Style::default(),
                    width,
                );
                lines.push(Line::raw(""));
                lines.push(Wizard::choice(
                    "Leave on server",
                    if self.leave_on_server { "yes" } else { "no" },
                    self.focus == 0,
                ));
                field(
                    &mut lines,
                    "Delete after days",
                    &self.delete_after_days.text,
                    1,
                );
                lines.push(Line::raw(""));
                prose(
                    &mut lines,
                    "  ",
                    if self.leave_on_server {
                        "Mail stays on the server after download, so webmail and other devices \
                         still see it. With a number of days, mailbag deletes it from the server \
                         that long after downloading it; empty means never."
                    } else {
                        "Mail is deleted from the server once it is safely on this computer."
                    },
                    dim,
                    width,
                );
            }
            Screen::Test => self.test_lines(&mut lines, width),
            Screen::AuthChoice => {
                let reversed = Style::default().add_modifier(Modifier::REVERSED);
                let provider = self.offered.map_or("the provider", provider_name);
                let host = self.chosen.as_ref().map_or("", |c| c.host.as_str());
                prose(
                    &mut lines,
                    "  ",
                    &format!(
                        "{host} can sign you in with OAuth2: you log in on {provider}'s own \
                         page in a browser and mailbag keeps only a token, never your password."
                    ),
                    Style::default(),
                    width,
                );
                lines.push(Line::raw(""));
                let rows = [
                    format!("Sign in with {provider} in the browser (OAuth2)"),
                    "Use an app password (the password typed on screen 2)".to_string(),
                ];
                for (i, row) in rows.iter().enumerate() {
                    let on = i == self.auth_row;
                    lines.push(Line::styled(
                        format!("{} {row}", if on { "  ▸" } else { "   " }),
                        if on { reversed } else { Style::default() },
                    ));
                }
                lines.push(Line::raw(""));
                prose(
                    &mut lines,
                    "  ",
                    "OAuth2 needs a client id you register once with the provider \
                     (docs/oauth2.md says how). An app password is made in the provider's \
                     account settings.",
                    dim,
                    width,
                );
            }
            Screen::OAuth2Client => self.oauth2_client_lines(&mut lines, &mut field, width),
            Screen::SignIn => self.sign_in_lines(&mut lines, &mut cursor, width),
            Screen::NoKeyring => {
                prose(
                    &mut lines,
                    "  ",
                    "No OS keyring is reachable here (no D-Bus session / Secret Service), so \
                     mailbag cannot store the password.",
                    bold,
                    width,
                );
                prose(
                    &mut lines,
                    "  ",
                    "Give a command that prints the password instead; mailbag runs it each time \
                     it logs in. The password is never written to config.toml.",
                    Style::default(),
                    width,
                );
                lines.push(Line::raw(""));
                field(
                    &mut lines,
                    "Password command",
                    &self.keyring_command.text,
                    0,
                );
                lines.push(Line::raw(""));
                prose(
                    &mut lines,
                    "  ",
                    "e.g. pass show mail/work   ·   secret-tool lookup mail work   ·   \
                     gpg -dq ~/.mail-password.gpg",
                    dim,
                    width,
                );
            }
        }
        (lines, cursor)
    }

    fn oauth2_client_lines(
        &self,
        lines: &mut Vec<Line<'static>>,
        field: &mut FieldFn<'_>,
        width: usize,
    ) {
        let dim = Style::default().add_modifier(Modifier::DIM);
        let Some(form) = &self.oauth2 else {
            return;
        };
        prose(
            lines,
            "  ",
            &format!(
                "Sign in with {} (OAuth2). mailbag cannot ship a client id of its own: give the \
                 one of the app you registered.",
                provider_name(form.provider)
            ),
            Style::default(),
            width,
        );
        prose(
            lines,
            "  ",
            "How to register one (Google Cloud, Microsoft Entra): docs/oauth2.md",
            dim,
            width,
        );
        lines.push(Line::raw(""));
        let masked = "•".repeat(form.client_secret.text.chars().count());
        field(lines, "Client id", &form.client_id.text, 0);
        field(lines, "Client secret", &masked, 1);
        if form.provider == OAuth2Provider::Custom {
            field(lines, "Authorization URL", &form.auth_url.text, 2);
            field(lines, "Token URL", &form.token_url.text, 3);
            field(lines, "Device URL", &form.device_url.text, 4);
            field(lines, "Scopes", &form.scopes.text, 5);
        }
        lines.push(Line::raw(""));
        prose(
            lines,
            "  ",
            if form.provider == OAuth2Provider::Custom {
                "The secret is optional (installed apps often have none). Give the authorization \
                 URL for the browser sign-in, the device URL for a device code, or both; scopes \
                 are separated by spaces."
            } else {
                "The secret is optional (installed apps often have none); it is saved in \
                 config.toml as oauth2_client_secret."
            },
            dim,
            width,
        );
    }

    fn sign_in_lines(
        &self,
        lines: &mut Vec<Line<'static>>,
        cursor: &mut Option<(u16, u16)>,
        width: usize,
    ) {
        let bold = Style::default().add_modifier(Modifier::BOLD);
        let dim = Style::default().add_modifier(Modifier::DIM);
        let Some(s) = &self.signing else {
            return;
        };
        let provider = self
            .oauth2
            .as_ref()
            .map_or("your provider", |f| provider_name(f.provider));
        let user = self
            .chosen
            .as_ref()
            .map(|c| c.username.clone())
            .unwrap_or_default();
        prose(
            lines,
            "  ",
            &format!(
                "Sign in to {provider} as {user}{}.",
                if s.device {
                    " with a device code"
                } else {
                    " in the browser"
                }
            ),
            bold,
            width,
        );
        lines.push(Line::raw(""));
        if s.device {
            match &s.device_code {
                Some((code, uri)) => {
                    prose(
                        lines,
                        "  ",
                        "On any device with a browser, open this address and enter the code:",
                        Style::default(),
                        width,
                    );
                    prose(lines, "    ", uri, Style::default(), width);
                    lines.push(Line::from(vec![
                        Span::raw("    code: "),
                        text::untrusted(code, bold),
                    ]));
                }
                None => lines.push(Line::styled("  asking for a device code…", dim)),
            }
        } else {
            match &s.url {
                Some(url) => {
                    prose(
                        lines,
                        "  ",
                        "Open this address in a browser (mailbag tried to start one):",
                        Style::default(),
                        width,
                    );
                    // NOTE: the whole URL, wrapped and never cut: it is copied by hand on a
                    // headless box.
                    prose(lines, "  ", url, Style::default(), width);
                }
                None => lines.push(Line::styled("  preparing the sign-in…", dim)),
            }
        }
        lines.push(Line::raw(""));
        for st in &s.status {
            prose(lines, "  · ", st, dim, width);
        }
        if let Some(e) = &s.failed {
            prose(lines, "  ✗ ", e, bold, width);
            return;
        }
        if !s.device {
            lines.push(Line::raw(""));
            prose(
                lines,
                "  ",
                "No browser on this machine? Open the address elsewhere, then paste the address \
                 the browser ends on (http://127.0.0.1:… or http://localhost:…) here:",
                Style::default(),
                width,
            );
            // NOTE: the pasted address carries the one-time code: only its start is shown.
            let shown = match s.paste.text.split_once('?') {
                Some((start, _)) => format!("{start}?…"),
                None => s.paste.text.clone(),
            };
            let (line, col) = Wizard::field("Pasted address", &shown, true, width);
            *cursor = Some((lines.len() as u16, col));
            lines.push(line);
        }
    }

    fn finding_line(&self) -> String {
        match &self.finding {
            Finding::NotStarted => String::new(),
            Finding::Running(a) => format!(
                "  Looking for the server settings of {} …",
                crate::sanitize::line(a)
            ),
            Finding::Done(_, found) if found.candidates.is_empty() => {
                "  No server settings found: you can enter them by hand next.".into()
            }
            Finding::Done(_, found) => format!(
                "  Found {} possible server setting{}.",
                found.candidates.len(),
                if found.candidates.len() == 1 { "" } else { "s" }
            ),
        }
    }

    fn settings_lines(&self, lines: &mut Vec<Line<'static>>, width: usize) {
        let bold = Style::default().add_modifier(Modifier::BOLD);
        let dim = Style::default().add_modifier(Modifier::DIM);
        let reversed = Style::default().add_modifier(Modifier::REVERSED);
        match &self.finding {
            Finding::Done(address, found) => {
                let both = found.has(Protocol::Imap) && found.has(Protocol::Pop3);
                for p in [Protocol::Imap, Protocol::Pop3] {
                    prose(lines, "  ", protocol_explained(p), Style::default(), width);
                }
                if both {
                    lines.push(Line::styled(
                        "  Both are offered: IMAP is recommended.",
                        bold,
                    ));
                }
                lines.push(Line::raw(""));
                if found.candidates.is_empty() {
                    prose(
                        lines,
                        "  ",
                        &format!("No server settings found for {address}:"),
                        bold,
                        width,
                    );
                    for r in &found.reports {
                        if let Outcome::Nothing(notes) = &r.outcome {
                            let first = notes.first().map(String::as_str).unwrap_or("nothing");
                            lines.push(Line::from(vec![
                                Span::raw(format!("    {}: ", r.step.label())),
                                text::untrusted_fit(first, width.saturating_sub(30), dim),
                            ]));
                        }
                    }
                } else {
                    prose(
                        lines,
                        "  ",
                        &format!("Settings found for {address}, and where they came from:"),
                        Style::default(),
                        width,
                    );
                }
                lines.push(Line::raw(""));
            }
            _ => {
                lines.push(Line::raw(self.finding_line()));
                lines.push(Line::styled(
                    "  (the bundled provider list, the domain's autoconfig, DNS, then guesses)",
                    dim,
                ));
                lines.push(Line::raw(""));
            }
        }
        let all = self.candidates();
        for (i, c) in all.iter().enumerate() {
            let selected = i == self.selected;
            let mut row = format!(
                "{} {:<5} {}:{}  {:<8}  user {}",
                if selected { "  ▸" } else { "   " },
                c.protocol.as_str(),
                c.host,
                c.port,
                security_name(c.security),
                c.username
            );
            if c.oauth2 {
                row.push_str("  (OAuth2 sign-in only)");
            } else if oauth2_preset(c).is_some() {
                row.push_str("  (OAuth2 or app password)");
            }
            lines.push(Line::from(text::untrusted(
                &row,
                if selected { reversed } else { Style::default() },
            )));
            let mut from = match c.source {
                Source::Manual => "        edited by hand".to_string(),
                _ => format!("        from {}", c.source),
            };
            if let Some(p) = &c.provider {
                from.push_str(&format!(" — {p}"));
            }
            lines.push(Line::from(text::untrusted(&from, dim)));
        }
        let manual = all.len() == self.selected;
        lines.push(Line::styled(
            format!(
                "{} Enter the settings by hand",
                if manual { "  ▸" } else { "   " }
            ),
            if manual { reversed } else { Style::default() },
        ));
        if let Some(c) = all.get(self.selected)
            && !c.notes.is_empty()
        {
            lines.push(Line::raw(""));
            for n in &c.notes {
                prose(lines, "  note: ", n, Style::default(), width);
            }
        }
    }

    fn test_lines(&self, lines: &mut Vec<Line<'static>>, width: usize) {
        let bold = Style::default().add_modifier(Modifier::BOLD);
        let dim = Style::default().add_modifier(Modifier::DIM);
        let Some(t) = &self.testing else {
            return;
        };
        for p in &t.passed_over {
            prose(lines, "  ✗ no answer: ", p, dim, width);
        }
        let summary = Candidate {
            username: t.account.username().to_string(),
            ..t.candidate.clone()
        }
        .summary();
        lines.push(Line::from(vec![
            Span::raw("  Testing "),
            text::untrusted(&summary, bold),
            text::untrusted(
                &match t.candidate.source {
                    Source::Manual => "  (typed in by hand)".to_string(),
                    ref source => format!("  (from {source})"),
                },
                dim,
            ),
        ]));
        if t.account.tls_cert_sha256.is_some() {
            lines.push(Line::styled(
                "  trusting exactly the certificate you accepted (tls_cert_sha256)",
                dim,
            ));
        }
        lines.push(Line::raw(""));
        let mut first_waiting = true;
        for (step, state) in &t.steps {
            let (mark, detail) = match state {
                StepState::Done(d) => ("✓", d.as_str()),
                StepState::Failed(r) => ("✗", r.as_str()),
                StepState::Waiting if t.result.is_none() && first_waiting => {
                    first_waiting = false;
                    ("…", "")
                }
                StepState::Waiting => ("·", ""),
            };
            let lead = format!("    {mark} {}", text::fit(step.label(), 14));
            if detail.is_empty() {
                lines.push(Line::raw(lead));
            } else {
                prose(lines, &lead, detail, Style::default(), width);
            }
        }
        lines.push(Line::raw(""));
        match &t.result {
            None => lines.push(Line::styled("  testing…", dim)),
            Some(Ok(ok)) => {
                let what = match ok.stat {
                    Some((n, _)) => format!("{n} messages waiting"),
                    None => format!("{} folders", ok.folders.len()),
                };
                lines.push(Line::styled(format!("  ✓ The login works ({what})."), bold));
                lines.push(Line::from(vec![
                    Span::raw("  Enter saves it as account "),
                    text::untrusted(self.account_name.trimmed(), bold),
                    Span::raw(if self.oauth2.is_some() {
                        " (signed in with OAuth2: the refresh token is in the OS keyring)."
                    } else if self.uses_command() {
                        " (the password comes from your password command)."
                    } else {
                        " (the password goes to the OS keyring)."
                    }),
                ]));
            }
            Some(Err(f)) => {
                prose(lines, "  → ", &f.hint, bold, width);
                if let FailureKind::Certificate { cert: Some(cert) } = &f.kind {
                    lines.push(Line::raw(""));
                    prose(
                        lines,
                        "  ",
                        "The server's certificate is not trusted. If you know this is your \
                         server's, t trusts exactly this one (saved as tls_cert_sha256):",
                        Style::default(),
                        width,
                    );
                    for (label, value) in [
                        ("subject", cert.subject.clone()),
                        ("issuer", cert.issuer.clone()),
                        ("SHA-256", cert.fingerprint()),
                    ] {
                        prose(
                            lines,
                            &format!("    {label:<9}"),
                            &value,
                            Style::default(),
                            width,
                        );
                    }
                }
            }
        }
        if let Some(e) = &t.save_error {
            prose(lines, "  ✗ not saved: ", e, bold, width);
        }
    }
}

// ---- running ----------------------------------------------------------------------------

/// How the wizard ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// An account was saved; `notice` says where and how.
    Saved { name: String, notice: String },
    /// The user left the wizard from its first screen.
    Cancelled,
    /// Ctrl-C, SIGTERM or SIGHUP.
    Quit,
}

/// The OAuth2 sign-in task running for the wizard, if any. Dropping it stops the task, which
/// closes its loopback listener.
#[derive(Default)]
struct Running {
    sign_in: Option<(u64, tokio::task::JoinHandle<()>, mpsc::Sender<String>)>,
    /// Every account a sign-in was started for: their refresh tokens go when the wizard
    /// ends without an account that uses them (`oauth2::store::forget_unsaved`).
    signed_in: Vec<crate::config::Account>,
}

impl Running {
    fn stop(&mut self) {
        if let Some((_, task, _)) = self.sign_in.take() {
            task.abort();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Hands the sign-in's output to the wizard as events.
struct TuiPrompt {
    run: u64,
    tx: UnboundedSender<WizardEvent>,
}

impl TuiPrompt {
    fn send(&self, progress: SignInProgress) {
        let _ = self.tx.send(WizardEvent::SignInProgress {
            run: self.run,
            progress,
        });
    }
}

impl crate::oauth2::Prompt for TuiPrompt {
    fn show_url(&mut self, url: &str) {
        self.send(SignInProgress::Url(url.to_string()));
    }

    fn show_device_code(
        &mut self,
        user_code: &str,
        verification_uri: &str,
        verification_uri_complete: Option<&str>,
    ) {
        self.send(SignInProgress::DeviceCode {
            user_code: user_code.to_string(),
            verification_uri: verification_uri.to_string(),
            complete: verification_uri_complete.map(str::to_string),
        });
    }

    fn status(&mut self, text: &str) {
        self.send(SignInProgress::Status(text.to_string()));
    }
}

/// The name the sign-in and the test use for the account in messages (it has none yet).
const NEW_ACCOUNT: &str = "the new account";

/// Carry out `effect` on a task; its result comes back on `tx`. Returns how the wizard ends,
/// for the effects that end it.
fn carry_out(
    effect: Effect,
    tx: &UnboundedSender<WizardEvent>,
    running: &mut Running,
) -> Option<Finish> {
    let tx = tx.clone();
    match effect {
        Effect::SignIn {
            run,
            account,
            device,
            open_browser,
        } => {
            running.stop();
            running.signed_in.push((*account).clone());
            let (paste_tx, paste_rx) = mpsc::channel(4);
            let method = if device {
                crate::oauth2::Method::Device
            } else {
                crate::oauth2::Method::Browser {
                    open_browser,
                    pasted: Some(paste_rx),
                }
            };
            let task = tokio::spawn(async move {
                let mut prompt = TuiPrompt {
                    run,
                    tx: tx.clone(),
                };
                let result = crate::oauth2::sign_in(NEW_ACCOUNT, &account, method, &mut prompt)
                    .await
                    .map_err(|e| crate::sanitize::line(&e.to_string()).into_owned());
                let _ = tx.send(WizardEvent::SignedIn { run, result });
            });
            running.sign_in = Some((run, task, paste_tx));
        }
        Effect::Paste { run, line } => {
            if let Some((_, _, paste)) = running.sign_in.as_ref().filter(|s| s.0 == run) {
                let _ = paste.try_send(line.expose().to_string());
            }
        }
        Effect::CancelSignIn { run } => {
            if running.sign_in.as_ref().is_some_and(|s| s.0 == run) {
                running.stop();
            }
        }
        Effect::Discover { email, discovery } => {
            tokio::spawn(async move {
                let found = discover::discover(&email, &discovery).await;
                let _ = tx.send(WizardEvent::Discovered {
                    email: email.address,
                    found,
                });
            });
        }
        Effect::Test {
            run,
            account,
            password,
            provider,
        } => {
            tokio::spawn(async move {
                let secret = match password {
                    TestPassword::Given(s) => Ok(s),
                    // NOTE: an OAuth2 account's login takes the token the sign-in stored.
                    TestPassword::OAuth2 => Ok(Secret::new(String::new())),
                    TestPassword::Command(cmd) => tokio::task::spawn_blocking(move || {
                        credentials::run_password_command(
                            NEW_ACCOUNT,
                            &cmd,
                            credentials::PASSWORD_COMMAND_TIMEOUT,
                        )
                        .map_err(|e| e.to_string())
                    })
                    .await
                    .unwrap_or_else(|e| Err(format!("the password command did not finish: {e}"))),
                };
                let result = match secret {
                    Ok(secret) => {
                        let events = tx.clone();
                        let mut on = move |event: CheckEvent| {
                            let _ = events.send(WizardEvent::Check { run, event });
                        };
                        check::test_login(&account, &secret, provider.as_deref(), &mut on).await
                    }
                    Err(reason) => Err(CheckFailure {
                        step: CheckStep::Login,
                        kind: FailureKind::Other,
                        reason: crate::sanitize::line(&reason).into_owned(),
                        hint: "check the password command: run it in a shell, it must print \
                               the password"
                            .into(),
                    }),
                };
                let _ = tx.send(WizardEvent::Tested { run, result });
            });
        }
        Effect::Save {
            config_file,
            name,
            account,
            password,
        } => {
            tokio::task::spawn_blocking(move || {
                let choice = match &password {
                    _ if account.uses_oauth2() => PasswordChoice::OAuth2,
                    Some(secret) => PasswordChoice::Keyring(secret),
                    None => PasswordChoice::Command,
                };
                let result = save::save_account(&config_file, &name, &account, choice);
                let _ = tx.send(WizardEvent::Saved { result });
            });
        }
        Effect::Finished { name, notice } => return Some(Finish::Saved { name, notice }),
        Effect::Cancelled => return Some(Finish::Cancelled),
        Effect::Quit => return Some(Finish::Quit),
    }
    None
}

/// Run the wizard in the terminal until an account is saved or the user leaves.
pub async fn run(tty: &mut super::Tty, mut wizard: Wizard) -> std::io::Result<Finish> {
    let mut running = Running::default();
    let finish = drive(tty, &mut wizard, &mut running).await;
    running.stop();
    // NOTE: a sign-in stored its refresh token before anything was saved; if the wizard
    // ended without an account that uses it (cancelled, quit, another server saved), it
    // goes. A keyring error here leaves it, as before; nothing else depends on it.
    let signed_in = std::mem::take(&mut running.signed_in);
    let config_file = wizard.options.config_file.clone();
    let _ = tokio::task::spawn_blocking(move || {
        crate::oauth2::store::forget_unsaved(&config_file, &signed_in)
    })
    .await;
    finish
}

async fn drive(
    tty: &mut super::Tty,
    wizard: &mut Wizard,
    running: &mut Running,
) -> std::io::Result<Finish> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    loop {
        tty.terminal.draw(|f| wizard.draw(f))?;
        let effects = tokio::select! {
            ev = tty.input.recv() => match ev {
                Some(Event::Key(k)) => {
                    let mut effects = wizard.handle_key(k);
                    // Coalesce a burst (a paste) into one frame.
                    while let Ok(ev) = tty.input.try_recv() {
                        if let Event::Key(k) = ev {
                            effects.extend(wizard.handle_key(k));
                        }
                    }
                    effects
                }
                Some(_) => Vec::new(),
                None => return Ok(Finish::Quit),
            },
            ev = rx.recv() => match ev {
                Some(ev) => wizard.handle_event(ev),
                None => Vec::new(),
            },
            _ = term.recv() => return Ok(Finish::Quit),
            _ = hup.recv() => return Ok(Finish::Quit),
        };
        for effect in effects {
            if let Some(finish) = carry_out(effect, &tx, running) {
                return Ok(finish);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(w: &mut Wizard, code: KeyCode) -> Vec<Effect> {
        w.handle_key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    fn typed(w: &mut Wizard, s: &str) {
        for c in s.chars() {
            key(w, KeyCode::Char(c));
        }
    }

    /// IMAP on `h:993` with TLS, typed in by hand.
    fn imap_candidate() -> Candidate {
        Candidate {
            source: Source::Manual,
            provider: None,
            protocol: Protocol::Imap,
            host: "h".into(),
            port: 993,
            security: Security::Tls,
            username: "u".into(),
            oauth2: false,
            notes: vec![],
        }
    }

    #[test]
    fn account_names_come_from_the_domain_and_stay_unique() {
        assert_eq!(derive_name("me@posteo.de", &[]), "posteo");
        assert_eq!(
            derive_name("me@posteo.de", &["posteo".into(), "posteo2".into()]),
            "posteo3"
        );
        assert_eq!(derive_name("me@", &[]), "mail");
    }

    #[test]
    fn back_walks_every_screen_and_cancels_at_the_first() {
        let mut w = Wizard::new(WizardOptions::new("/tmp/c.toml".into(), vec![]));
        key(&mut w, KeyCode::Tab);
        typed(&mut w, "me@example.org");
        let effects = key(&mut w, KeyCode::Enter);
        assert!(matches!(effects.as_slice(), [Effect::Discover { .. }]));
        assert_eq!(w.screen, Screen::Password);
        typed(&mut w, "secret");
        key(&mut w, KeyCode::Enter);
        assert_eq!(w.screen, Screen::Settings);
        key(&mut w, KeyCode::Char('e'));
        assert_eq!(w.screen, Screen::Manual);
        assert_eq!(w.manual.host.text, "mail.example.org");
        assert!(key(&mut w, KeyCode::Esc).is_empty());
        assert_eq!(w.screen, Screen::Settings);
        key(&mut w, KeyCode::Esc);
        assert_eq!(w.screen, Screen::Password);
        assert_eq!(w.password.text, "secret", "going back keeps what was typed");
        key(&mut w, KeyCode::Esc);
        assert_eq!(w.screen, Screen::Identity);
        // The same address again: no second discovery.
        assert!(key(&mut w, KeyCode::Enter).is_empty());
        key(&mut w, KeyCode::Esc);
        assert!(matches!(
            key(&mut w, KeyCode::Esc).as_slice(),
            [Effect::Cancelled]
        ));
    }

    #[test]
    fn esc_while_saving_waits_for_the_save() {
        let mut w = Wizard::new(WizardOptions::new("/tmp/c.toml".into(), vec![]));
        key(&mut w, KeyCode::Tab);
        typed(&mut w, "me@example.org");
        key(&mut w, KeyCode::Enter);
        typed(&mut w, "secret");
        key(&mut w, KeyCode::Enter);
        w.chosen = Some(imap_candidate());
        assert!(matches!(
            w.start_test(vec![]).as_slice(),
            [Effect::Test { .. }]
        ));
        if let Some(t) = w.testing.as_mut() {
            t.saving = true;
        }
        assert!(key(&mut w, KeyCode::Esc).is_empty());
        assert_eq!(w.screen, Screen::Test, "Esc does not leave a save running");
        let effects = w.handle_event(WizardEvent::Saved {
            result: Ok(Saved {
                config_file: "/tmp/c.toml".into(),
                in_keyring: true,
            }),
        });
        assert!(matches!(effects.as_slice(), [Effect::Finished { .. }]));
    }

    #[test]
    fn input_debug_hides_the_text() {
        assert_eq!(format!("{:?}", Input::from("hunter2")), "Input(7 chars)");
    }

    #[test]
    fn manual_toggles_move_a_default_port_along() {
        let mut m = ManualForm::from_candidate(&imap_candidate());
        m.toggle(3, true);
        assert_eq!(
            (m.security, m.port.text.as_str()),
            (Security::Starttls, "143")
        );
        m.toggle(0, true);
        assert_eq!((m.protocol, m.port.text.as_str()), (Protocol::Pop3, "110"));
        m.port = Input::from("1110");
        m.toggle(3, false);
        assert_eq!((m.security, m.port.text.as_str()), (Security::Tls, "1110"));
    }
}
