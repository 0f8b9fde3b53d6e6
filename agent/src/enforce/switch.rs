//! `aiwatch enforcement on|off|status`: the global kill switch.
//!
//! The switch is a file under `state_dir`, so it survives a restart of the
//! agent: a host switched off stays off until someone switches it on. The
//! command then sends SIGHUP to the agent of that `state_dir` (its pid is in
//! `aiwatch.pid` there), which re-reads the switch and clears (or sets) the
//! kernel's `ENFORCE_ON` slot. Agents of other state directories are left
//! alone.

use std::{path::Path, process::ExitCode};

use super::config::{PID_FILE, SWITCH_OFF_FILE};

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
    let signalled = signal_agent(state_dir);
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

/// Sends SIGHUP to the agent whose pid `<state_dir>/aiwatch.pid` holds, if
/// it is still an `aiwatch` process. Returns how many were told (0 or 1).
fn signal_agent(state_dir: &Path) -> usize {
    let Ok(text) = std::fs::read_to_string(state_dir.join(PID_FILE)) else {
        return 0;
    };
    let Ok(pid) = text.trim().parse::<i32>() else {
        return 0;
    };
    let is_aiwatch = std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|cmdline| cmdline.split(|b| *b == 0).any(|arg| arg == b"run"))
        && std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| {
            exe.file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("aiwatch"))
        });
    // SAFETY: kill(2) with a plain pid and signal.
    usize::from(pid > 1 && is_aiwatch && unsafe { libc::kill(pid, libc::SIGHUP) } == 0)
}
