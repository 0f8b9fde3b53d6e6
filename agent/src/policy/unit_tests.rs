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
        .map(|o| {
            format!(
                "{}:{}: {}: expected {:?}, got {:?}",
                o.file, o.line, o.name, o.expected, o.got
            )
        })
        .collect();
    assert!(
        failures.is_empty(),
        "failing pack tests:\n{}",
        failures.join("\n")
    );
    for rule in set.rules() {
        let hit = set.tests().iter().any(|t| t.expect.contains(&rule.id));
        let near_miss = set
            .tests()
            .iter()
            .any(|t| t.file == rule.file && t.expect.is_empty());
        assert!(
            hit && near_miss,
            "rule {} needs a hit test and a near miss",
            rule.id
        );
    }
}

fn load(text: &str) -> Result<PolicySet, PolicyErrors> {
    PolicySet::from_sources(&[Source {
        name: Arc::from("t.yaml"),
        text: text.to_string(),
    }])
}

/// The first error of a policy that must not load, as `file:line:col: msg`.
fn first_error(text: &str) -> String {
    match load(text) {
        Ok(_) => panic!("policy loaded but should not:\n{text}"),
        Err(errors) => errors.errors[0].to_string(),
    }
}

fn event(value: serde_json::Value) -> crate::event::Event {
    let mut value = value;
    let object = value.as_object_mut().expect("test events are objects");
    object
        .entry("time")
        .or_insert(serde_json::json!("2026-01-01T00:00:00Z"));
    object.entry("ktime_ns").or_insert(serde_json::json!(1));
    object.entry("process").or_insert(serde_json::json!({}));
    serde_json::from_value(value).expect("test event is valid")
}

fn engine(text: &str) -> PolicyEngine {
    match load(text) {
        Ok(set) => PolicyEngine::new(Arc::new(set)),
        Err(errors) => panic!("policy does not load:\n{errors}"),
    }
}

fn ids(alerts: &[crate::alert::Alert]) -> Vec<&str> {
    alerts.iter().map(|a| a.rule.as_str()).collect()
}

// ---- error paths: each message with its line and column ----

#[test]
fn invalid_yaml_reports_position() {
    let e = first_error("rules:\n  - id: x\n   bad: [\n");
    assert!(e.starts_with("t.yaml:3:"), "{e}");
    assert!(e.contains("not valid YAML"), "{e}");
}

#[test]
fn unknown_top_level_key() {
    assert_eq!(
        first_error("rulez: []\n"),
        "t.yaml:1:1: unknown key `rulez` in a policy file; expected one of: enforcement, lists, macros, rules, tests"
    );
}

#[test]
fn unknown_rule_key() {
    let e = first_error(
        "rules:\n  - id: a\n    severity: low\n    when: {kind: exec}\n    sevrity: high\n",
    );
    assert!(
        e.starts_with("t.yaml:5:5: unknown key `sevrity` in a rule"),
        "{e}"
    );
}

#[test]
fn wrong_types() {
    assert_eq!(
        first_error("rules:\n  - id: a\n    severity: low\n    tags: ai\n    when: {kind: exec}\n"),
        "t.yaml:4:11: `tags` must be a list, not a string"
    );
    assert_eq!(
        first_error("rules: {a: 1}\n"),
        "t.yaml:1:8: `rules` must be a list, not a mapping"
    );
    assert_eq!(
        first_error("rules:\n  - id: a\n    severity: low\n    enabled: yes-please\n    when: {kind: exec}\n"),
        "t.yaml:4:14: `enabled` must be true or false, not a string"
    );
    assert_eq!(
        first_error("rules:\n  - id: a\n    severity: low\n    when: {process.pid: {gt: many}}\n"),
        "t.yaml:4:30: `process.pid` compares with a number (or a size such as 100MB), not `many`"
    );
}

#[test]
fn bad_glob() {
    assert_eq!(
        first_error("rules:\n  - id: a\n    severity: low\n    when: {process.exe: {glob: [\"/bin/*\", \"/usr/[bin\"]}}\n"),
        "t.yaml:4:43: bad glob `/usr/[bin`: unclosed character class; missing ']'"
    );
}

#[test]
fn bad_cidr() {
    assert_eq!(
        first_error("rules:\n  - id: a\n    severity: low\n    when:\n      net.dst.ip: {cidr: 10.0.0.0/33}\n"),
        "t.yaml:5:26: bad CIDR `10.0.0.0/33`: expected an address/prefix such as 10.0.0.0/8 or fd00::/8"
    );
}

#[test]
fn unknown_macro_and_list() {
    assert_eq!(
        first_error("rules:\n  - id: a\n    severity: low\n    when: {macro: nope}\n"),
        "t.yaml:4:19: unknown macro `nope`"
    );
    assert_eq!(
        first_error(
            "rules:\n  - id: a\n    severity: low\n    when: {process.exe: {in: shellz}}\n"
        ),
        "t.yaml:4:30: unknown list `shellz`"
    );
    assert_eq!(
        first_error(
            "rules:\n  - id: a\n    severity: low\n    when: {process.exe: {glob: {list: g}}}\n"
        ),
        "t.yaml:4:39: unknown list `g`"
    );
}

#[test]
fn unknown_field_path() {
    assert_eq!(
        first_error(
            "rules:\n  - id: a\n    severity: low\n    when:\n      process.exec: /bin/sh\n"
        ),
        "t.yaml:5:7: unknown field `process.exec`; see docs/policy.md for the field paths"
    );
}

