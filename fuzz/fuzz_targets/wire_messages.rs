//! Fuzzes the readers of what the kernel copies off the wire: DNS queries,
//! DNS answers (names, CNAME chains, compression pointers, record counts),
//! TLS ClientHellos and plain HTTP request heads. Any bytes, cut anywhere,
//! give a value or an error, never a panic, and what they give stays within
//! its bounds.
#![no_main]

use aiwatch::ingest::decode::{dns, dns_answer, http_head, tls_hello};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(question) = dns::parse_query(data) {
        assert!(question.name.len() <= 4 * 255);
    }
    for cut in [false, true] {
        if let Ok(answer) = dns_answer::parse_answer(data, cut) {
            assert!(!cut);
            assert!(answer.addresses.len() <= dns_answer::MAX_ADDRESSES);
            assert!(answer.cnames.len() <= dns_answer::MAX_CNAME_HOPS);
        }
    }
    if let Ok(Some(name)) = tls_hello::server_name(data) {
        assert!(!name.is_empty() && name.len() <= 253);
    }
    if let Ok(Some(host)) = http_head::host(data) {
        assert!(!host.is_empty() && host.len() <= 259);
    }
});
