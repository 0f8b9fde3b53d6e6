//! One module per event family.

mod accel;
mod egress;
mod enforce;
mod file;
mod gpu;
mod names;
mod net;
mod privilege;
mod process;
