//! The interest test of a file name: does it start with a prefix, or end
//! with an extension or base name, that the agent asked for
//! (`PATH_PREFIXES`, `PATH_SUFFIXES`)? It runs on every file syscall of an
//! untracked process, so each exact lookup sits behind a two-byte bitmap.

use core::ffi::c_void;

use aiwatch_common::{
    suffix::{self, TailKeys},
    SuffixKey, NAME_LEN, PREFIX_KEY_LEN, SUFFIX_BASENAME, SUFFIX_EXTENSION, SUFFIX_KEY_LEN,
};
use aya_ebpf::{helpers::generated::bpf_probe_read_kernel, maps::lpm_trie::Key};

use crate::maps::{filter_hit, PATH_PREFIXES, PATH_SUFFIXES, PREFIX_FILTER, SUFFIX_FILTER};

/// Whether the first `len` bytes of `name` match an interest
/// prefix, extension or base name.
///
/// Nearly every name matches nothing, so each exact lookup sits behind a
/// two-byte bitmap (`PREFIX_FILTER`, `SUFFIX_FILTER`): an array read the
/// verifier inlines. The suffix keys are built without a loop, from the
/// name's last 16 bytes held in two registers (see [`tail_keys`]).
#[inline(always)]
pub(super) fn interesting(name: &[u8; NAME_LEN], len: usize) -> bool {
    if len == 0 || len >= NAME_LEN {
        return false;
    }
    let name = name.as_ptr();
    // SAFETY: every byte read through `name` is at an index below
    // `NAME_LEN` (`len < NAME_LEN`, and the masks keep the verifier sure).
    unsafe {
        if *name == b'/' {
            // The two bytes after the slash, 0 past the end of the name.
            let first = if len > 1 { *name.add(1) } else { 0 };
            let second = if len > 2 { *name.add(2) } else { 0 };
            if filter_hit(&PREFIX_FILTER, first, second) && prefix_match(name, len) {
                return true;
            }
        }
        // Both keys start with the name's last two bytes (lower-cased in the
        // extension's, cut short by a '/' or '.'): when none of those
        // spellings is in the filter, neither key needs building.
        let last = *name.add((len - 1) & (NAME_LEN - 1));
        let before = if len > 1 {
            *name.add((len - 2) & (NAME_LEN - 1))
        } else {
            0
        };
        let (last_lower, before_lower) = (last.to_ascii_lowercase(), before.to_ascii_lowercase());
        if !filter_hit(&SUFFIX_FILTER, last, before)
            && !filter_hit(&SUFFIX_FILTER, last, 0)
            && !filter_hit(&SUFFIX_FILTER, last_lower, before_lower)
            && !filter_hit(&SUFFIX_FILTER, last_lower, 0)
        {
            return false;
        }
        let keys = tail_keys(name, len);
        if keys.extension_len > 0 {
            let extension = SuffixKey {
                kind: SUFFIX_EXTENSION,
                bytes: keys.extension,
            };
            if filter_hit(&SUFFIX_FILTER, extension.bytes[0], extension.bytes[1])
                && PATH_SUFFIXES.get(&extension).is_some()
            {
                return true;
            }
        }
        let basename = SuffixKey {
            kind: SUFFIX_BASENAME,
            bytes: keys.basename,
        };
        filter_hit(&SUFFIX_FILTER, basename.bytes[0], basename.bytes[1])
            && PATH_SUFFIXES.get(&basename).is_some()
    }
}

/// The exact `PATH_PREFIXES` lookup of an absolute name.
///
/// # Safety
/// `name` points to `NAME_LEN` readable bytes.
#[inline(always)]
unsafe fn prefix_match(name: *const u8, len: usize) -> bool {
    let mut key = Key::new(0, [0u8; PREFIX_KEY_LEN]);
    // SAFETY: `key.data` is `PREFIX_KEY_LEN` writable bytes, fewer than the
    // `NAME_LEN` the caller guarantees at `name`.
    unsafe {
        bpf_probe_read_kernel(
            &raw mut key.data as *mut c_void,
            PREFIX_KEY_LEN as u32,
            name as *const c_void,
        );
    }
    let bytes = if len < PREFIX_KEY_LEN {
        len
    } else {
        PREFIX_KEY_LEN
    };
    key.prefix_len = (bytes * 8) as u32;
    PATH_PREFIXES.get(&key).is_some()
}

/// Both suffix keys of the `len`-byte name at `name` (`0 < len <
/// NAME_LEN`): one 16-byte read, then `aiwatch_common::suffix::tail_keys`.
///
/// # Safety
/// `name` points to `NAME_LEN` readable bytes.
#[inline(always)]
unsafe fn tail_keys(name: *const u8, len: usize) -> TailKeys {
    // The 16 bytes ending at the name's last byte, or the first 16 of a
    // shorter name.
    let start = len.saturating_sub(SUFFIX_KEY_LEN);
    let mut raw = [0u64; 2];
    // SAFETY: `raw` is 16 writable bytes; `start + 16 <= len < NAME_LEN`
    // and the byte before the tail is below `len` too, so every read stays
    // within the caller's `NAME_LEN` bytes (the masks say so to the
    // verifier).
    let before_tail = unsafe {
        bpf_probe_read_kernel(
            raw.as_mut_ptr() as *mut c_void,
            SUFFIX_KEY_LEN as u32,
            name.add(start & (NAME_LEN - 1)) as *const c_void,
        );
        if len > SUFFIX_KEY_LEN {
            *name.add((len - SUFFIX_KEY_LEN - 1) & (NAME_LEN - 1))
        } else {
            0
        }
    };
    suffix::tail_keys(raw[0], raw[1], len, before_tail)
}
