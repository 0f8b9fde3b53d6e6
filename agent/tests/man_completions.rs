//! The man pages and shell completions that `cargo xtask build` leaves next
//! to the binary come from `aiwatch man --dir` and `aiwatch completions`:
//! every command has its page and its completion.

use std::{path::Path, process::Command};

use clap::CommandFactory;

fn aiwatch() -> Command {
    Command::new(env!("CARGO_BIN_EXE_aiwatch"))
}

/// Every command path under `aiwatch`, as words (`["profile", "list"]`).
fn commands(command: &clap::Command, path: &[String], out: &mut Vec<Vec<String>>) {
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        let mut words = path.to_vec();
        words.push(sub.get_name().to_owned());
        out.push(words.clone());
        commands(sub, &words, out);
    }
}

fn every_command() -> Vec<Vec<String>> {
    let mut out = Vec::new();
    commands(&aiwatch::app::cli::Cli::command(), &[], &mut out);
    assert!(out.len() > 10, "{out:?}");
    out
}

#[test]
fn the_man_page_names_every_subcommand_and_each_has_its_own_page() {
    let dir = tempfile::tempdir().unwrap();
    let status = aiwatch()
        .args(["man", "--dir"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let main = std::fs::read_to_string(dir.path().join("aiwatch.1")).unwrap();
    assert!(
        main.starts_with(".ie") || main.contains(".TH aiwatch"),
        "{main}"
    );
    for words in every_command() {
        if words.len() == 1 {
            assert!(
                main.contains(&format!("aiwatch\\-{}(1)", words[0])),
                "aiwatch.1 names `{}`",
                words[0]
            );
        }
        let page = dir.path().join(format!("aiwatch-{}.1", words.join("-")));
        let text =
            std::fs::read_to_string(&page).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
        assert!(text.contains(".SH SYNOPSIS"), "{}", page.display());
    }
    // Printed to stdout, the top page is the same.
    let out = aiwatch().arg("man").output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), main);
}

#[test]
fn completions_know_every_subcommand_in_bash_zsh_and_fish() {
    for shell in ["bash", "zsh", "fish"] {
        let out = aiwatch().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        for words in every_command() {
            let name = words.last().unwrap();
            assert!(
                script.contains(name.as_str()),
                "{shell} completes `{}`",
                words.join(" ")
            );
        }
    }
    let refused = aiwatch().args(["completions", "tcsh"]).output().unwrap();
    assert!(!refused.status.success());
}

#[test]
fn the_build_step_files_exist_when_xtask_has_run() {
    // `cargo xtask build` writes these next to the binary; a plain `cargo
    // test` may run before it, and then there is nothing to check yet.
    let binary = Path::new(env!("CARGO_BIN_EXE_aiwatch"));
    let folder = binary.parent().unwrap();
    let man = folder.join("man/aiwatch.1");
    if !man.exists() {
        println!("skipped: the_build_step_files_exist_when_xtask_has_run: no {} (cargo xtask build has not run)", man.display());
        return;
    }
    for file in [
        "completions/aiwatch.bash",
        "completions/_aiwatch",
        "completions/aiwatch.fish",
    ] {
        let path = folder.join(file);
        assert!(
            std::fs::metadata(&path).is_ok_and(|m| m.len() > 0),
            "{}",
            path.display()
        );
    }
}
