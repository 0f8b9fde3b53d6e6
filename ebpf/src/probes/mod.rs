//! One module per event family.

mod enforce;
mod file;
mod gpu;
mod names;
mod net;
mod privilege;
mod process;
