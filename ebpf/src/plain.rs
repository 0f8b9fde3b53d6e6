//! Checked copies of kernel and user memory into plain-data values.
//!
//! `bpf_probe_read_kernel` and `bpf_probe_read_user` never fault: a bad
//! address makes them fail and zero the destination. What makes aya's typed
//! wrappers `unsafe` is the type they produce: a `bool`, an enum or a
//! reference read from arbitrary memory may hold a value that is undefined
//! behaviour to have. [`Plain`] is the set of types for which every bit
//! pattern is a valid value (integers, raw pointers, arrays of them and the
//! `repr(C)` records of `aiwatch-common`, which hold nothing else), so
//! [`read_kernel`] and [`read_user`] over it are safe functions.
//!
//! The trait is sealed: a new type is added here, next to its reason.

use aiwatch_common::{NetRecord, SockAddr, SyscallRecord};
use core::{ffi::c_void, mem::MaybeUninit};

use aya_ebpf::{
    helpers::{self, generated},
    programs::TracePointContext,
    EbpfContext,
};

mod sealed {
    pub trait Sealed {}
}

/// A type for which every bit pattern of its size is a valid value.
pub trait Plain: sealed::Sealed + Copy {}

macro_rules! plain {
    ($($ty:ty),* $(,)?) => {
        $(
            impl sealed::Sealed for $ty {}
            impl Plain for $ty {}
        )*
    };
}

plain!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize);
// Raw pointers carry no validity requirement until they are dereferenced,
// and every dereference in this crate goes through the helpers again.
plain!(*const u8);
// Made of integers, integer arrays and other plain records only (see
// `aiwatch-common`'s layout assertions); no padding is read as a value.
plain!(SockAddr, NetRecord, SyscallRecord);

impl<T: Plain, const N: usize> sealed::Sealed for [T; N] {}
impl<T: Plain, const N: usize> Plain for [T; N] {}

/// Copies a `T` from kernel memory at `src`; `Err` with the helper's error
/// when the address cannot be read. `src` may be anything, null included.
#[inline(always)]
pub fn read_kernel<T: Plain>(src: *const T) -> Result<T, i32> {
    // SAFETY: the helper checks the address and fails instead of faulting;
    // on success all `size_of::<T>()` bytes are written, and any bytes are a
    // valid `T: Plain`.
    unsafe { helpers::bpf_probe_read_kernel(src) }
}

/// Copies a `T` from the current task's user memory at `src`; `Err` when
/// the address cannot be read.
#[inline(always)]
pub fn read_user<T: Plain>(src: *const T) -> Result<T, i32> {
    // SAFETY: as in `read_kernel`: a checked copy into a value of a type
    // for which every bit pattern is valid.
    unsafe { helpers::bpf_probe_read_user(src) }
}

/// Copies a `T` from kernel memory at `src` into `dst` in place, for
/// records too big for the 512-byte stack. On success `dst` is initialised.
#[inline(always)]
pub fn read_kernel_into<T: Plain>(dst: &mut MaybeUninit<T>, src: *const T) -> Result<(), i32> {
    // SAFETY: `dst` is valid for `size_of::<T>()` writable bytes; the
    // helper checks `src` and fails instead of faulting.
    let ret = unsafe {
        generated::bpf_probe_read_kernel(
            dst.as_mut_ptr() as *mut c_void,
            size_of::<T>() as u32,
            src as *const c_void,
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(ret as i32)
    }
}

/// Copies a `T` from a tracepoint's record at byte `offset`.
#[inline(always)]
pub fn read_context<T: Plain>(ctx: &TracePointContext, offset: usize) -> Result<T, i32> {
    read_kernel((ctx.as_ptr() as *const u8).wrapping_add(offset) as *const T)
}
