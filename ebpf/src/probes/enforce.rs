//! Enforcement in the kernel: the exec kill, the open kill, and the
//! decisions the BPF LSM programs (`probes/lsm.rs`) refuse on.
//!
//! At `sched:sched_process_exec` the new image is mapped but has not run a
//! single user instruction; a SIGKILL sent from here (`bpf_send_signal`
//! signals the whole thread group) is delivered on the way back to user
//! space, so the program never starts. The decision is a map lookup on the
//! identity of `mm->exe_file` (device and inode, see `ExeKey`): names and
//! argv are never matched.
//!
//! Safety rails, all tested here before any kill: the global switch
//! (`ENFORCE_CONTROL[ENFORCE_ON]`), the agent itself and pid 1, tasks
//! without an `mm` (kernel threads), executables on the never-touch list,
//! and a per-cgroup kill budget. A spent budget turns this cgroup's kills
//! into reports (`EXEC_FLAG_KILL_RATE_LIMITED`) until its window ends, so a
//! bad rule or an attacker looping on kills in one cgroup cannot take the
//! host down nor switch enforcement off for anyone else.
//!
//! The maps are this agent's own: when the agent stops, the programs and
//! their maps go with it and nothing is enforced (fail-open).

use aiwatch_common::{
    enforce_slot, ExeKey, ExecAllowKey, KillBudget, OpenAllowKey, ENFORCE_CONTROL_LEN,
    ENFORCE_KILL_BUDGET, ENFORCE_KILL_WINDOW_NS, ENFORCE_ON, ENFORCE_PROTECTED,
    ENFORCE_REFUSE_ONLY, EXEC_FLAG_KILLED, EXEC_FLAG_KILL_RATE_LIMITED, FILE_FLAG_KILLED,
    FILE_FLAG_KILL_RATE_LIMITED,
};
use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_ktime_get_boot_ns, bpf_send_signal},
    macros::map,
    maps::{Array, HashMap, LruHashMap},
};

use crate::{
    emit::current_tgid,
    globals::{agent_pid, offset},
    kernel::{self, read, read_ptr},
    maps::enforcement_scope,
};

/// Executables killed at exec while enforcement is on (value: the rule's
/// slot, with `ENFORCE_REFUSE_ONLY` for a `deny` rule the LSM refuses).
#[map]
static EXEC_DENY: HashMap<ExeKey, u32> = HashMap::with_max_entries(4096, 0);

/// Workloads held to an exec allowlist (key: the enforcement scope; value:
/// the rule's slot). A process of such a workload whose new executable is
/// not in `EXEC_ALLOW` for its scope is killed at exec.
#[map]
static EXEC_ALLOW_SCOPES: HashMap<u32, u32> = HashMap::with_max_entries(1024, 0);

/// What each allowlisted workload may run.
#[map]
static EXEC_ALLOW: HashMap<ExecAllowKey, u32> = HashMap::with_max_entries(16384, 0);

/// Executables never killed, whatever a rule says.
#[map]
static NEVER_TOUCH: HashMap<ExeKey, u32> = HashMap::with_max_entries(256, 0);

/// Files a rule protects, by device and inode (value: the rule's slot,
/// with `ENFORCE_REFUSE_ONLY` for a `deny` rule the LSM refuses).
#[map]
static PROTECTED_FILES: HashMap<ExeKey, u32> = HashMap::with_max_entries(4096, 0);

/// Executables allowed to open a rule's protected files.
#[map]
static OPEN_ALLOW: HashMap<OpenAllowKey, u32> = HashMap::with_max_entries(4096, 0);

/// The switch and the kill budget (`ENFORCE_*` slots).
#[map]
static ENFORCE_CONTROL: Array<u64> = Array::with_max_entries(ENFORCE_CONTROL_LEN, 0);

/// Kills per cgroup in the current window.
#[map]
static KILL_BUDGETS: LruHashMap<u64, KillBudget> = LruHashMap::with_max_entries(4096, 0);

