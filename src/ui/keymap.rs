//! Actions, their default keys, and the user's `[keys]` table.
//!
//! Every key the TUI reacts to outside text input goes through this map, so `?` (help) and
//! `docs/keys.md` list exactly what is bound. The `[keys]` table maps an action name to one key
//! or several separated by spaces (`down = "j Down"`); a configured action loses its default
//! keys, and a configured key is taken away from any action that only had it by default. Two
//! configured actions may not share a key.
//!
//! Key syntax: a single character (`j`, `G`, `?`), a name (`Up`, `Down`, `Left`, `Right`,
//! `PageUp`, `PageDown`, `Home`, `End`, `Enter`, `Esc`, `Tab`, `BackTab`, `Space`,
//! `Backspace`, `Delete`, `Insert`, `F1`..`F12`; names are case-insensitive), optionally with
//! `C-` (Ctrl) and `A-` (Alt) in front: `C-n`, `A-Down`.

use std::collections::{BTreeMap, HashMap};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// Something the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Down,
    Up,
    PageDown,
    PageUp,
    Top,
    Bottom,
    Open,
    Quit,
    Back,
    NextPane,
    Search,
    NextMatch,
    PrevMatch,
    Flag,
    ToggleRead,
    Delete,
    Move,
    Attachments,
    Threads,
    ExpandThread,
    Sync,
    Undo,
    AddAccount,
    Help,
}

/// Each action: name in `[keys]`, what it does, default keys.
const TABLE: &[(Action, &str, &str, &[&str])] = &[
    (Action::Down, "down", "next message / line", &["j", "Down"]),
    (Action::Up, "up", "previous message / line", &["k", "Up"]),
    (
        Action::PageDown,
        "page_down",
        "one page down",
        &["PageDown", "C-f"],
    ),
    (Action::PageUp, "page_up", "one page up", &["PageUp", "C-b"]),
    (Action::Top, "top", "first message / top", &["g", "Home"]),
    (
        Action::Bottom,
        "bottom",
        "last message / bottom",
        &["G", "End"],
    ),
    (
        Action::Open,
        "open",
        "open message or folder; expand a collapsed thread",
        &["Enter"],
    ),
    (
        Action::Quit,
        "quit",
        "back (close reader, overlay, search); quit at the top level",
        &["q"],
    ),
    (
        Action::Back,
        "back",
        "back (close reader, overlay, search); never quits",
        &["Esc"],
    ),
    (
        Action::NextPane,
        "next_pane",
        "move between sidebar, list and reader",
        &["Tab", "BackTab"],
    ),
    (
        Action::Search,
        "search",
        "search the current folder",
        &["/"],
    ),
    (Action::NextMatch, "next_match", "next search hit", &["n"]),
    (
        Action::PrevMatch,
        "prev_match",
        "previous search hit",
        &["N"],
    ),
    (Action::Flag, "flag", "flag / unflag", &["s"]),
    (
        Action::ToggleRead,
        "toggle_read",
        "mark read / unread",
        &["u"],
    ),
    (Action::Delete, "delete", "delete (z undoes)", &["d"]),
    (
        Action::Move,
        "move",
        "move to a folder (fuzzy picker; z undoes)",
        &["m"],
    ),
    (
        Action::Attachments,
        "attachments",
        "list attachments: Enter saves, o opens",
        &["a"],
    ),
    (Action::Threads, "threads", "conversations on / off", &["t"]),
    (
        Action::ExpandThread,
        "expand_thread",
        "expand / collapse the selected conversation",
        &["Space"],
    ),
    (Action::Sync, "sync", "sync now", &["R"]),
    (Action::Undo, "undo", "undo the last delete or move", &["z"]),
    (
        Action::AddAccount,
        "add_account",
        "add an account (the setup wizard)",
        &["A"],
    ),
    (Action::Help, "help", "this help", &["?"]),
];

impl Action {
    /// Every action, in help order.
    pub fn all() -> impl Iterator<Item = Action> {
        TABLE.iter().map(|(a, ..)| *a)
    }

