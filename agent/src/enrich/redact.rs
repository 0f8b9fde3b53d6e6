//! Redaction of credentials in command lines, before anything leaves the
//! agent.
//!
//! argv is where secrets leak most: `--password=…`, `HF_TOKEN=… python`,
//! `curl -H 'Authorization: Bearer …'`, `git clone https://user:pass@…`.
//! The enricher redacts a process's argv once, when the process enters the
//! process table, so every event, alert, summary, sink and inventory entry
//! built from it carries the redacted value; `replay` redacts the events it
//! reads. The key name stays, only the value becomes `[redacted]`, so rules
//! and readers still see *that* a password was passed.
//!
//! What is recognised (docs/security.md lists it for operators):
//! - `key=value` anywhere in an argument, when the key's last word names a
//!   secret (`--password=`, `DB_PASS=`, `HF_TOKEN=`, `OPENAI_API_KEY=`,
//!   `?access_token=` in a URL). `--max-tokens=`, `--tokenizer=` and
//!   `--token-file=` are left alone: their value is not the secret;
//! - the same flags with the value in the next argument (`--password x`);
//! - short password flags of known clients (`sshpass -p x`, `mysql -px`,
//!   `redis-cli -a x`): `-p` means a password only to some programs;
//! - credentials in URLs (`scheme://user:[redacted]@host`) and
//!   `Bearer`/`Basic` authorisation values;
//! - well-known key formats (AWS access key ids, GitHub, OpenAI and
//!   Anthropic, Hugging Face and Slack tokens, PEM private-key blocks), kept
//!   as their prefix: `ghp_[redacted]`;
//! - the configuration's own patterns (`redact.patterns`).

use regex::{Captures, Regex};
use serde::Deserialize;

use crate::event::{Argv, Event};

/// What replaces a secret value.
pub const REDACTED: &str = "[redacted]";

/// `redact:` in the configuration.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct RedactConfig {
    /// Extra regular expressions. With a capture group named `value`, only
    /// that group is replaced; otherwise the whole match.
    pub patterns: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("redact.patterns: `{pattern}` is not a valid regular expression: {reason}")]
pub struct RedactError {
    pattern: String,
    reason: String,
}

/// Words that, as the last word of a key, make its value a secret.
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "pass",
    "pwd",
    "secret",
    "token",
    "apikey",
    "credential",
    "credentials",
    "authorization",
];

/// `key` as a last word is a secret after one of these (`API_KEY`,
/// `--access-key`, `secret_key`), not alone (`--sort-key`).
const KEY_QUALIFIERS: &[&str] = &[
    "api",
    "access",
    "secret",
    "private",
    "signing",
    "encryption",
    "master",
    "auth",
];

/// Programs whose short flag takes a password: (program, flag, the value
/// may follow in the next argument).
const SHORT_PASSWORD_FLAGS: &[(&str, &str, bool)] = &[
    ("sshpass", "-p", true),
    ("mysql", "-p", false),
    ("mysqldump", "-p", false),
    ("mysqladmin", "-p", false),
    ("mariadb", "-p", false),
    ("mariadb-dump", "-p", false),
    ("redis-cli", "-a", true),
    ("valkey-cli", "-a", true),
];

/// Redacts argv. Cheap to share: the expressions are compiled once.
#[derive(Clone, Debug)]
pub struct Redactor {
    assignment: Regex,
    url_userinfo: Regex,
    auth_scheme: Regex,
    private_key: Regex,
    /// Tokens recognised by their shape; the first group is kept.
    token_formats: Vec<Regex>,
    custom: Vec<Regex>,
}

impl Default for Redactor {
    fn default() -> Self {
        Redactor::new(&RedactConfig::default()).expect("the built-in patterns compile")
    }
}

