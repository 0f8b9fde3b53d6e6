//! Kernel control: what the running kernel offers, loading and attaching
//! the programs, the struct offsets and interest maps written into them, and
//! the kernel's own counters, and the TLS libraries the clear-text uprobes
//! are placed on.

pub mod cgroups;
pub mod detach;
pub mod features;
pub mod interest;
pub mod loader;
pub mod offsets;
pub mod probe_table;
pub mod ringbuf_usage;
pub mod scopes;
pub mod stats;
pub mod tls;