    /// Every action name, as written in `[keys]`.
    pub fn names() -> Vec<&'static str> {
        TABLE.iter().map(|(_, n, ..)| *n).collect()
    }

    fn entry(self) -> &'static (Action, &'static str, &'static str, &'static [&'static str]) {
        // NOTE: TABLE lists every variant (a test checks it), so the fallback is never used.
        TABLE.iter().find(|(a, ..)| *a == self).unwrap_or(&TABLE[0])
    }

    /// The name in `[keys]` (`page_down`).
    pub fn as_str(self) -> &'static str {
        self.entry().1
    }

    /// What the action does, for help.
    pub fn description(self) -> &'static str {
        self.entry().2
    }

    /// The action called `name` in `[keys]`.
    pub fn from_name(name: &str) -> Option<Action> {
        TABLE.iter().find(|(_, n, ..)| *n == name).map(|(a, ..)| *a)
    }
}

/// One key with its modifiers (Shift is folded into the character).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub code: KeyCode,
    pub ctrl: bool,
    pub alt: bool,
}

const NAMED: &[(&str, KeyCode)] = &[
    ("Up", KeyCode::Up),
    ("Down", KeyCode::Down),
    ("Left", KeyCode::Left),
    ("Right", KeyCode::Right),
    ("PageUp", KeyCode::PageUp),
    ("PageDown", KeyCode::PageDown),
    ("Home", KeyCode::Home),
    ("End", KeyCode::End),
    ("Enter", KeyCode::Enter),
    ("Esc", KeyCode::Esc),
    ("Tab", KeyCode::Tab),
    ("BackTab", KeyCode::BackTab),
    ("Space", KeyCode::Char(' ')),
    ("Backspace", KeyCode::Backspace),
    ("Delete", KeyCode::Delete),
    ("Insert", KeyCode::Insert),
];

impl Key {
    /// Parse `j`, `G`, `PageDown`, `C-n`, `A-Down`, `F5`.
    pub fn parse(text: &str) -> Option<Key> {
        let mut rest = text;
        let (mut ctrl, mut alt) = (false, false);
        loop {
            if let Some(r) = rest.strip_prefix("C-").filter(|r| !r.is_empty()) {
                ctrl = true;
                rest = r;
            } else if let Some(r) = rest.strip_prefix("A-").filter(|r| !r.is_empty()) {
                alt = true;
                rest = r;
            } else {
                break;
            }
        }
        let mut chars = rest.chars();
        let code = match (chars.next(), chars.next()) {
            (Some(c), None) if !c.is_control() => KeyCode::Char(c),
            _ => {
                if let Some((_, code)) = NAMED.iter().find(|(n, _)| n.eq_ignore_ascii_case(rest)) {
                    *code
                } else if let Some(n) = rest
                    .strip_prefix(['F', 'f'])
                    .and_then(|n| n.parse::<u8>().ok())
                    .filter(|n| (1..=12).contains(n))
                {
                    KeyCode::F(n)
                } else {
                    return None;
                }
            }
        };
        let code = match code {
            KeyCode::Char(c) if ctrl => KeyCode::Char(c.to_ascii_lowercase()),
            c => c,
        };
        Some(Key { code, ctrl, alt })
    }

    /// The key of a terminal key event.
    pub fn from_event(ev: &KeyEvent) -> Key {
        let ctrl = ev.modifiers.contains(KeyModifiers::CONTROL);
        let code = match ev.code {
            KeyCode::Char(c) if ctrl => KeyCode::Char(c.to_ascii_lowercase()),
            c => c,
        };
        Key {
            code,
            ctrl,
            alt: ev.modifiers.contains(KeyModifiers::ALT),
        }
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.ctrl {
            f.write_str("C-")?;
        }
        if self.alt {
            f.write_str("A-")?;
        }
        match self.code {
            KeyCode::Char(' ') => f.write_str("Space"),
            KeyCode::Char(c) => write!(f, "{c}"),
            KeyCode::F(n) => write!(f, "F{n}"),
            code => {
                let name = NAMED
                    .iter()
                    .find(|(_, c)| *c == code)
                    .map_or("?", |(n, _)| n);
                f.write_str(name)
            }
        }
    }
}

