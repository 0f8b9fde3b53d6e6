//! The kernel side of aiwatch: one program file per event family under
//! `probes/`, sharing the maps in `maps.rs` and the kernel readers in
//! `kernel.rs` and `path.rs`. Memory outside the program is read through
//! the checked, plain-data copies of `plain.rs`; rare diagnostics go to the
//! agent's log through `diag.rs`.
//!
//! Architecture invariant: nothing here allocates or blocks. Records are built
//! in ring-buffer reservations or per-CPU scratch maps, never on the 512-byte
//! stack, and every record that cannot be sent is counted in `STATS`.
#![no_std]
#![no_main]
#![expect(
    clippy::needless_borrows_for_generic_args,
    reason = "map values go by reference: by value, a record would be copied onto the 512-byte stack"
)]
// `atomic_xadd`: the BPF target's core lacks atomic read-modify-write types.
#![feature(core_intrinsics)]
// `asm!` on the BPF target: constant offsets the verifier can follow
// (`direct.rs`).
#![feature(asm_experimental_arch)]
#![allow(internal_features)]

mod diag;
mod direct;
mod emit;
mod globals;
mod kernel;
mod maps;
mod path;
mod plain;
mod probes;
mod syscall;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
