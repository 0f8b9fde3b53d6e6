//! The kernel/user ABI of aiwatch.
//!
//! Everything here is shared, byte for byte, between the eBPF programs and the
//! agent: the records the programs write into the ring buffer, the numbers
//! that name event kinds, and the configuration records the agent writes into
//! maps and load-time globals.
//!
//! Architecture invariant: this crate is `no_std`, has no serde and no
//! allocation. Every type is `repr(C)`, `Copy`, and made of fixed-size fields
//! so that a record means the same thing on both sides.
#![no_std]

pub mod config;
pub mod event;
mod layout;
pub mod suffix;

pub use config::*;
pub use event::*;