#[test]
fn duplicate_rule_id() {
    assert_eq!(
        first_error("rules:\n  - id: a\n    severity: low\n    when: {kind: exec}\n  - id: a\n    severity: low\n    when: {kind: open}\n"),
        "t.yaml:5:5: duplicate rule id `a`: already defined at t.yaml:2:5"
    );
}

#[test]
fn unknown_severity_action_kind_operator() {
    assert_eq!(
        first_error("rules:\n  - id: a\n    severity: severe\n    when: {kind: exec}\n"),
        "t.yaml:3:15: unknown severity `severe`; expected info, low, medium, high or critical"
    );
    assert_eq!(
        first_error(
            "rules:\n  - id: a\n    severity: low\n    action: block\n    when: {kind: exec}\n"
        ),
        "t.yaml:4:13: unknown action `block`; expected audit, kill or deny"
    );
    let e = first_error("rules:\n  - id: a\n    severity: low\n    when: {kind: execve}\n");
    assert!(
        e.starts_with("t.yaml:4:18: unknown event kind `execve`; expected one of: exec, fork"),
        "{e}"
    );
    let e =
        first_error("rules:\n  - id: a\n    severity: low\n    when: {process.exe: {like: x}}\n");
    assert!(e.starts_with("t.yaml:4:26: unknown operator `like`"), "{e}");
}

#[test]
fn operator_field_type_mismatch() {
    assert_eq!(
        first_error("rules:\n  - id: a\n    severity: low\n    when: {process.exe: {gt: 3}}\n"),
        "t.yaml:4:26: operator `gt` does not apply to `process.exe`, which is a string"
    );
    assert_eq!(
        first_error(
            "rules:\n  - id: a\n    severity: low\n    when: {process.exe: {cidr: 10.0.0.0/8}}\n"
        ),
        "t.yaml:4:26: operator `cidr` does not apply to `process.exe`, which is a string"
    );
    assert_eq!(
        first_error("rules:\n  - id: a\n    severity: low\n    when: {workload: {equals: x}}\n"),
        "t.yaml:4:23: `workload` is an object; only `exists` applies to it"
    );
}

#[test]
fn rule_shape_errors() {
    assert_eq!(
        first_error("rules:\n  - id: a\n    severity: low\n"),
        "t.yaml:2:5: rule `a` needs a `when` condition or a `sequence`"
    );
    assert_eq!(
        first_error("rules:\n  - severity: low\n    when: {kind: exec}\n"),
        "t.yaml:2:5: this rule has no `id`"
    );
    assert_eq!(
        first_error("rules:\n  - id: a\n    when: {kind: exec}\n"),
        "t.yaml:2:5: rule `a` has no `severity`"
    );
    assert_eq!(
        first_error("rules:\n  - id: a\n    severity: low\n    throttle: {window: soon}\n    when: {kind: exec}\n"),
        "t.yaml:4:24: `window` must be a duration such as 30s, 500ms, 5m or 1h"
    );
    assert_eq!(
        first_error("rules:\n  - id: a\n    severity: low\n    throttle: {window: 1s, max: 0}\n    when: {kind: exec}\n"),
        "t.yaml:4:33: `max` must be a whole number of at least 1"
    );
    assert_eq!(
        first_error("rules:\n  - id: a\n    severity: low\n    sequence: {by: host, within: 5s, steps: [{when: {kind: exec}}, {when: {kind: open}}]}\n"),
        "t.yaml:4:20: unknown sequence key `host`; expected process, tree or workload"
    );
    assert_eq!(
        first_error("rules:\n  - id: a\n    severity: low\n    sequence: {within: 5s, steps: [{when: {kind: exec}}]}\n"),
        "t.yaml:4:35: a sequence needs between 2 and 16 steps, not 1"
    );
}

#[test]
fn macro_errors_point_at_the_macro() {
    let text = "macros:\n  m: {process.exe: {glob: \"[\"}}\n  loop: {macro: loop}\nrules:\n  - id: a\n    severity: low\n    when: {macro: m}\n";
    let errors = load(text).expect_err("broken macro");
    let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(
        all.iter()
            .any(|e| e.starts_with("t.yaml:2:27: bad glob `[`")),
        "{all:?}"
    );
    assert!(
        all.iter()
            .any(|e| e == "t.yaml:3:17: macro `loop` refers to itself"),
        "{all:?}"
    );
    assert!(
        all.iter()
            .any(|e| e == "t.yaml:7:19: macro `m` has an error (reported at its definition)"),
        "{all:?}"
    );
}

#[test]
fn duplicate_list_across_files_names_both() {
    let errors = PolicySet::from_sources(&[
        Source {
            name: Arc::from("a.yaml"),
            text: "lists:\n  l: [x]\n".into(),
        },
        Source {
            name: Arc::from("b.yaml"),
            text: "\nlists:\n  l: [y]\n".into(),
        },
    ])
    .expect_err("duplicate list");
    assert_eq!(
        errors.to_string(),
        "b.yaml:3:3: list `l` is already defined at a.yaml:2:3"
    );
}