impl Redactor {
    pub fn new(config: &RedactConfig) -> Result<Redactor, RedactError> {
        let builtin = |re: &str| Regex::new(re).expect("built-in pattern");
        let custom = config
            .patterns
            .iter()
            .map(|pattern| {
                Regex::new(pattern).map_err(|err| RedactError {
                    pattern: pattern.clone(),
                    reason: err
                        .to_string()
                        .lines()
                        .last()
                        .unwrap_or("")
                        .trim()
                        .to_owned(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Redactor {
            assignment: builtin(r"([A-Za-z0-9_.\-]+)=([^\s&;'\x22]+)"),
            url_userinfo: builtin(r"([A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*):([^@/\s]+)@"),
            auth_scheme: builtin(
                r"\b((?i:bearer)|Basic|(?i:authorization:\s*token))(\s+)[A-Za-z0-9._~+/=\-]{8,}",
            ),
            private_key: builtin(
                r"(-----BEGIN [A-Z ]*PRIVATE KEY-----)(?s:.*?)(-----END [A-Z ]*PRIVATE KEY-----|\z)",
            ),
            token_formats: [
                r"\b((?:AKIA|ASIA|ABIA|ACCA))[0-9A-Z]{16}\b",
                r"\b(gh[pousr]_)[A-Za-z0-9]{30,255}\b",
                r"\b(github_pat_)[A-Za-z0-9_]{22,255}",
                r"\b(sk-(?:ant-|proj-|svcacct-|admin-)?)[A-Za-z0-9_\-]{20,}",
                r"\b(hf_)[A-Za-z0-9]{30,}\b",
                r"\b(xox[abposr]-)[A-Za-z0-9\-]{10,}",
                r"(https://hooks\.slack\.com/services/)[A-Za-z0-9/]+",
            ]
            .into_iter()
            .map(builtin)
            .collect(),
            custom,
        })
    }

    /// Redacts an argument list in place. `true` when anything changed.
    pub fn redact_argv(&self, argv: &mut [String]) -> bool {
        let program = argv
            .first()
            .map(|a| a.rsplit('/').next().unwrap_or(a).to_owned())
            .unwrap_or_default();
        let short_flags: Vec<(&str, bool)> = SHORT_PASSWORD_FLAGS
            .iter()
            .filter(|(name, _, _)| *name == program)
            .map(|(_, flag, separate)| (*flag, *separate))
            .collect();
        let mut changed = false;
        let mut value_follows = false;
        for arg in argv.iter_mut().skip(1) {
            if value_follows {
                value_follows = false;
                if !arg.starts_with('-') || arg.len() == 1 {
                    *arg = REDACTED.to_owned();
                    changed = true;
                    continue;
                }
            }
            if let Some(&(flag, separate)) =
                short_flags.iter().find(|(flag, _)| arg.starts_with(flag))
            {
                if arg.len() > flag.len() {
                    *arg = format!("{flag}{REDACTED}");
                    changed = true;
                    continue;
                }
                value_follows = separate;
                continue;
            }
            if arg.starts_with('-') && !arg.contains('=') && is_secret_key(arg) {
                value_follows = true;
                continue;
            }
            if let Some(redacted) = self.redact_text(arg) {
                *arg = redacted;
                changed = true;
            }
        }
        changed
    }

    /// Redacts the argv of an event's process and parent (for `replay`,
    /// which reads events written by any version).
    pub fn redact_event(&self, event: &mut Event) {
        self.redact_shared_argv(&mut event.process.argv);
        if let Some(parent) = &mut event.parent {
            self.redact_shared_argv(&mut parent.argv);
        }
    }

    /// [`Self::redact_argv`] on a shared argv: in place when nobody else
    /// holds it (a process table entry being made), else in a copy that
    /// replaces it only if something was redacted.
    pub fn redact_shared_argv(&self, argv: &mut Argv) {
        if let Some(args) = std::sync::Arc::get_mut(argv) {
            self.redact_argv(args);
            return;
        }
        let mut copy = argv.to_vec();
        if self.redact_argv(&mut copy) {
            *argv = copy.into();
        }
    }

    /// A text (a prompt, an answer, tool-call arguments) with every
    /// recognised secret replaced.
    pub fn redact_str(&self, text: &str) -> String {
        self.redact_text(text).unwrap_or_else(|| text.to_owned())
    }

    /// One argument's text with every recognised secret replaced, or `None`
    /// when it holds none.
    fn redact_text(&self, text: &str) -> Option<String> {
        let mut out = std::borrow::Cow::Borrowed(text);
        let mut replace = |re: &Regex, with: &dyn Fn(&Captures) -> String| {
            if re.is_match(&out) {
                let next = re.replace_all(&out, |c: &Captures| with(c)).into_owned();
                out = std::borrow::Cow::Owned(next);
            }
        };
        replace(&self.private_key, &|c| format!("{}{REDACTED}", &c[1]));
        replace(&self.url_userinfo, &|c| format!("{}:{REDACTED}@", &c[1]));
        replace(&self.assignment, &|c| {
            if is_secret_key(&c[1]) && c[2] != *REDACTED {
                format!("{}={REDACTED}", &c[1])
            } else {
                c[0].to_owned()
            }
        });
        replace(&self.auth_scheme, &|c| {
            format!("{}{}{REDACTED}", &c[1], &c[2])
        });
        for format in &self.token_formats {
            replace(format, &|c| format!("{}{REDACTED}", &c[1]));
        }
        for pattern in &self.custom {
            replace(pattern, &|c| match c.name("value") {
                Some(value) => {
                    let whole = c.get(0).expect("group 0");
                    let start = value.start() - whole.start();
                    let end = value.end() - whole.start();
                    format!(
                        "{}{REDACTED}{}",
                        &whole.as_str()[..start],
                        &whole.as_str()[end..]
                    )
                }
                None => REDACTED.to_owned(),
            });
        }
        match out {
            std::borrow::Cow::Borrowed(_) => None,
            std::borrow::Cow::Owned(redacted) => (redacted != text).then_some(redacted),
        }
    }
}

/// Whether a key (`--db-password`, `HF_TOKEN`, `api.key`) names a secret:
/// its last word is a secret word, or `key` after a qualifier.
fn is_secret_key(key: &str) -> bool {
    let words: Vec<String> = split_words(key.trim_start_matches('-'));
    let Some(last) = words.last() else {
        return false;
    };
    if SECRET_WORDS.contains(&last.as_str()) {
        // `PWD=` is the shell's working directory, not a password.
        return !(last == "pwd" && words.len() == 1);
    }
    if last == "key" && words.len() >= 2 {
        return KEY_QUALIFIERS.contains(&words[words.len() - 2].as_str());
    }
    false
}

/// Lower-case words of a key: split on `-`, `_`, `.` and camel case.
fn split_words(key: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut previous_lower = false;
    for ch in key.chars() {
        if matches!(ch, '-' | '_' | '.') {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            previous_lower = false;
            continue;
        }
        if ch.is_ascii_uppercase() && previous_lower && !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        previous_lower = ch.is_ascii_lowercase() || ch.is_ascii_digit();
        current.push(ch.to_ascii_lowercase());
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

#[cfg(test)]
#[path = "redact_tests.rs"]
mod tests;