const SIGKILL: u32 = 9;

#[inline(always)]
pub fn control(slot: u32) -> u64 {
    ENFORCE_CONTROL.get(slot).copied().unwrap_or(0)
}

/// Decides whether the process that just exec'd dies before it runs, and
/// kills it if so. Returns the `EXEC_FLAG_*` bits for its exec record.
#[inline(always)]
pub fn exec_verdict(task: *const u8, tgid: u32) -> u16 {
    if !may_act(tgid) {
        return 0;
    }
    let mm = kernel::mm(task);
    if mm.is_null() {
        return 0;
    }
    let Some(exe) = exe_key(mm) else {
        return 0;
    };
    match exec_denied(&exe) {
        Some(value) if value & ENFORCE_REFUSE_ONLY == 0 => {
            kill(EXEC_FLAG_KILLED, EXEC_FLAG_KILL_RATE_LIMITED)
        }
        Some(_) => 0,
        None if outside_exec_allowlist(tgid, &exe) => {
            kill(EXEC_FLAG_KILLED, EXEC_FLAG_KILL_RATE_LIMITED)
        }
        None => 0,
    }
}

/// Whether the process's workload is held to an exec allowlist that does
/// not list `exe` (and the never-touch list does not spare it). The scope
/// was inherited at fork, in the kernel, so a child exec'd before the
/// agent saw its fork is held all the same.
#[inline(always)]
fn outside_exec_allowlist(tgid: u32, exe: &ExeKey) -> bool {
    let scope = u32::from(enforcement_scope(tgid));
    // SAFETY: hash lookups; the values are only tested for presence.
    if scope == 0 || unsafe { EXEC_ALLOW_SCOPES.get(&scope) }.is_none() {
        return false;
    }
    let allowed = ExecAllowKey {
        scope,
        _pad: 0,
        exe: *exe,
    };
    // SAFETY: as above.
    unsafe { EXEC_ALLOW.get(&allowed) }.is_none() && unsafe { NEVER_TOUCH.get(exe) }.is_none()
}

/// The `EXEC_DENY` value of an executable about to run or just mapped,
/// unless the never-touch list spares it.
#[inline(always)]
pub fn exec_denied(exe: &ExeKey) -> Option<u32> {
    // SAFETY: hash lookups; the value is copied out at once.
    let value = unsafe { EXEC_DENY.get(exe) }.copied()?;
    // SAFETY: as above; only presence is tested.
    if unsafe { NEVER_TOUCH.get(exe) }.is_some() {
        return None;
    }
    Some(value)
}

/// Whether the current process may be acted on at all: enforcement is on,
/// and it is neither the agent nor pid 1.
#[inline(always)]
pub fn may_act(tgid: u32) -> bool {
    control(ENFORCE_ON) != 0 && tgid != agent_pid() && tgid != 1
}

/// Kills the current thread group if the cgroup's budget allows: `killed`
/// when the signal was sent, `limited` when the budget is spent.
#[inline(always)]
pub fn kill(killed: u16, limited: u16) -> u16 {
    if !take_kill() {
        return limited;
    }
    // SAFETY: signals the current thread group; no pointer is involved.
    if unsafe { bpf_send_signal(SIGKILL) } == 0 {
        killed
    } else {
        0
    }
}

/// Decides whether the process that just opened `inode` dies before it
/// returns to user space holding the descriptor, and kills it if so.
/// Returns the `FILE_FLAG_*` bits for its open record.
#[inline(always)]
pub fn open_verdict(inode: *const u8) -> u16 {
    match open_refused(inode) {
        Some(value) if value & ENFORCE_REFUSE_ONLY == 0 => {
            kill(FILE_FLAG_KILLED, FILE_FLAG_KILL_RATE_LIMITED)
        }
        _ => 0,
    }
}