#[test]
fn duplicate_yaml_key_and_several_documents() {
    let e = first_error("rules: []\nrules: []\n");
    assert!(
        e.starts_with("t.yaml:2:1:") && e.contains("duplicated key"),
        "{e}"
    );
    assert_eq!(
        first_error("rules: []\n---\nrules: []\n"),
        "t.yaml:3:1: a policy file holds a single YAML document; remove the `---` separator"
    );
}

#[test]
fn deep_nesting_is_refused() {
    let text = format!("rules: {}{}\n", "[".repeat(200), "]".repeat(200));
    let e = first_error(&text);
    assert!(e.contains("nesting is deeper than 64 levels"), "{e}");
}

#[test]
fn test_section_errors() {
    assert_eq!(
        first_error("tests:\n  - name: t\n    events: []\n    expect: [ghost]\n"),
        "t.yaml:4:14: `expect` names unknown rule `ghost`"
    );
    assert_eq!(
        first_error("tests:\n  - name: t\n    events:\n      - {kind: exec, proces: {pid: 1}}\n    expect: []\n"),
        "t.yaml:4:9: unknown event field `proces`"
    );
    let e = first_error("tests:\n  - name: t\n    events:\n      - {kind: exce}\n    expect: []\n");
    assert!(
        e.starts_with("t.yaml:4:9: this is not a valid event:"),
        "{e}"
    );
}

#[test]
fn errors_are_collected_across_rules() {
    let errors = load("rules:\n  - id: a\n    severity: bad\n    when: {kind: exec}\n  - id: b\n    severity: low\n    when: {nope: 1}\n")
        .expect_err("two errors");
    assert_eq!(errors.len(), 2, "{errors}");
}

// ---- evaluation ----

#[test]
fn operators_on_fields() {
    let mut engine = engine(
        r#"
lists:
  shells: [sh, bash]
  ports: [22, 4444]
rules:
  - {id: eq, severity: low, when: {kind: exec, process.exe: /bin/sh}}
  - {id: in-list, severity: low, when: {kind: exec, process.name: {in: shells}}}
  - {id: glob, severity: low, when: {kind: exec, process.exe: {glob: "/usr/**/py*"}}}
  - {id: argv-any, severity: low, when: {kind: exec, process.argv: {contains: "evil"}}}
  - {id: ancestors, severity: low, when: {kind: exec, "process.ancestors[*].exe": {suffix: /jupyter}}}
  - {id: cidr, severity: low, when: {kind: connect, net.dst.ip: {cidr: [10.0.0.0/8, "fd00::/8"]}}}
  - {id: port, severity: low, when: {kind: connect, net.dst.port: {in: ports}}}
  - {id: size, severity: low, when: {kind: tcp_summary, net.bytes_sent: {gte: 1MiB}}}
  - {id: no-workload, severity: low, when: {kind: open, workload: {exists: false}}}
  - {id: bits, severity: low, when: {kind: exec_memory, syscall.prot: {bits_all: 6}}}
  - {id: not-any, severity: low, when: {kind: dns, not: {any: [{dns.name: a.com}, {dns.name: b.com}]}}}
"#,
    );
    let exec = event(
        serde_json::json!({"kind": "exec", "process": {"pid": 5, "exe": "/bin/sh", "argv": ["sh", "-c", "an evil thing"], "ancestors": [{"pid": 2, "exe": "/usr/bin/bash"}, {"pid": 1, "exe": "/opt/conda/bin/jupyter"}]}}),
    );
    assert_eq!(
        ids(&engine.evaluate(&exec)),
        ["eq", "in-list", "argv-any", "ancestors"]
    );
    let py = event(
        serde_json::json!({"kind": "exec", "process": {"exe": "/usr/local/bin/python3", "argv": ["python3"]}}),
    );
    assert_eq!(ids(&engine.evaluate(&py)), ["glob"]);
    let conn = event(
        serde_json::json!({"kind": "connect", "net": {"family": "ipv6", "dst": {"ip": "::ffff:10.1.2.3", "port": 4444}}}),
    );
    assert_eq!(ids(&engine.evaluate(&conn)), ["cidr", "port"]);
    let conn6 = event(
        serde_json::json!({"kind": "connect", "net": {"family": "ipv6", "dst": {"ip": "fd00::1", "port": 80}}}),
    );
    assert_eq!(ids(&engine.evaluate(&conn6)), ["cidr"]);
    let sum = event(
        serde_json::json!({"kind": "tcp_summary", "net": {"family": "ipv4", "bytes_sent": 1048576}}),
    );
    assert_eq!(ids(&engine.evaluate(&sum)), ["size"]);
    let sum = event(
        serde_json::json!({"kind": "tcp_summary", "net": {"family": "ipv4", "bytes_sent": 1048575}}),
    );
    assert!(engine.evaluate(&sum).is_empty());
    let open = event(
        serde_json::json!({"kind": "open", "workload": {"id": "w", "kind": "inference", "name": "n"}}),
    );
    assert!(engine.evaluate(&open).is_empty());
    let open = event(serde_json::json!({"kind": "open"}));
    assert_eq!(ids(&engine.evaluate(&open)), ["no-workload"]);
    let rx = event(serde_json::json!({"kind": "exec_memory", "syscall": {"result": 0, "prot": 5}}));
    assert!(engine.evaluate(&rx).is_empty());
    let rwx =
        event(serde_json::json!({"kind": "exec_memory", "syscall": {"result": 0, "prot": 7}}));
    assert_eq!(ids(&engine.evaluate(&rwx)), ["bits"]);
    let dns = event(serde_json::json!({"kind": "dns", "dns": {"name": "a.com"}}));
    assert!(engine.evaluate(&dns).is_empty());
    let dns = event(serde_json::json!({"kind": "dns", "dns": {"name": "c.com"}}));
    assert_eq!(ids(&engine.evaluate(&dns)), ["not-any"]);
}