/// Why a `[keys]` entry was refused; `action` is the entry's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeymapError {
    pub action: String,
    pub message: String,
}

/// Keys to actions, and back for help.
#[derive(Debug, Clone)]
pub struct Keymap {
    by_key: HashMap<Key, Action>,
    by_action: BTreeMap<Action, Vec<Key>>,
}

impl Default for Keymap {
    fn default() -> Self {
        // NOTE: the defaults parse (a test checks it); an empty override table cannot fail.
        Keymap::from_config(&BTreeMap::new()).unwrap_or(Keymap {
            by_key: HashMap::new(),
            by_action: BTreeMap::new(),
        })
    }
}

impl Keymap {
    /// The default keys with the user's `[keys]` table applied.
    pub fn from_config(overrides: &BTreeMap<String, String>) -> Result<Keymap, KeymapError> {
        let mut configured: BTreeMap<Action, Vec<Key>> = BTreeMap::new();
        let mut owner: HashMap<Key, Action> = HashMap::new();
        for (name, value) in overrides {
            let err = |message: String| KeymapError {
                action: name.clone(),
                message,
            };
            let action =
                Action::from_name(name).ok_or_else(|| err(format!("unknown action `{name}`")))?;
            let mut keys = Vec::new();
            for word in value.split_whitespace() {
                let key = Key::parse(word).ok_or_else(|| {
                    err(format!(
                        "cannot read the key `{}`: use a character, a name such as Down or \
                         PageUp, or C-/A- in front for Ctrl/Alt",
                        crate::sanitize::line(word)
                    ))
                })?;
                if let Some(other) = owner.get(&key).filter(|a| **a != action) {
                    return Err(err(format!(
                        "the key `{key}` is also bound to `{}`",
                        other.as_str()
                    )));
                }
                owner.insert(key, action);
                keys.push(key);
            }
            if keys.is_empty() {
                return Err(err("no key given: write at least one key".into()));
            }
            configured.insert(action, keys);
        }
        let mut by_action = BTreeMap::new();
        for (action, _, _, defaults) in TABLE {
            let keys = match configured.get(action) {
                Some(keys) => keys.clone(),
                None => defaults
                    .iter()
                    .filter_map(|k| Key::parse(k))
                    .filter(|k| !owner.contains_key(k))
                    .collect(),
            };
            by_action.insert(*action, keys);
        }
        let by_key = by_action
            .iter()
            .flat_map(|(a, keys)| keys.iter().map(move |k| (*k, *a)))
            .collect();
        Ok(Keymap { by_key, by_action })
    }

    /// The action bound to a key event, if any.
    pub fn action(&self, ev: &KeyEvent) -> Option<Action> {
        // NOTE: Shift is ignored: terminals differ in whether it comes with an upper-case
        // letter, and the letter already says it.
        self.by_key.get(&Key::from_event(ev)).copied()
    }

    /// The keys bound to `action`, for help and hints.
    pub fn keys(&self, action: Action) -> &[Key] {
        self.by_action.get(&action).map_or(&[], Vec::as_slice)
    }

    /// `j/Down`: the keys of an action as one short string.
    pub fn keys_text(&self, action: Action) -> String {
        let keys: Vec<String> = self.keys(action).iter().map(Key::to_string).collect();
        if keys.is_empty() {
            "(unbound)".into()
        } else {
            keys.join("/")
        }
    }

