//! `aiwatch enforcement on|off|status`: the global kill switch.
//!
//! The switch is a file under `state_dir`, so it survives a restart of the
//! agent: a host switched off stays off until someone switches it on. The
//! command then sends SIGHUP to every running `aiwatch run`, which re-reads
//! the switch and clears (or sets) the kernel's `ENFORCE_ON` slot.

use std::{path::Path, process::ExitCode};

use super::config::SWITCH_OFF_FILE;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwitchCommand {
    On,
    Off,
    Status,
}

pub fn switch_command(state_dir: &Path, command: SwitchCommand) -> ExitCode {
    let file = state_dir.join(SWITCH_OFF_FILE);
    let result = match command {
        SwitchCommand::Status => {
            println!(
                "enforcement is {}",
                if file.exists() {
                    "switched off"
                } else {
                    "not switched off"
                }
            );
            return ExitCode::SUCCESS;
        }
        SwitchCommand::Off => std::fs::create_dir_all(state_dir)
            .and_then(|()| std::fs::write(&file, b"switched off by `aiwatch enforcement off`\n")),
        SwitchCommand::On => match std::fs::remove_file(&file) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        },
    };
    if let Err(err) = result {
        eprintln!(
            "cannot switch enforcement {:?} at {}: {err}",
            command,
            file.display()
        );
        return ExitCode::FAILURE;
    }
    let signalled = signal_agents();
    println!(
        "enforcement switched {}; {signalled} running agent(s) told with SIGHUP",
        if command == SwitchCommand::Off {
            "off"
        } else {
            "on"
        }
    );
    ExitCode::SUCCESS
}

/// Sends SIGHUP to every `aiwatch run` process running this executable.
fn signal_agents() -> usize {
    let Ok(me) = std::env::current_exe() else {
        return 0;
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut signalled = 0;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if pid as u32 == std::process::id() {
            continue;
        }
        let same_exe = std::fs::read_link(entry.path().join("exe")).is_ok_and(|exe| exe == me);
        let runs = std::fs::read(entry.path().join("cmdline"))
            .is_ok_and(|cmdline| cmdline.split(|b| *b == 0).any(|arg| arg == b"run"));
        // SAFETY: kill(2) with a plain pid and signal.
        if same_exe && runs && unsafe { libc::kill(pid, libc::SIGHUP) } == 0 {
            signalled += 1;
        }
    }
    signalled
}
