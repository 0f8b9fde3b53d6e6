//! One module per event family.

mod file;
mod gpu;
mod process;
