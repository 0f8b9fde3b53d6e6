//! Enforcement in the kernel: egress deny.
//!
//! `cgroup/connect4`, `connect6`, `sendmsg4` and `sendmsg6` run inside
//! `connect(2)` and inside `sendto`/`sendmsg` with a destination (UDP), for
//! every process of the cgroup v2 hierarchy they are attached to (its
//! root). Returning 0 refuses the call with EPERM before any packet leaves:
//! no SYN, no datagram.
//!
//! A process is concerned only when it has an enforcement scope (its entry
//! in `TRACKED_PIDS`, else its cgroup's in `TRACKED_CGROUPS`) whose egress
//! allowlist is enforced (`EGRESS_SCOPES`). Everybody else costs two array
//! reads and, while anything is tracked, one hash lookup. The destination
//! is looked up in `EGRESS_ALLOW` (an LPM trie over scope, port and
//! address; see `EgressKey`) with its port, then with port 0 (any port).
//!
//! Behind the same global switch as the exec kill (`ENFORCE_ON`); the agent
//! itself is never refused. A refused connect marks the thread's pending
//! connect record (`net::mark_connect_denied`), so its event says the
//! kernel denied it.

use aiwatch_common::{EgressKey, EGRESS_ENFORCED, EGRESS_KEY_FIXED_BITS, ENFORCE_ON};
use aya_ebpf::{
    macros::{cgroup_sock_addr, map},
    maps::{lpm_trie::Key, HashMap, LpmTrie},
    programs::SockAddrContext,
};

use super::{enforce::control, net::mark_connect_denied};
use crate::{
    emit::current_tgid,
    globals::{agent_pid, floor},
    maps::enforcement_scope,
};

/// Destinations each scope may reach (value unused).
#[map]
static EGRESS_ALLOW: LpmTrie<EgressKey, u32> =
    LpmTrie::with_max_entries(16384, aya_ebpf::bindings::BPF_F_NO_PREALLOC);

/// Scopes whose egress allowlist is enforced (`EGRESS_ENFORCED`).
#[map]
static EGRESS_SCOPES: HashMap<u32, u32> = HashMap::with_max_entries(1024, 0);

/// Allow (1) or refuse with EPERM (0), as `cgroup/*` programs return.
const ALLOW: i32 = 1;
const DENY: i32 = 0;

#[cgroup_sock_addr(connect4)]
pub fn egress_connect4(ctx: SockAddrContext) -> i32 {
    decide(&ctx, false, true)
}

#[cgroup_sock_addr(connect6)]
pub fn egress_connect6(ctx: SockAddrContext) -> i32 {
    decide(&ctx, true, true)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn egress_sendmsg4(ctx: SockAddrContext) -> i32 {
    decide(&ctx, false, false)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn egress_sendmsg6(ctx: SockAddrContext) -> i32 {
    decide(&ctx, true, false)
}

#[inline(always)]
fn decide(ctx: &SockAddrContext, v6: bool, connect: bool) -> i32 {
    if floor() || control(ENFORCE_ON) == 0 {
        return ALLOW;
    }
    let tgid = current_tgid();
    if tgid == agent_pid() {
        return ALLOW;
    }
    let scope = enforcement_scope(tgid);
    if scope == 0 {
        return ALLOW;
    }
    // SAFETY: only the presence of the entry is used.
    if !unsafe { EGRESS_SCOPES.get(&u32::from(scope)) }
        .is_some_and(|flags| *flags & EGRESS_ENFORCED != 0)
    {
        return ALLOW;
    }
    let mut key = Key::new(
        EGRESS_KEY_FIXED_BITS + 128,
        EgressKey {
            scope: u32::from(scope).to_be_bytes(),
            port: [0; 2],
            _pad: [0; 2],
            addr: [0; 16],
        },
    );
    let sock_addr = ctx.sock_addr;
    // SAFETY: `sock_addr` is the program's context, valid for this run; the
    // verifier checks each field access (4-byte loads of `user_*`).
    unsafe {
        // `user_port` holds the port in network order in its low 16 bits.
        let port = (*sock_addr).user_port as u16;
        key.data.port = port.to_ne_bytes();
        if v6 {
            let words = [
                (*sock_addr).user_ip6[0],
                (*sock_addr).user_ip6[1],
                (*sock_addr).user_ip6[2],
                (*sock_addr).user_ip6[3],
            ];
            // Network order in memory: native bytes keep it.
            for (i, word) in words.iter().enumerate() {
                let bytes = word.to_ne_bytes();
                key.data.addr[i * 4] = bytes[0];
                key.data.addr[i * 4 + 1] = bytes[1];
                key.data.addr[i * 4 + 2] = bytes[2];
                key.data.addr[i * 4 + 3] = bytes[3];
            }
        } else {
            // IPv4-mapped: ::ffff:a.b.c.d.
            key.data.addr[10] = 0xff;
            key.data.addr[11] = 0xff;
            let bytes = (*sock_addr).user_ip4.to_ne_bytes();
            key.data.addr[12] = bytes[0];
            key.data.addr[13] = bytes[1];
            key.data.addr[14] = bytes[2];
            key.data.addr[15] = bytes[3];
        }
    }
    if EGRESS_ALLOW.get(&key).is_some() {
        return ALLOW;
    }
    key.data.port = [0; 2];
    if EGRESS_ALLOW.get(&key).is_some() {
        return ALLOW;
    }
    if connect {
        mark_connect_denied();
    }
    DENY
}
