//! The command lines the documentation shows exist: every `aiwatch ...` in
//! a code span or code block of `README.md` and `docs/*.md` names real
//! subcommands (alternatives written `a | b` included) and real long flags.

use std::path::{Path, PathBuf};

use aiwatch::app::cli::Cli;
use clap::CommandFactory;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_owned()
}

/// The code of a Markdown text: fenced blocks line by line, and inline code
/// spans (which may wrap across lines) as one line each.
fn code_of(markdown: &str) -> Vec<String> {
    let mut code = Vec::new();
    let mut prose = String::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            code.push(line.to_owned());
        } else {
            prose.push_str(line);
            prose.push('\n');
        }
    }
    // Inline spans: text between pairs of single backticks.
    let mut spans = prose.split('`');
    spans.next();
    while let Some(span) = spans.next() {
        code.push(span.replace('\n', " "));
        spans.next();
    }
    code
}

/// The problems of one `aiwatch ...` command line (`words` after `aiwatch`).
fn check_command(words: &[&str]) -> Vec<String> {
    let root = Cli::command();
    let mut problems = Vec::new();
    // `parent` is where an alternative after `|` is looked up.
    let mut parent = root.clone();
    let mut current = root.clone();
    let mut want_subcommand = true;
    for word in words {
        let word = word.trim_matches(|c: char| matches!(c, ',' | '.' | ';' | ':' | ')' | '('));
        if word.is_empty() {
            continue;
        }
        if word == "|" {
            current = parent.clone();
            want_subcommand = true;
            continue;
        }
        if let Some(flag) = word.strip_prefix("--") {
            let flag = flag.split('=').next().unwrap_or("");
            let known = flag.is_empty()
                || flag == "help"
                || flag == "version"
                || current
                    .get_arguments()
                    .chain(root.get_arguments())
                    .any(|arg| arg.get_long() == Some(flag));
            if !known {
                problems.push(format!("`{}` has no flag --{flag}", current.get_name()));
            }
            continue;
        }
        if word.starts_with('-') || word.starts_with('[') || word.starts_with('<') {
            continue;
        }
        if want_subcommand && current.has_subcommands() && word.contains('|') {
            // `list|show|reset`: alternatives written without spaces.
            for alternative in word.split('|').filter(|w| !w.is_empty()) {
                if current.find_subcommand(alternative).is_none() {
                    problems.push(format!(
                        "`{}` has no subcommand `{alternative}`",
                        current.get_name()
                    ));
                }
            }
            want_subcommand = false;
        } else if want_subcommand && current.has_subcommands() {
            match current.find_subcommand(word) {
                Some(sub) => {
                    parent = current.clone();
                    current = sub.clone();
                    want_subcommand = current.has_subcommands();
                }
                None => {
                    problems.push(format!(
                        "`{}` has no subcommand `{word}`",
                        current.get_name()
                    ));
                    want_subcommand = false;
                }
            }
        } else {
            // Arguments of a leaf command.
            want_subcommand = false;
        }
    }
    problems
}

/// Every `aiwatch ...` command line in a piece of code.
fn commands_in(code: &str) -> Vec<Vec<&str>> {
    let words: Vec<&str> = code.split_whitespace().collect();
    let mut commands = Vec::new();
    for (index, word) in words.iter().enumerate() {
        // `cargo test -p aiwatch ...` names the package, not the binary.
        let package = index > 0 && matches!(words[index - 1], "-p" | "--package");
        // `aiwatch ready: ...` and the like are the agent's log lines.
        let log_line = words.get(index + 1).is_some_and(|next| next.ends_with(':'));
        if *word != "aiwatch" || package || log_line {
            continue;
        }
        // A command ends at a shell separator or a comment.
        let rest: Vec<&str> = words[index + 1..]
            .iter()
            .copied()
            .take_while(|w| !matches!(*w, "&&" | "||" | ";" | "#" | ">" | "2>&1"))
            .collect();
        commands.push(rest);
    }
    commands
}

fn documentation() -> Vec<PathBuf> {
    let mut files = vec![repo().join("README.md")];
    let docs = std::fs::read_dir(repo().join("docs")).expect("docs/");
    files.extend(
        docs.flatten()
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "md")),
    );
    files.sort();
    files
}

#[test]
fn every_documented_command_line_exists() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in documentation() {
        let text = std::fs::read_to_string(&file).expect("read documentation");
        for code in code_of(&text) {
            for words in commands_in(&code) {
                checked += 1;
                for problem in check_command(&words) {
                    problems.push(format!(
                        "{}: `aiwatch {}`: {problem}",
                        file.strip_prefix(repo()).unwrap_or(&file).display(),
                        words.join(" ")
                    ));
                }
            }
        }
    }
    assert!(checked >= 20, "only {checked} command lines found");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checker_catches_a_wrong_name() {
    assert!(check_command(&["profile", "mode", "W", "learning"]).is_empty());
    assert!(
        check_command(&["profile", "list", "|", "freeze", "W", "|", "unfreeze", "W"]).is_empty()
    );
    assert_eq!(check_command(&["profile", "set-mode", "W"]).len(), 1);
    assert_eq!(
        check_command(&["profile", "list", "|", "set-mode", "W"]).len(),
        1
    );
    assert_eq!(check_command(&["run", "--no-such-flag"]).len(), 1);
    assert!(check_command(&["profile", "list|show|mode", "..."]).is_empty());
    assert_eq!(check_command(&["profile", "list|set-mode"]).len(), 1);
    assert!(check_command(&["profile", "mode", "W", "learning|enforcing"]).is_empty());
    assert!(check_command(&["run", "--config", "x.yaml"]).is_empty());
}