#[test]
fn rules_are_indexed_by_kind() {
    let set = load("rules:\n  - {id: a, severity: low, when: {kind: [exec, fork]}}\n  - {id: b, severity: low, when: {process.pid: 1}}\n  - {id: c, severity: low, enabled: false, when: {kind: exec}}\n")
        .expect("loads");
    use crate::event::Kind;
    assert_eq!(set.rules_for_kind(Kind::Exec), 2);
    assert_eq!(set.rules_for_kind(Kind::Fork), 2);
    assert_eq!(set.rules_for_kind(Kind::Open), 1);
    let mut out = Vec::new();
    set.index[Kind::Exec.index()].candidates(&event(serde_json::json!({"kind": "exec"})), &mut out);
    assert_eq!(out, vec![0, 1]);
    set.index[Kind::Open.index()].candidates(&event(serde_json::json!({"kind": "open"})), &mut out);
    assert_eq!(out, vec![1]);
    assert_eq!(set.rule_count(), 2);
}

#[test]
fn exceptions_suppress_and_are_counted() {
    let mut engine = engine("rules:\n  - id: a\n    severity: low\n    when: {kind: exec}\n    exceptions:\n      - {name: health, when: {process.argv: {contains: /opt/health.sh}}}\n");
    let health =
        event(serde_json::json!({"kind": "exec", "process": {"argv": ["sh", "/opt/health.sh"]}}));
    let other =
        event(serde_json::json!({"kind": "exec", "process": {"argv": ["sh", "/tmp/x.sh"]}}));
    assert!(engine.evaluate(&health).is_empty());
    assert_eq!(ids(&engine.evaluate(&other)), ["a"]);
    assert_eq!(engine.stats().excepted, 1);
}

#[test]
fn throttle_limits_per_key_and_window() {
    let mut engine = engine("rules:\n  - id: a\n    severity: low\n    when: {kind: exec}\n    throttle: {key: process.exe, window: 10s, max: 2}\n");
    let at = |exe: &str, seconds: u64| {
        event(
            serde_json::json!({"kind": "exec", "ktime_ns": seconds * 1_000_000_000, "process": {"exe": exe}}),
        )
    };
    let mut fired = 0;
    for second in 0..5 {
        fired += engine.evaluate(&at("/bin/a", second)).len();
    }
    assert_eq!(fired, 2);
    assert_eq!(
        engine.evaluate(&at("/bin/b", 5)).len(),
        1,
        "other key has its own budget"
    );
    assert_eq!(
        engine.evaluate(&at("/bin/a", 11)).len(),
        1,
        "a new window starts"
    );
    assert_eq!(engine.stats().throttled, 3);
}

const SEQ: &str = "rules:\n  - id: s\n    severity: high\n    sequence:\n      by: BY\n      within: 10s\n      steps:\n        - {name: first, when: {kind: open, file.class: pickle-model}}\n        - {name: then, when: {kind: [exec, connect]}}\n";

fn seq_engine(by: &str) -> PolicyEngine {
    engine(&SEQ.replace("BY", by))
}

fn open_pickle(pid: u32, seconds: u64) -> crate::event::Event {
    event(
        serde_json::json!({"kind": "open", "ktime_ns": seconds * 1_000_000_000,
        "process": {"pid": pid, "start_time": "2026-01-01T00:00:00Z"}, "file": {"path": "/m.pkl", "class": "pickle-model"},
        "workload": {"id": "w1", "kind": "inference", "name": "n"}}),
    )
}

fn exec_child(pid: u32, parent: u32, seconds: u64) -> crate::event::Event {
    event(
        serde_json::json!({"kind": "exec", "ktime_ns": seconds * 1_000_000_000,
        "process": {"pid": pid, "ppid": parent, "exe": "/bin/sh", "start_time": "2026-01-01T00:00:01Z", "ancestors": [{"pid": parent, "exe": "/usr/bin/python3"}, {"pid": 1, "exe": "/sbin/init"}]},
        "parent": {"pid": parent, "exe": "/usr/bin/python3"},
        "workload": {"id": "w1", "kind": "inference", "name": "n"}}),
    )
}

#[test]
fn sequence_by_tree_matches_descendants_and_expires() {
    let mut engine = seq_engine("tree");
    assert!(engine.evaluate(&open_pickle(100, 1)).is_empty());
    let alerts = engine.evaluate(&exec_child(101, 100, 5));
    assert_eq!(ids(&alerts), ["s"]);
    assert_eq!(alerts[0].steps.len(), 2);
    assert_eq!(alerts[0].steps[0].process.pid, 100);
    assert!(
        alerts[0].summary.ends_with("started /bin/sh (pid 101), after an unknown program (pid 100) opened /m.pkl (pickle-model) in workload n (inference)"),
        "{}",
        alerts[0].summary
    );

    // Outside the window: no alert, and the partial is counted as expired.
    assert!(engine.evaluate(&open_pickle(200, 20)).is_empty());
    assert!(engine.evaluate(&exec_child(201, 200, 31)).is_empty());
    assert_eq!(engine.stats().sequences_expired, 1);
    // An unrelated process tree does not complete it.
    assert!(engine.evaluate(&open_pickle(300, 40)).is_empty());
    assert!(engine.evaluate(&exec_child(401, 400, 41)).is_empty());
    assert_eq!(engine.stats().sequences_completed, 1);
}

