//! Where the kernel can enforce on this host, found at start-up from the
//! programs that attached: the exec kill, egress deny and accelerator deny
//! each need their own programs, and a kernel may refuse any of them.
//!
//! What is missing is said once in the log, in `/readyz` detail and in
//! `aiwatch_enforcement_mode{hook}`, and the rules that would need it are
//! placed as not enforced (they report would-kill/would-deny), never
//! silently dropped. Where the BPF LSM programs attach, protected opens and
//! `deny` execs are refused there (EPERM) instead of killed after the fact.

use crate::kernel::loader::ProbeStatus;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnforcementHooks {
    /// `sched_process_exec` (the exec kill).
    pub exec: bool,
    /// `cgroup/connect4` and `connect6`.
    pub connect: bool,
    /// `cgroup/sendmsg4` and `sendmsg6`.
    pub sendmsg: bool,
    /// `cgroup/dev`.
    pub device: bool,
    /// The BPF LSM's `file_open`: protected opens are refused.
    pub lsm_open: bool,
    /// The BPF LSM's `bprm_check_security`: `deny` execs are refused.
    pub lsm_exec: bool,
}

impl Default for EnforcementHooks {
    /// Every hook usable: what a test or replay without a kernel assumes.
    fn default() -> Self {
        EnforcementHooks {
            exec: true,
            connect: true,
            sendmsg: true,
            device: true,
            lsm_open: false,
            lsm_exec: false,
        }
    }
}

impl EnforcementHooks {
    /// From the start-up status of each program.
    pub fn from_probes(probes: &[ProbeStatus]) -> EnforcementHooks {
        let attached = |names: &[&str]| {
            names.iter().all(|name| {
                probes
                    .iter()
                    .any(|probe| probe.probe == *name && probe.attached)
            })
        };
        EnforcementHooks {
            exec: attached(&["sched_process_exec"]),
            connect: attached(&["egress_connect4", "egress_connect6"]),
            sendmsg: attached(&["egress_sendmsg4", "egress_sendmsg6"]),
            device: attached(&["accel_device"]),
            lsm_open: attached(&["lsm_file_open"]),
            lsm_exec: attached(&["lsm_bprm_check_security"]),
        }
    }

    /// Each hook (as `aiwatch_enforcement_mode` labels it) and whether the
    /// kernel can enforce there.
    pub fn list(&self) -> Vec<(&'static str, bool)> {
        vec![
            ("sched_process_exec", self.exec),
            ("cgroup_connect", self.connect),
            ("cgroup_sendmsg", self.sendmsg),
            ("cgroup_device", self.device),
            ("bpf_lsm_file_open", self.lsm_open),
            ("bpf_lsm_bprm_check_security", self.lsm_exec),
        ]
    }

    /// Egress allowlists need both the connect and the send programs: with
    /// one alone, the other path would leak.
    pub fn egress(&self) -> bool {
        self.connect && self.sendmsg
    }

    /// One line for the start-up log.
    pub fn describe(&self) -> String {
        let state = |usable: bool| if usable { "yes" } else { "NOT ATTACHED" };
        format!(
            "enforcement hooks: exec kill at sched_process_exec: {}; egress deny at cgroup/connect: {}, cgroup/sendmsg: {}; accelerator deny at cgroup/dev: {}; BPF LSM: {}",
            state(self.exec),
            state(self.connect),
            state(self.sendmsg),
            state(self.device),
            match (self.lsm_open, self.lsm_exec) {
                (true, true) => "protected opens and deny execs refused at file_open and bprm_check_security",
                (true, false) => "protected opens refused at file_open; bprm_check_security NOT ATTACHED, deny execs are killed at exec",
                (false, true) => "deny execs refused at bprm_check_security; file_open NOT ATTACHED, protected opens are killed at the open's exit",
                (false, false) => "not attached (protected opens are killed at the open's exit, deny execs at exec)",
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(probe: &'static str, attached: bool) -> ProbeStatus {
        ProbeStatus {
            probe,
            attached,
            reason: None,
        }
    }

    #[test]
    fn egress_needs_both_the_connect_and_the_send_programs() {
        let hooks = EnforcementHooks::from_probes(&[
            status("sched_process_exec", true),
            status("egress_connect4", true),
            status("egress_connect6", true),
            status("egress_sendmsg4", true),
            status("egress_sendmsg6", false),
        ]);
        assert!(hooks.exec && hooks.connect);
        assert!(!hooks.sendmsg && !hooks.egress());
        assert!(!hooks.device, "a program never tried is not usable");
        assert!(hooks.describe().contains("cgroup/sendmsg: NOT ATTACHED"));
    }
}
