//! Direct loads through BTF-typed kernel pointers, for the hottest path.
//!
//! `kernel.rs` reads every field with `bpf_probe_read_kernel`: a helper
//! call per field, 40-60 ns each on a virtualised CPU. A pointer the
//! verifier knows as a typed kernel object (`bpf_get_current_task_btf`, and
//! every struct pointer loaded from one) can be read with a plain load
//! instead: the verifier checks each offset against the kernel's BTF, and
//! the JIT turns the load into one instruction whose fault, on a stale or
//! null pointer, yields zero. A folded read of a tracked process walks a
//! dozen fields; here each is one load instruction instead of a helper
//! call.
//!
//! The verifier accepts a load only at an offset it can prove: the
//! offsets come from `OFFSETS` (load-time constants, so it can) and are
//! checked against the kernel's own types, never trusted. A kernel whose
//! verifier refuses any of this loads the programs again with the direct
//! path off (the `DIRECT_READS` global) and keeps the checked reads.

use core::arch::asm;

use aiwatch_common::{FD_ARRAY_LEN, OFFSET_UNKNOWN};
use aya_ebpf::helpers::generated::bpf_get_current_task_btf;

use crate::globals::offset;

/// Non-zero: the loader found every offset below and the kernel accepted
/// the direct loads. Written by the loader before verification.
#[unsafe(no_mangle)]
static DIRECT_READS: u32 = 0;

#[inline(always)]
pub fn enabled() -> bool {
    // SAFETY: an aligned read of an immutable static the loader patches
    // before verification; volatile so the loader's value is used.
    unsafe { core::ptr::read_volatile(&raw const DIRECT_READS) != 0 }
}

/// A kernel pointer the verifier types from BTF. Only [`current_task`] and
/// [`Typed::ptr`] make one, so every address it holds came from the
/// kernel's own pointers.
#[derive(Clone, Copy)]
pub struct Typed(*const u8);

/// The running task.
#[inline(always)]
pub fn current_task() -> Typed {
    // SAFETY: the helper takes no argument and returns the running task,
    // valid for the whole program run.
    Typed(unsafe { bpf_get_current_task_btf() } as *const u8)
}

impl Typed {
    pub fn is_null(self) -> bool {
        self.0.is_null()
    }

    /// The address, for comparisons only.
    pub fn addr(self) -> usize {
        self.0 as usize
    }

    /// The struct pointer at `off`.
    #[inline(always)]
    pub fn ptr(self, off: usize) -> Typed {
        Typed(self.load::<*const u8>(off))
    }

    /// The `T` at `off`: zero when the pointer is null or stale.
    #[inline(always)]
    pub fn load<T: Copy>(self, off: usize) -> T {
        // SAFETY: not a Rust dereference of program memory: the verifier
        // rewrites a load through a BTF-typed pointer into a
        // fault-tolerant kernel read (`BPF_PROBE_MEM`) after checking that
        // `off` and `size_of::<T>()` match a field of the pointee's type.
        unsafe { core::ptr::read_volatile(self.0.wrapping_add(off) as *const T) }
    }

    /// The address of `fd_array[fd]` of a `files_struct`, for `fd <
    /// FD_ARRAY_LEN`.
    ///
    /// The verifier refuses a variable offset into a typed pointer, so the
    /// index is added one bit at a time as constants, each in its own
    /// branch: the verifier follows every path with a known offset. The
    /// additions are assembly so that the compiler cannot merge them back
    /// into one multiplication.
    #[inline(always)]
    pub fn fd_array_slot(self, fd: u32) -> Typed {
        let mut slot = self.0.wrapping_add(offset!(files_fd_array));
        // A fresh value for the branches to test: what they learn about it
        // must not flow back into the caller's copy of the descriptor (the
        // verifier links copies of a register), or each of the 64 paths
        // would carry a different known descriptor into the rest of the
        // program and be verified on its own. The mask is an ALU operation,
        // which breaks the link; in assembly, so that it stays.
        let mut index = fd as u64;
        // SAFETY: masks a register; nothing is read or written.
        unsafe { asm!("{index} &= 63", index = inout(reg) index) };
        macro_rules! add_bit {
            ($bit:literal) => {
                if index & $bit != 0 {
                    // SAFETY: adds a constant to a register; nothing is
                    // read or written.
                    unsafe { asm!("{slot} += {step}", slot = inout(reg) slot, step = const $bit * 8) };
                }
            };
        }
        add_bit!(32);
        add_bit!(16);
        add_bit!(8);
        add_bit!(4);
        add_bit!(2);
        add_bit!(1);
        Typed(slot)
    }
}

/// Whether every offset the direct path needs is known.
#[inline(always)]
pub fn offsets_known() -> bool {
    let known = |off: usize| off != OFFSET_UNKNOWN as usize;
    // Each is a load-time constant: the verifier drops the branches.
    known(offset!(task_files))
        && known(offset!(files_fdt))
        && known(offset!(files_fdtab))
        && known(offset!(files_fd_array))
        && known(offset!(file_f_path))
        && known(offset!(file_f_inode))
        && known(offset!(path_dentry))
        && known(offset!(dentry_d_parent))
        && known(offset!(dentry_d_inode))
        && known(offset!(dentry_d_name))
        && known(offset!(qstr_name))
        && known(offset!(qstr_len))
        && known(offset!(inode_i_mode))
        && known(offset!(inode_i_ino))
        && known(offset!(inode_i_sb))
        && known(offset!(inode_i_size))
        && known(offset!(super_block_s_dev))
}

/// The `struct file` behind `fd` of the current task, when its descriptor
/// table is still the one embedded in `files_struct` (up to 64 descriptors
/// ever open at once); `None` otherwise, for the checked reads to find it.
#[inline(always)]
pub fn current_file(fd: u32) -> Option<Typed> {
    if fd >= FD_ARRAY_LEN {
        return None;
    }
    let files = current_task().ptr(offset!(task_files));
    if files.is_null() {
        return None;
    }
    // Once a process has had more descriptors open than the embedded
    // table holds, `fdt` points to a larger table and `fd_array` goes stale.
    let fdt = files.ptr(offset!(files_fdt));
    if fdt.addr() != files.addr().wrapping_add(offset!(files_fdtab)) {
        return None;
    }
    let file = files.fd_array_slot(fd).ptr(0);
    (!file.is_null()).then_some(file)
}