#[test]
fn sequence_by_process_needs_the_same_process() {
    let mut engine = seq_engine("process");
    assert!(engine.evaluate(&open_pickle(100, 1)).is_empty());
    assert!(
        engine.evaluate(&exec_child(101, 100, 2)).is_empty(),
        "a child is another process"
    );
    let mut connect = open_pickle(100, 3);
    connect.kind = crate::event::Kind::Connect;
    connect.file = None;
    assert_eq!(ids(&engine.evaluate(&connect)), ["s"]);
    // Same pid, other start time: a different process.
    engine.evaluate(&open_pickle(100, 4));
    let mut reused = connect.clone();
    reused.ktime_ns = 5_000_000_000;
    reused.process.start_time = crate::event::WallTime::parse("2026-01-01T00:00:09Z").ok();
    assert!(engine.evaluate(&reused).is_empty());
}

#[test]
fn sequence_by_workload_and_caps() {
    let mut engine = seq_engine("workload");
    assert!(engine.evaluate(&open_pickle(100, 1)).is_empty());
    assert_eq!(ids(&engine.evaluate(&exec_child(555, 554, 2))), ["s"]);

    // Many processes each opening a pickle: the per-rule cap holds, and
    // evictions are counted.
    let mut engine = seq_engine("process");
    let total = super::sequence::MAX_PARTIALS_PER_RULE as u32 + 100;
    for pid in 0..total {
        engine.evaluate(&open_pickle(pid + 10, 1));
    }
    let stats = engine.stats();
    assert_eq!(
        stats.sequence_partials,
        super::sequence::MAX_PARTIALS_PER_RULE as u64
    );
    assert_eq!(stats.sequence_evictions, 100);
    // Repeated first steps of one process refresh a single partial.
    let mut engine = seq_engine("process");
    for second in 0..50 {
        engine.evaluate(&open_pickle(7, second));
    }
    assert_eq!(engine.stats().sequence_partials, 1);
}

#[test]
fn kill_action_is_left_to_the_runtime() {
    let mut engine = engine("rules:\n  - {id: k, severity: critical, action: kill, when: {kind: exec}}\n  - {id: a, severity: low, when: {kind: exec}}\n");
    let alerts = engine.evaluate(&event(serde_json::json!({"kind": "exec"})));
    assert_eq!(alerts[0].action, crate::alert::Action::Kill);
    assert!(!alerts[0].action_taken);
    assert_eq!(alerts[1].action, crate::alert::Action::Alert);
    assert!(alerts[1].action_taken);
}

#[test]
fn summary_names_process_and_object() {
    let mut engine = engine("rules:\n  - {id: o, description: Model read, severity: low, when: {kind: [open, connect, exec]}}\n");
    let open = event(
        serde_json::json!({"kind": "open", "process": {"pid": 42, "exe": "/usr/bin/cat"},
        "file": {"path": "/models/m.gguf", "access": "read", "class": "model"},
        "workload": {"id": "w", "kind": "inference", "name": "llama"}}),
    );
    assert_eq!(
        engine.evaluate(&open)[0].summary,
        "Model read: /usr/bin/cat (pid 42) opened /models/m.gguf (model) for reading in workload llama (inference)"
    );
    let connect = event(
        serde_json::json!({"kind": "connect", "process": {"pid": 7, "exe": "/tmp/x"},
        "net": {"family": "ipv4", "dst": {"ip": "203.0.113.1", "port": 3333}}}),
    );
    assert_eq!(
        engine.evaluate(&connect)[0].summary,
        "Model read: /tmp/x (pid 7) connected to 203.0.113.1:3333"
    );
    let exec = event(
        serde_json::json!({"kind": "exec", "process": {"pid": 8, "exe": "/bin/sh", "argv": ["sh", "-c", "id"]},
        "parent": {"pid": 7, "exe": "/usr/bin/python3"}}),
    );
    assert_eq!(
        engine.evaluate(&exec)[0].summary,
        "Model read: /usr/bin/python3 (pid 7) started /bin/sh (pid 8): sh -c id"
    );
}

#[test]
fn swap_keeps_state_of_unchanged_rules_only() {
    let text = SEQ.replace("BY", "process");
    let mut engine = engine(&text);
    engine.evaluate(&open_pickle(100, 1));
    let mut connect = open_pickle(100, 2);
    connect.kind = crate::event::Kind::Connect;
    connect.file = None;

    // Same rule text (plus an unrelated rule): the partial match survives.
    let same = format!("{text}  - {{id: other, severity: low, when: {{kind: fork}}}}\n");
    engine.swap(Arc::new(load(&same).expect("loads")));
    assert_eq!(ids(&engine.evaluate(&connect)), ["s"]);

    // A changed window is a different rule: state is dropped.
    engine.evaluate(&open_pickle(100, 3));
    engine.swap(Arc::new(load(&text.replace("10s", "11s")).expect("loads")));
    connect.ktime_ns = 4_000_000_000;
    assert!(engine.evaluate(&connect).is_empty());
    assert_eq!(engine.stats().swaps, 2);
}