/// The `PROTECTED_FILES` value of `inode` when the current process may not
/// open it: enforcement is on, the file is protected, and neither the
/// rule's allowed executables, the never-touch list nor the rails (the
/// agent, pid 1, kernel threads) spare the opener.
#[inline(always)]
pub fn open_refused(inode: *const u8) -> Option<u32> {
    if !may_act(current_tgid()) {
        return None;
    }
    let file = inode_key(inode)?;
    // SAFETY: a hash lookup; the value is copied out at once.
    let value = (unsafe { PROTECTED_FILES.get(&file) }).copied()?;
    let mm = kernel::mm(kernel::current_task());
    if mm.is_null() {
        return None;
    }
    let exe = exe_key(mm)?;
    let allowed = OpenAllowKey {
        slot: enforce_slot(value),
        _pad: 0,
        exe,
    };
    // SAFETY: hash lookups; the values are only tested for presence.
    if unsafe { OPEN_ALLOW.get(&allowed) }.is_some() || unsafe { NEVER_TOUCH.get(&exe) }.is_some() {
        return None;
    }
    Some(value)
}

/// Whether any file may be protected: while not, [`protected`] is false
/// for every file and need not be asked.
#[inline(always)]
pub fn any_protected() -> bool {
    control(ENFORCE_PROTECTED) != 0
}

/// Whether a rule protects the file `file` (by device and inode): its
/// opens are then decided by `open_verdict`, never folded away unseen.
#[inline(always)]
pub fn protected(file: &ExeKey) -> bool {
    // SAFETY: a hash lookup; only the entry's presence is used.
    unsafe { PROTECTED_FILES.get(file) }.is_some()
}

/// The device and inode of `inode`.
#[inline(always)]
pub fn inode_key(inode: *const u8) -> Option<ExeKey> {
    let ino = read::<u64>(inode, offset!(inode_i_ino)).ok()?;
    let sb = read_ptr(inode, offset!(inode_i_sb));
    let dev = read::<u32>(sb, offset!(super_block_s_dev)).ok()?;
    Some(ExeKey { dev, _pad: 0, ino })
}

/// The device and inode of `mm->exe_file`.
#[inline(always)]
pub fn exe_key(mm: *const u8) -> Option<ExeKey> {
    // Every read is a checked copy (`kernel::read`).
    let exe_file = read_ptr(mm, offset!(mm_exe_file));
    let inode = read_ptr(exe_file, offset!(file_f_inode));
    let ino = read::<u64>(inode, offset!(inode_i_ino)).ok()?;
    let sb = read_ptr(inode, offset!(inode_i_sb));
    let dev = read::<u32>(sb, offset!(super_block_s_dev)).ok()?;
    Some(ExeKey { dev, _pad: 0, ino })
}

/// Takes one kill from the current cgroup's budget; false when it is spent.
/// Concurrent execs in one cgroup on several CPUs may overshoot the budget
/// by a few: it bounds a runaway, it is not an exact count.
#[inline(always)]
fn take_kill() -> bool {
    let budget = control(ENFORCE_KILL_BUDGET);
    if budget == 0 {
        return true;
    }
    let window = control(ENFORCE_KILL_WINDOW_NS);
    // SAFETY: helpers without pointer arguments.
    let (now, cgroup) = unsafe { (bpf_ktime_get_boot_ns(), bpf_get_current_cgroup_id()) };
    match KILL_BUDGETS.get_ptr_mut(&cgroup) {
        // SAFETY: a map value, valid for this program run.
        Some(entry) => unsafe {
            if now.wrapping_sub((*entry).window_start_ns) >= window {
                (*entry).window_start_ns = now;
                (*entry).kills = 0;
            }
            if (*entry).kills >= budget {
                return false;
            }
            (*entry).kills += 1;
            true
        },
        None => {
            let fresh = KillBudget {
                window_start_ns: now,
                kills: 1,
            };
            let _ = KILL_BUDGETS.insert(&cgroup, &fresh, 0);
            true
        }
    }
}
