//! Tests of the parser, the evaluator and the default pack.

use std::sync::Arc;

use super::*;

#[test]
fn default_pack_tests_pass() {
    let set = match PolicySet::default_pack() {
        Ok(set) => Arc::new(set),
        Err(errors) => panic!("default pack does not load:\n{errors}"),
    };
    let outcomes = run_tests(&set, |_| true);
    let failures: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.passed())
        .map(|o| format!("{}:{}: {}: expected {:?}, got {:?}", o.file, o.line, o.name, o.expected, o.got))
        .collect();
    assert!(failures.is_empty(), "failing pack tests:\n{}", failures.join("\n"));
    for rule in set.rules() {
        let hit = set.tests().iter().any(|t| t.expect.contains(&rule.id));
        let near_miss = set.tests().iter().any(|t| t.file == rule.file && t.expect.is_empty());
        assert!(hit && near_miss, "rule {} needs a hit test and a near miss", rule.id);
    }
}
