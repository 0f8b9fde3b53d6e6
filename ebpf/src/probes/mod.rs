//! One module per event family.

mod accel;
mod egress;
mod enforce;
mod file;
mod file_access;
mod gpu;
mod lsm;
mod names;
pub(crate) mod net;
mod plain_http;
mod privilege;
mod process;
mod tls;
