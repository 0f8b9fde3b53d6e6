//! Fuzzes the anomaly-profile loader (the state files the agent reads back
//! at start-up, which a full disk or an attacker may have damaged): any
//! bytes give a profile or an error, never a panic.
#![no_main]

use aiwatch::anomaly::store::parse_profile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(profile) = parse_profile(text) {
        // A loaded profile serialises again.
        let _ = serde_json::to_string(&profile).expect("a loaded profile serialises");
    }
});
