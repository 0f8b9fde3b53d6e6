//! Records in: the ring-buffer reader, the decoder that validates each
//! record before reading it, and the timers that turn kernel counters into
//! records (GPU ioctl reports, TCP summaries).

pub mod decode;
pub mod file_access;
pub mod gpu_ioctl;
pub mod queue;
pub mod reader;
pub mod tcp_summary;