#[test]
fn replay_writes_alert_lines_and_counts_bad_lines() {
    let mut engine = engine("rules:\n  - {id: a, severity: low, when: {kind: exec}}\n");
    let input = format!(
        "{}\nnot json\n\n{}\n",
        serde_json::to_string(&event(serde_json::json!({"kind": "exec"}))).expect("json"),
        serde_json::to_string(&event(serde_json::json!({"kind": "open"}))).expect("json"),
    );
    let mut output = Vec::new();
    let mut extra_calls = 0;
    let stats = replay(&mut engine, input.as_bytes(), &mut output, &mut |ev| {
        extra_calls += 1;
        let mut alert = crate::policy::PolicyEngine::new(Arc::new(PolicySet::empty())).evaluate(ev);
        alert.clear();
        alert
    })
    .expect("replay");
    assert_eq!((stats.events, stats.bad_lines, stats.alerts), (2, 1, 1));
    assert_eq!(extra_calls, 2);
    let text = String::from_utf8(output).expect("utf8");
    let alert: crate::alert::Alert = serde_json::from_str(text.trim()).expect("one alert line");
    assert_eq!(alert.rule, "a");
}

#[test]
fn replay_takes_hand_written_events_without_internal_fields() {
    let mut engine = engine(
        "rules:\n  - id: seq\n    severity: low\n    sequence:\n      within: 5s\n      steps:\n        - {name: a, when: {kind: exec}}\n        - {name: b, when: {kind: connect}}\n",
    );
    // The minimal event of docs/events.md: a kind and what the rule reads.
    // The first pair is 1 ms apart (no time), the second 10 s apart by `time`.
    let input = concat!(
        "{\"kind\": \"exec\", \"process\": {\"pid\": 7}}\n",
        "{\"kind\": \"connect\", \"process\": {\"pid\": 7}}\n",
        "{\"time\": \"2026-01-01T00:00:00Z\", \"kind\": \"exec\", \"process\": {\"pid\": 8}}\n",
        "{\"time\": \"2026-01-01T00:00:10Z\", \"kind\": \"connect\", \"process\": {\"pid\": 8}}\n",
        "{\"kind\": \"exit\"}\n",
    );
    let mut output = Vec::new();
    let stats = replay(&mut engine, input.as_bytes(), &mut output, &mut |_| {
        Vec::new()
    })
    .expect("replay");
    assert_eq!((stats.events, stats.bad_lines), (5, 0));
    let text = String::from_utf8(output).expect("utf8");
    let alerts: Vec<crate::alert::Alert> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("alert line"))
        .collect();
    assert_eq!(alerts.len(), 1, "{text}");
    assert_eq!(alerts[0].event.process.pid, 7);
}

#[test]
fn durations_are_humantime_durations_or_seconds() {
    let rule = |window: &str| {
        format!("rules:\n  - id: a\n    severity: low\n    throttle: {{window: {window}}}\n    when: {{kind: exec}}\n")
    };
    for good in ["30s", "500ms", "5m", "1h", "2d", "1h 30m", "90", "1min"] {
        assert!(load(&rule(good)).is_ok(), "{good}");
    }
    for bad in ["soon", "0s", "-5s", "5 parsecs", "0"] {
        assert!(
            first_error(&rule(bad)).contains("`window` must be a duration"),
            "{bad}"
        );
    }
}

#[test]
fn load_reads_folders_and_reports_missing_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("a.yaml"),
        "rules:\n  - {id: a, severity: low, when: {kind: exec}}\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("b.yml"),
        "rules:\n  - {id: b, severity: low, when: {kind: open}}\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("notes.txt"), "not a policy").expect("write");
    let set = PolicySet::load(&[dir.path().to_path_buf()], false).expect("loads");
    assert_eq!(set.rule_count(), 2);
    let with_pack = PolicySet::load(&[dir.path().to_path_buf()], true).expect("loads");
    assert_eq!(
        with_pack.rule_count(),
        2 + PolicySet::default_pack().expect("pack").rule_count()
    );
    let missing = dir.path().join("missing.yaml");
    let errors = PolicySet::load(&[missing], false).expect_err("missing file");
    assert!(
        errors
            .to_string()
            .contains("missing.yaml:1:1: cannot read this file"),
        "{errors}"
    );
}

