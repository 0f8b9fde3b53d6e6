//! Builders of ABI records for the decoder's tests: all-zero records, their
//! bytes as the ring buffer holds them, headers and resolved kernel paths.

use aiwatch_common::{EventHeader, EventKind, KernelPath};

/// An all-zero record.
pub fn zeroed<T: aya::Pod>() -> T {
    // SAFETY: `Pod` types are plain `repr(C)` data, valid when all-zero.
    unsafe { std::mem::zeroed() }
}

/// The record's bytes, as the kernel writes them into the ring.
pub fn bytes_of<T: aya::Pod>(value: &T) -> Vec<u8> {
    super::pod_bytes(value).to_vec()
}

/// A header of `kind` and `size` for process `pid`, named `comm`.
pub fn header(kind: EventKind, size: usize, pid: u32, comm: &str) -> EventHeader {
    let mut h: EventHeader = zeroed();
    h.kind = kind as u16;
    h.size = size as u32;
    h.pid = pid;
    h.tid = pid;
    h.comm[..comm.len()].copy_from_slice(comm.as_bytes());
    h
}

/// A path as the kernel's dentry walk leaves it: components leaf first,
/// each followed by a NUL.
pub fn kernel_path_of(components_leaf_first: &[&str]) -> KernelPath {
    let mut p: KernelPath = zeroed();
    let mut len = 0;
    for c in components_leaf_first {
        p.buf[len..len + c.len()].copy_from_slice(c.as_bytes());
        len += c.len() + 1;
    }
    p.len = len as u16;
    p.depth = components_leaf_first.len() as u16;
    p
}
