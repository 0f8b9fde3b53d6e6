//! Fuzzes the kernel-record decoder: any bytes from the ring buffer give a
//! record or a decode error, never a panic or an out-of-bounds read.
#![no_main]

use aiwatch::ingest::decode::decode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = decode(data) {
        // A decoded record is whole: its kind came from the header.
        let _ = format!("{record:?}");
    }
});
