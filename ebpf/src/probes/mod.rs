//! One module per event family.

mod file;
mod gpu;
mod net;
mod privilege;
mod process;
