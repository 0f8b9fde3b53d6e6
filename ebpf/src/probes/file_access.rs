//! Folding a tracked process's plain reads into per-directory counters.
//!
//! A data loader opens hundreds of thousands of distinct files; a full event
//! with a path walk for each is what made tracked opens expensive. Here a
//! successful read-only open of a regular file by a tracked process is
//! counted in `FILE_ACCESS` instead of reported, when:
//! - the agent has put the process's directory (by device and inode, so a
//!   rename cannot leave the key stale) in `FILE_ACCESS`, which it does
//!   after the full event of the first such open there, and only for a
//!   directory no asset path can lie in;
//! - the file's own name (the dentry's, so a symbolic link cannot hide a
//!   `.safetensors` behind another name) is not of interest.
//!
//! Writes, truncations, renames, unlinks, device opens, files a rule
//! protects (by inode, so under any name) and anything the enforcement
//! hooks decided on are never folded. The agent reads the
//! counters periodically and reports their growth as `file_access`.

use core::{
    ffi::c_void,
    mem::{size_of, MaybeUninit},
};

use aiwatch_common::{
    file_access_slots, suffix, EventKind, ExeKey, FileAccessKey, FileAccessRecord, FileAccessSlot,
    FILE_ACCESS_SLOTS, INLINE_NAME_LOADED, NAME_LEN, OFFSET_UNKNOWN, SUFFIX_KEY_LEN,
};
use aya_ebpf::{
    helpers::{
        bpf_ktime_get_boot_ns,
        generated::{bpf_jiffies64, bpf_probe_read_kernel, bpf_probe_read_kernel_str},
    },
    macros::map,
    maps::PerCpuArray,
};

use crate::{
    direct,
    emit::fill_header,
    globals::offset,
    kernel::{field, read, read_ptr},
    probes::enforce,
};

/// Per process and directory, per CPU (no atomics: threads on other CPUs
/// never share a slot); the agent sums the CPUs. Open-addressed (see
/// `aiwatch_common::file_access_home`): only the agent places and removes
/// keys, so a directory is folded once it says so. A key it cannot place
/// only means the opens stay full events.
#[map]
static FILE_ACCESS: PerCpuArray<FileAccessSlot> =
    PerCpuArray::with_max_entries(FILE_ACCESS_SLOTS, 0);

/// This CPU's counter of `key`, if the agent has placed it.
#[inline(always)]
fn counter(key: &FileAccessKey) -> Option<*mut FileAccessRecord> {
    for index in file_access_slots(key) {
        let slot = FILE_ACCESS.get_ptr_mut(index)?;
        // SAFETY: this CPU's copy of a live array value, valid while the
        // program runs; the agent may rewrite it meanwhile, which at worst
        // makes this one read a full event.
        unsafe {
            if (*slot).key == *key {
                return Some(&raw mut (*slot).record);
            }
        }
    }
    None
}

const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;

/// What became of a read-only open.
pub enum Fold {
    /// Counted in `FILE_ACCESS`: no event.
    Counted,
    /// Not folded; the directory's key, for the agent to fold it.
    Report(FileAccessKey),
    /// Not folded, and not foldable (not a regular file, a name of
    /// interest, a directory the kernel cannot identify).
    Keep,
}

/// Folds the open of `file` (whose inode is `inode` and mode `i_mode`) by
/// `tgid` if its directory is folded and its name is not of interest.
/// `name_buf` is scratch space for the dentry's name.
#[inline(always)]
pub fn fold_read(
    file: *const u8,
    inode: *const u8,
    i_mode: u32,
    tgid: u32,
    name_buf: &mut [u8; NAME_LEN],
    interesting: impl Fn(&[u8; NAME_LEN], usize) -> bool,
) -> Fold {
    if i_mode & S_IFMT != S_IFREG {
        return Fold::Keep;
    }
    let dentry = read_ptr(field(file, offset!(file_f_path)), offset!(path_dentry));
    let parent = read_ptr(dentry, offset!(dentry_d_parent));
    let dir_inode = read_ptr(parent, offset!(dentry_d_inode));
    let Ok(dir_ino) = read::<u64>(dir_inode, offset!(inode_i_ino)) else {
        return Fold::Keep;
    };
    let sb = read_ptr(dir_inode, offset!(inode_i_sb));
    let Ok(dev) = read::<u32>(sb, offset!(super_block_s_dev)) else {
        return Fold::Keep;
    };
    let key = FileAccessKey { tgid, dev, dir_ino };
    let Some(slot) = counter(&key) else {
        return Fold::Report(key);
    };
    let name = read_ptr(field(dentry, offset!(dentry_d_name)), offset!(qstr_name));
    let size = read::<i64>(inode, offset!(inode_i_size)).unwrap_or(0);
    count_read(slot, name, size, name_buf, interesting)
}

