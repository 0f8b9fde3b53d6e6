//! One module per event family.

mod process;
