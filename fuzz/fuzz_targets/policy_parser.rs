//! Fuzzes the policy loader: any text must give a policy set or errors,
//! never a panic, and a loaded set must evaluate events and run its tests.
#![no_main]

use std::sync::Arc;

use aiwatch::event::{Event, Kind};
use aiwatch::policy::{run_tests, PolicyEngine, PolicySet, Source};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let source = Source {
        name: Arc::from("fuzz.yaml"),
        text: text.to_string(),
    };
    match PolicySet::from_sources(&[source]) {
        Ok(set) => {
            let set = Arc::new(set);
            let _ = run_tests(&set, |_| true);
            let mut engine = PolicyEngine::new(set);
            for (index, kind) in Kind::ALL.into_iter().enumerate() {
                let mut event = Event {
                    kind,
                    ktime_ns: index as u64 * 1_000_000_000,
                    ..Event::default()
                };
                event.process.pid = 100 + index as u32;
                event.process.exe = "/bin/sh".into();
                let _ = engine.evaluate(&event);
            }
        }
        Err(errors) => {
            // Every error names the file and a position.
            for error in errors.iter() {
                assert!(error.pos.line >= 1 && error.pos.column >= 1, "{error}");
            }
        }
    }
});