/// [`fold_read`] with direct loads (`crate::direct`), for a successful open
/// that returned `fd`: `None` when this open cannot take that path (direct
/// loads off, a descriptor table grown past its embedded slots, or, while
/// `enforcing`, a file a rule protects, whose open the enforcement verdict
/// decides first), for the caller to use the checked reads. Same
/// decisions, same counter; the name test reads only the name's last
/// bytes, with its length from the dentry.
#[inline(always)]
pub fn fold_read_direct(
    fd: u32,
    tgid: u32,
    enforcing: bool,
    basename_interesting: impl Fn(u64, u64, usize, u8) -> bool,
) -> Option<Fold> {
    if !direct::enabled() || !direct::offsets_known() {
        return None;
    }
    let file = direct::current_file(fd)?;
    let inode = file.ptr(offset!(file_f_inode));
    let i_mode = inode.load::<u16>(offset!(inode_i_mode)) as u32;
    if i_mode & S_IFMT != S_IFREG {
        return Some(Fold::Keep);
    }
    let dentry = file.ptr(offset!(file_f_path) + offset!(path_dentry));
    let dir_inode = dentry
        .ptr(offset!(dentry_d_parent))
        .ptr(offset!(dentry_d_inode));
    let dir_ino = dir_inode.load::<u64>(offset!(inode_i_ino));
    let dev = dir_inode
        .ptr(offset!(inode_i_sb))
        .load::<u32>(offset!(super_block_s_dev));
    if dir_ino == 0 {
        // A null or stale pointer on the way reads as zero.
        return Some(Fold::Keep);
    }
    let key = FileAccessKey { tgid, dev, dir_ino };
    let Some(slot) = counter(&key) else {
        return Some(Fold::Report(key));
    };
    let name = dentry.load::<u64>(offset!(dentry_d_name) + offset!(qstr_name));
    let len = dentry.load::<u32>(offset!(dentry_d_name) + offset!(qstr_len)) as usize;
    let tail = match inline_name_tail(dentry, name, len) {
        Some(tail) => Some(tail),
        None => name_tail(name as *const u8, len),
    };
    let Some((low, high, before_tail)) = tail else {
        return Some(Fold::Keep);
    };
    if basename_interesting(low, high, len, before_tail) {
        return Some(Fold::Keep);
    }
    if enforcing && enforce::any_protected() {
        let file = ExeKey {
            dev: inode
                .ptr(offset!(inode_i_sb))
                .load::<u32>(offset!(super_block_s_dev)),
            _pad: 0,
            ino: inode.load::<u64>(offset!(inode_i_ino)),
        };
        if file.ino == 0 || enforce::protected(&file) {
            return None;
        }
    }
    count(slot, inode.load::<i64>(offset!(inode_i_size)));
    Some(Fold::Counted)
}

/// [`name_tail`] for a name of fewer than `INLINE_NAME_LOADED` bytes that
/// lies in the dentry's inline buffer, as most file names do: four direct
/// loads of the buffer's first words, at constant offsets the verifier
/// checks against the buffer's type, and shifts in registers
/// (`aiwatch_common::suffix::inline_tail`) instead of a helper call. `None`
/// for a name elsewhere (a longer one, or one a rename left outside the
/// buffer) or an unknown buffer, for `name_tail` to copy.
#[inline(always)]
fn inline_name_tail(dentry: direct::Typed, name: u64, len: usize) -> Option<(u64, u64, u8)> {
    let inline = offset!(dentry_d_iname);
    if inline == OFFSET_UNKNOWN as usize
        || len == 0
        || len >= INLINE_NAME_LOADED as usize
        || name != dentry.addr().wrapping_add(inline) as u64
    {
        return None;
    }
    let words = [
        dentry.load::<u64>(inline),
        dentry.load::<u64>(inline + 8),
        dentry.load::<u64>(inline + 16),
        dentry.load::<u64>(inline + 24),
    ];
    Some(suffix::inline_tail(words, len))
}

