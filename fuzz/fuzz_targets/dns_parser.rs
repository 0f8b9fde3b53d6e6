//! Fuzzes the DNS parser with the bounded payload copies the kernel hands
//! over: any bytes give a question or an error, never a panic or a loop.
#![no_main]

use aiwatch::ingest::decode::dns::parse_query;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_query(data);
});
