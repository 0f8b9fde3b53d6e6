//! One module per event family.

mod process;
mod net;
mod privilege;
