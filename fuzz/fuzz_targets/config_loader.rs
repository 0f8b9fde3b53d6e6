//! Fuzzes the configuration loader: any text gives a configuration or one
//! error, never a panic.
#![no_main]

use aiwatch::app::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(error) = Config::parse(text, "fuzz.yaml") {
        // The error is one readable sentence.
        assert!(!error.to_string().is_empty());
    }
});