/// The tail of the `len`-byte kernel string at `name`, as
/// `aiwatch_common::suffix::tail_keys` takes it: the 16 bytes ending at its
/// last byte (its first 16 when shorter) and the byte before those. One
/// checked copy, into three stack words placed so that the 16 bytes land
/// in the last two, aligned: two loads instead of sixteen byte loads and
/// shifts.
#[inline(always)]
fn name_tail(name: *const u8, len: usize) -> Option<(u64, u64, u8)> {
    if name.is_null() || len == 0 || len >= NAME_LEN {
        return None;
    }
    // Not zeroed first: the compiler turns that into a call to a byte-wise
    // `memset` loop. Bytes 8..24 are written by the helper in both branches
    // (zeros when the read fails), and byte 7 in the first.
    let mut words = MaybeUninit::<[u64; 3]>::uninit();
    let base = words.as_mut_ptr() as *mut u8;
    // SAFETY: `base` is 24 writable stack bytes; each copy stays inside
    // them (7 + 17 and 8 + 16); the sources are checked kernel reads. A
    // name of 16 bytes or fewer lies in the dentry's own inline buffer,
    // which is longer, so 16 bytes from its start stay in the dentry.
    let (copied, before_tail) = unsafe {
        if len > SUFFIX_KEY_LEN {
            let copied = bpf_probe_read_kernel(
                base.add(7) as *mut c_void,
                SUFFIX_KEY_LEN as u32 + 1,
                name.wrapping_add(len - SUFFIX_KEY_LEN - 1) as *const c_void,
            );
            (copied, *base.add(7))
        } else {
            let copied = bpf_probe_read_kernel(
                base.add(8) as *mut c_void,
                SUFFIX_KEY_LEN as u32,
                name as *const c_void,
            );
            (copied, 0)
        }
    };
    if copied != 0 {
        return None;
    }
    // SAFETY: words 1 and 2 (bytes 8..24) were written above.
    let (low, high) = unsafe {
        let words = words.as_ptr() as *const u64;
        (u64::from_le(*words.add(1)), u64::from_le(*words.add(2)))
    };
    Some((low, high, before_tail))
}

/// Counts a read in its directory's `slot` unless the file's dentry name
/// (`name`, a kernel string) is of interest.
#[inline(always)]
fn count_read(
    slot: *mut FileAccessRecord,
    name: *const u8,
    size: i64,
    name_buf: &mut [u8; NAME_LEN],
    interesting: impl Fn(&[u8; NAME_LEN], usize) -> bool,
) -> Fold {
    if name.is_null() {
        return Fold::Keep;
    }
    // SAFETY: `name_buf` is `NAME_LEN` writable bytes and the helper writes
    // at most that many, NUL included; the source is a checked kernel read.
    let copied = unsafe {
        bpf_probe_read_kernel_str(
            name_buf.as_mut_ptr() as *mut c_void,
            NAME_LEN as u32,
            name as *const c_void,
        )
    };
    if copied <= 1 || interesting(name_buf, copied as usize - 1) {
        return Fold::Keep;
    }
    count(slot, size);
    Fold::Counted
}

/// Adds one read of a `size`-byte file to this CPU's `slot`.
///
/// The clock is read once per tick, not per read: a clock read is a
/// serialising `rdtsc` (a fifth of a folded read's cost on a virtualised
/// CPU), while `jiffies` is one load the verifier inlines. So `last_ns` is
/// the time of the first counted read in the latest tick that had one.
#[inline(always)]
fn count(slot: *mut FileAccessRecord, size: i64) {
    // SAFETY: `bpf_jiffies64` takes no argument.
    let tick = unsafe { bpf_jiffies64() };
    // SAFETY: this CPU's slot of a map value, valid while the program runs;
    // nothing else writes it meanwhile (syscall exits do not nest).
    unsafe {
        if (*slot).header.ktime_ns == 0 {
            // The slot was created zeroed by the agent: the process's
            // identity comes with its first counted read on this CPU.
            fill_header(
                &raw mut (*slot).header,
                EventKind::FileAccess,
                0,
                size_of::<FileAccessRecord>(),
            );
            (*slot).first_ns = (*slot).header.ktime_ns;
            (*slot).last_ns = (*slot).header.ktime_ns;
            (*slot).last_jiffies = tick;
        } else if (*slot).last_jiffies != tick {
            (*slot).last_ns = bpf_ktime_get_boot_ns();
            (*slot).last_jiffies = tick;
        }
        (*slot).count += 1;
        (*slot).bytes += size.max(0) as u64;
    }
}