    /// (keys, action name, description) for every action, in help order.
    pub fn help_rows(&self) -> Vec<(String, &'static str, &'static str)> {
        Action::all()
            .map(|a| (self.keys_text(a), a.as_str(), a.description()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, modifiers)
    }

    #[test]
    fn every_action_is_in_the_table_and_defaults_parse() {
        let all = [
            Action::Down,
            Action::Up,
            Action::PageDown,
            Action::PageUp,
            Action::Top,
            Action::Bottom,
            Action::Open,
            Action::Quit,
            Action::Back,
            Action::NextPane,
            Action::Search,
            Action::NextMatch,
            Action::PrevMatch,
            Action::Flag,
            Action::ToggleRead,
            Action::Delete,
            Action::Move,
            Action::Attachments,
            Action::Threads,
            Action::ExpandThread,
            Action::Sync,
            Action::Undo,
            Action::AddAccount,
            Action::Help,
        ];
        assert_eq!(Action::all().count(), all.len());
        for a in all {
            assert_eq!(Action::from_name(a.as_str()), Some(a));
        }
        for (_, _, _, keys) in TABLE {
            for k in *keys {
                assert!(Key::parse(k).is_some(), "{k}");
            }
        }
        let map = Keymap::default();
        assert_eq!(map.keys_text(Action::Down), "j/Down");
        assert_eq!(
            map.action(&ev(KeyCode::Char('G'), KeyModifiers::SHIFT)),
            Some(Action::Bottom)
        );
        assert_eq!(
            map.action(&ev(KeyCode::Char('f'), KeyModifiers::CONTROL)),
            Some(Action::PageDown)
        );
        assert_eq!(
            map.action(&ev(KeyCode::Char('x'), KeyModifiers::NONE)),
            None
        );
    }

    #[test]
    fn docs_keys_md_lists_every_action_with_its_default_keys() {
        let doc = include_str!("../../docs/keys.md");
        for (_, name, _, keys) in TABLE {
            let row = doc
                .lines()
                .find(|l| l.contains(&format!("| `{name}` |")))
                .unwrap_or_else(|| panic!("docs/keys.md has no row for {name}"));
            for k in *keys {
                assert!(
                    row.contains(&format!("`{k}`")),
                    "{name}: {k} missing in {row}"
                );
            }
        }
    }

    #[test]
    fn keys_parse_and_print_back() {
        for text in [
            "j", "G", "?", "C-n", "A-Down", "F5", "Space", "PageDown", "BackTab",
        ] {
            let key = Key::parse(text).unwrap();
            assert_eq!(key.to_string(), text);
        }
        assert_eq!(Key::parse("pagedown"), Key::parse("PageDown"));
        assert_eq!(Key::parse("C-N"), Key::parse("C-n"));
        for bad in ["", "C-", "Hyper-k", "F13", "jk", "\u{1b}"] {
            assert!(Key::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn overrides_replace_defaults_and_steal_keys() {
        let mut o = BTreeMap::new();
        o.insert("flag".to_string(), "d".to_string());
        o.insert("down".to_string(), "C-n Down".to_string());
        let map = Keymap::from_config(&o).unwrap();
        assert_eq!(
            map.action(&ev(KeyCode::Char('d'), KeyModifiers::NONE)),
            Some(Action::Flag)
        );
        assert_eq!(map.keys_text(Action::Delete), "(unbound)");
        assert_eq!(
            map.action(&ev(KeyCode::Char('j'), KeyModifiers::NONE)),
            None
        );
        assert_eq!(
            map.action(&ev(KeyCode::Char('n'), KeyModifiers::CONTROL)),
            Some(Action::Down)
        );
        assert_eq!(map.keys_text(Action::Flag), "d");
    }

    #[test]
    fn bad_overrides_name_the_action() {
        let mut o = BTreeMap::new();
        o.insert("nope".to_string(), "x".to_string());
        assert_eq!(Keymap::from_config(&o).unwrap_err().action, "nope");
        let mut o = BTreeMap::new();
        o.insert("up".to_string(), "   ".to_string());
        assert!(
            Keymap::from_config(&o)
                .unwrap_err()
                .message
                .contains("no key")
        );
    }
}
