//! One module per event family.

mod enforce;
mod file;
mod gpu;
pub(crate) mod net;
mod privilege;
mod process;
mod tls;