#[test]
fn pack_file_from_disk_replaces_the_embedded_copy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, text) = DEFAULT_PACK[1];
    let path = dir.path().join("copy.yaml");
    std::fs::write(&path, text).expect("write");
    let set = PolicySet::load(std::slice::from_ref(&path), true).expect("no duplicate ids");
    let file = path.display().to_string();
    assert!(set.files().iter().any(|f| **f == *file));
    assert_eq!(
        set.rule_count(),
        PolicySet::default_pack().expect("pack").rule_count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_the_old_set_on_a_broken_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.yaml");
    std::fs::write(
        &path,
        "rules:\n  - {id: a, severity: low, when: {kind: exec}}\n",
    )
    .expect("write");
    let initial = Arc::new(PolicySet::load(std::slice::from_ref(&path), false).expect("loads"));
    let mut reloader = spawn_reloader(vec![path.clone()], false, initial).expect("reloader");

    std::fs::write(
        &path,
        "rules:\n  - {id: a, severity: nope, when: {kind: exec}}\n",
    )
    .expect("write");
    // The file watch notices the change by itself.
    let outcome =
        tokio::time::timeout(std::time::Duration::from_secs(10), reloader.outcomes.recv())
            .await
            .expect("a reload outcome")
            .expect("channel open");
    match outcome {
        ReloadOutcome::Failed(errors) => assert!(
            errors.to_string().contains("unknown severity `nope`"),
            "{errors}"
        ),
        other => panic!("expected a failure, got {other:?}"),
    }
    assert_eq!(reloader.current.borrow().rule_count(), 1);
    assert!(reloader.current.borrow().rule("a").is_some());

    std::fs::write(&path, "rules:\n  - {id: a, severity: low, when: {kind: exec}}\n  - {id: b, severity: low, when: {kind: open}}\n").expect("write");
    reloader.reload_now();
    loop {
        let outcome =
            tokio::time::timeout(std::time::Duration::from_secs(10), reloader.outcomes.recv())
                .await
                .expect("a reload outcome")
                .expect("channel open");
        if let ReloadOutcome::Loaded { rules } = outcome {
            assert_eq!(rules, 2);
            break;
        }
    }
    assert_eq!(reloader.current.borrow().rule_count(), 2);
    assert!(
        reloader
            .counters
            .failed
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    assert!(
        reloader
            .counters
            .ok
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
}

#[test]
fn lists_can_be_extended_from_another_file() {
    let set = PolicySet::from_sources(&[
        Source {
            name: Arc::from("local.yaml"),
            text: "lists:\n  shells: {append: [fish]}\n".into(),
        },
        Source {
            name: Arc::from("base.yaml"),
            text: "lists:\n  shells: [sh]\nrules:\n  - {id: a, severity: low, when: {kind: exec, process.name: {in: shells}}}\n".into(),
        },
    ])
    .expect("loads");
    let mut engine = PolicyEngine::new(Arc::new(set));
    let fish = event(serde_json::json!({"kind": "exec", "process": {"exe": "/usr/bin/fish"}}));
    let zsh = event(serde_json::json!({"kind": "exec", "process": {"exe": "/usr/bin/zsh"}}));
    assert_eq!(ids(&engine.evaluate(&fish)), ["a"]);
    assert!(engine.evaluate(&zsh).is_empty());
    assert_eq!(
        first_error("lists:\n  nope: {append: [x]}\n"),
        "t.yaml:2:3: cannot append to unknown list `nope`"
    );
}

#[test]
fn simple_globs_match_like_globset() {
    let patterns = [
        "/models/**",
        "**/*.safetensors",
        "**/token",
        "**/huggingface/token",
        "/bin/sh",
        "python3*",
        "/usr/**/py*",
        "**/.cache/huggingface/**",
        "*.gguf",
    ];
    let paths = [
        "/models/a",
        "/models/a/b.bin",
        "/models",
        "/modelsx/a",
        "/x/m.safetensors",
        "m.safetensors",
        "/x/m.safetensors.tmp",
        "/root/.cache/huggingface/token",
        "token",
        "/x/mytoken",
        "/bin/sh",
        "/bin/shx",
        "python3.11",
        "/usr/lib/python3",
        "/root/.cache/huggingface/hub/x",
        "a.gguf",
        "/m/a.gguf",
    ];
    for pattern in patterns {
        let reference = globset::GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .expect("valid")
            .compile_matcher();
        let mut matcher = super::cond::GlobMatcher::default();
        if !matcher.add_simple(pattern) {
            continue;
        }
        for path in paths {
            assert_eq!(
                matcher.is_match(path),
                reference.is_match(path),
                "{pattern} on {path}"
            );
        }
    }
}

#[test]
fn index_skips_rules_whose_required_field_differs() {
    let set = load(
        r#"
macros:
  server: {workload.kind: {in: [inference, training]}}
rules:
  - {id: by-class, severity: low, when: {kind: open, file.class: secret}}
  - {id: by-macro, severity: low, when: {kind: open, macro: server}}
  - {id: by-absence, severity: low, when: {kind: open, workload: {exists: false}}}
  - {id: always, severity: low, when: {kind: open, file.path: {prefix: /}}}
  - {id: any-not-indexed, severity: low, when: {kind: open, any: [{file.class: secret}, {file.class: model}]}}
"#,
    )
    .expect("loads");
    let open = crate::event::Kind::Open.index();
    assert_eq!(set.index[open].rule_count(), 5);
    let mut out = Vec::new();
    let ev = event(serde_json::json!({"kind": "open", "file": {"path": "/a", "class": "secret"}}));
    set.index[open].candidates(&ev, &mut out);
    assert_eq!(out, vec![0, 2, 3, 4]);
    let ev = event(serde_json::json!({"kind": "open", "file": {"path": "/a"},
        "workload": {"id": "w", "kind": "training", "name": "t"}}));
    set.index[open].candidates(&ev, &mut out);
    assert_eq!(out, vec![1, 3, 4]);
    // The index never changes what matches.
    let mut engine = PolicyEngine::new(Arc::new(set));
    assert_eq!(ids(&engine.evaluate(&ev)), ["by-macro", "always"]);
}

#[test]
fn macro_chains_are_bounded() {
    let mut text = String::from("macros:\n");
    for level in 0..40 {
        text.push_str(&format!("  m{level}: {{macro: m{}}}\n", level + 1));
    }
    text.push_str("  m40: {kind: exec}\nrules:\n  - {id: a, severity: low, when: {macro: m0}}\n");
    let errors = load(&text).expect_err("too deep");
    assert!(
        errors
            .iter()
            .any(|e| e.message.contains("macros nest deeper than 32 levels")),
        "{errors}"
    );
    // A chain within the limit loads and works.
    let mut text = String::from("macros:\n");
    for level in 0..10 {
        text.push_str(&format!("  m{level}: {{macro: m{}}}\n", level + 1));
    }
    text.push_str("  m10: {kind: exec}\nrules:\n  - {id: a, severity: low, when: {macro: m0}}\n");
    let mut engine = engine(&text);
    assert_eq!(
        ids(&engine.evaluate(&event(serde_json::json!({"kind": "exec"})))),
        ["a"]
    );
}

#[test]
fn command_entry_points_report_through_exit_codes() {
    let code = |c: std::process::ExitCode| format!("{c:?}");
    let ok = code(std::process::ExitCode::SUCCESS);
    let pack_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    assert_eq!(
        code(check_command(std::slice::from_ref(&pack_dir), true)),
        ok
    );
    assert_eq!(
        code(test_command(std::slice::from_ref(&pack_dir), true)),
        ok
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let failing = dir.path().join("failing.yaml");
    std::fs::write(
        &failing,
        "rules:\n  - {id: a, severity: low, when: {kind: exec}}\ntests:\n  - {name: wrong, events: [{kind: open}], expect: [a]}\n",
    )
    .expect("write");
    assert_ne!(
        code(test_command(std::slice::from_ref(&failing), false)),
        ok
    );
    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, "rules: [{id: a}]\n").expect("write");
    assert_ne!(
        code(check_command(std::slice::from_ref(&broken), false)),
        ok
    );

    let events = dir.path().join("events.jsonl");
    std::fs::write(
        &events,
        "{\"time\":\"\",\"ktime_ns\":1,\"kind\":\"exec\",\"process\":{}}\n",
    )
    .expect("write");
    assert_eq!(
        code(replay_command(
            std::slice::from_ref(&failing),
            false,
            Some(&events)
        )),
        ok
    );
}

/// Loads a policy file and runs the tests it carries: there are `count`
/// and each passes.
fn assert_inline_tests_pass(text: &str, count: usize) {
    let set = load(text).unwrap_or_else(|errors| panic!("{errors}"));
    let outcomes = run_tests(&Arc::new(set), |_| true);
    assert_eq!(outcomes.len(), count);
    for outcome in &outcomes {
        assert!(
            outcome.passed(),
            "{}: expected {:?}, got {:?}",
            outcome.name,
            outcome.expected,
            outcome.got
        );
    }
}

#[test]
fn an_egress_rule_speaks_of_network_peers_not_unix_sockets() {
    // Without a HOME, glibc asks nscd over a unix socket; an allowlist of
    // IP destinations must not call that egress. Other rules on connects
    // still see unix sockets.
    assert_inline_tests_pass(
        "rules:\n  - id: egress\n    severity: high\n    action: deny\n    when:\n      kind: [connect, udp_send]\n      not:\n        any:\n          - {net.dst.ip: 10.0.0.1, net.dst.port: 53}\n          - net.dst_name: hub.example.com\n  - id: nscd\n    severity: low\n    when: {kind: connect, net.unix_path: /var/run/nscd/socket}\n  - id: no-address\n    severity: low\n    when: {kind: connect, not: {net.dst.ip: {exists: true}}}\ntests:\n  - name: unix connect\n    events: [{kind: connect, net: {family: unix, unix_path: /var/run/nscd/socket}}]\n    expect: [nscd, no-address]\n  - name: unix send\n    events: [{kind: udp_send, net: {family: unix, unix_path: /dev/log}}]\n    expect: []\n  - name: an IP outside the list\n    events: [{kind: connect, net: {family: ipv4, dst: {ip: 10.0.0.2, port: 53}}}]\n    expect: [egress]\n  - name: an IP in the list\n    events: [{kind: udp_send, net: {family: ipv4, dst: {ip: 10.0.0.1, port: 53}}}]\n    expect: []\n  - name: a rule on the absence of an address is no allowlist\n    events: [{kind: connect, net: {family: unix, unix_path: /run/x.sock}}]\n    expect: [no-address]\n",
        5,
    );
}

#[test]
fn a_sequence_step_on_egress_is_held_to_network_peers_too() {
    assert_inline_tests_pass(
        "rules:\n  - id: token-then-egress\n    severity: high\n    sequence:\n      by: process\n      within: 1m\n      steps:\n        - name: token\n          when: {kind: open, file.path: /root/token}\n        - name: out\n          when:\n            kind: connect\n            not: {net.dst.ip: {cidr: 10.0.0.0/8}}\ntests:\n  - name: a unix connect after the token\n    events:\n      - {kind: open, process: {pid: 7}, file: {path: /root/token}}\n      - {kind: connect, process: {pid: 7}, net: {family: unix, unix_path: /var/run/nscd/socket}}\n    expect: []\n  - name: an outside address after the token\n    events:\n      - {kind: open, process: {pid: 8}, file: {path: /root/token}}\n      - {kind: connect, process: {pid: 8}, net: {family: ipv4, dst: {ip: 203.0.113.9, port: 443}}}\n    expect: [token-then-egress]\n",
        2,
    );
}
