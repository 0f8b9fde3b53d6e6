//! One module per event family.

mod enforce;
mod file;
mod gpu;
mod net;
mod privilege;
mod process;
mod tls;
