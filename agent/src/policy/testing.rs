//! The rule-test runner: replays each test's events through a fresh engine
//! and compares the alerts of the test's own file with `expect`.

use std::sync::Arc;

use super::engine::PolicyEngine;
use super::set::PolicySet;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestOutcome {
    pub file: Arc<str>,
    pub name: String,
    pub line: usize,
    pub expected: Vec<String>,
    pub got: Vec<String>,
}

impl TestOutcome {
    pub fn passed(&self) -> bool {
        self.expected == self.got
    }
}

/// Runs the tests of the files for which `include` says yes. Only alerts of
/// rules from the test's own file count, so a file's tests do not depend on
/// the other files loaded with it.
pub fn run_tests(set: &Arc<PolicySet>, include: impl Fn(&str) -> bool) -> Vec<TestOutcome> {
    let mut outcomes = Vec::new();
    for test in set.tests.iter().filter(|t| include(&t.file)) {
        let mut engine = PolicyEngine::new(set.clone());
        let mut got = Vec::new();
        for event in &test.events {
            for alert in engine.evaluate(event) {
                let same_file = set
                    .rule(&alert.rule)
                    .is_some_and(|rule| rule.file == test.file);
                if same_file {
                    got.push(alert.rule);
                }
            }
        }
        outcomes.push(TestOutcome {
            file: test.file.clone(),
            name: test.name.clone(),
            line: test.pos.line,
            expected: test.expect.clone(),
            got,
        });
    }
    outcomes
}
