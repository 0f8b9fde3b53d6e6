use std::sync::Arc;

use super::*;
use crate::policy::set::Source;

fn placements(text: &str) -> Vec<(String, Placement)> {
    let set = PolicySet::from_sources(&[Source {
        name: Arc::from("t.yaml"),
        text: text.into(),
    }])
    .expect("valid policy");
    plan(&set)
        .into_iter()
        .map(|p| (p.rule.id.clone(), p.placement))
        .collect()
}

#[test]
fn an_exec_rule_on_exact_paths_goes_to_the_kernel() {
    let got = placements(
        "rules:\n  - id: a\n    severity: high\n    action: kill\n    when:\n      kind: exec\n      process.exe: [/tmp/b, /tmp/a]\n",
    );
    assert_eq!(
        got,
        vec![(
            "a".into(),
            Placement::Kernel(KernelRule::ExecDeny {
                exes: vec!["/tmp/a".into(), "/tmp/b".into()]
            })
        )]
    );
}

#[test]
fn names_patterns_and_other_fields_stay_in_user_space() {
    let got = placements(
        "rules:\n  - id: by-name\n    severity: high\n    action: kill\n    when:\n      kind: exec\n      process.name: xmrig\n  - id: by-glob\n    severity: high\n    action: kill\n    when:\n      kind: exec\n      process.exe: {glob: '/tmp/**'}\n  - id: alert-only\n    severity: high\n    when:\n      kind: exec\n",
    );
    assert_eq!(got.len(), 2, "rules without an action are not planned");
    assert_eq!(
        got[0].1,
        Placement::UserSpace("its condition on `process.name` is not decided in the kernel".into())
    );
    assert!(matches!(&got[1].1, Placement::UserSpace(why) if why.contains("pattern")));
}

#[test]
fn an_open_rule_on_exact_files_goes_to_the_kernel() {
    let got = placements(
        "rules:\n  - id: o\n    severity: high\n    action: kill\n    when:\n      kind: open\n      file.path: [/models/b.safetensors, /models/a.safetensors]\n      not:\n        process.exe: /opt/server/python3\n  - id: by-glob\n    severity: high\n    action: kill\n    when:\n      kind: open\n      file.path: {glob: '/models/**'}\n",
    );
    assert_eq!(
        got[0].1,
        Placement::Kernel(KernelRule::OpenKill {
            files: vec![
                "/models/a.safetensors".into(),
                "/models/b.safetensors".into()
            ],
            allowed: vec!["/opt/server/python3".into()],
        })
    );
    assert!(
        matches!(&got[1].1, Placement::UserSpace(why) if why.contains("pattern")),
        "{got:?}"
    );
}

#[test]
fn a_deny_of_an_open_on_exact_files_goes_to_the_kernel() {
    let got = placements(
        "rules:\n  - id: o\n    severity: high\n    action: deny\n    when:\n      kind: open\n      file.path: /models/a.safetensors\n",
    );
    assert_eq!(
        got[0].1,
        Placement::Kernel(KernelRule::OpenKill {
            files: vec!["/models/a.safetensors".into()],
            allowed: Vec::new(),
        })
    );
    assert!(got[0].1.describe().contains("file_open"), "{got:?}");
}

#[test]
fn an_egress_allowlist_goes_to_the_kernel() {
    let got = placements(
        "rules:\n  - id: e\n    severity: high\n    action: deny\n    when:\n      kind: [connect, udp_send]\n      workload.name: model\n      not:\n        any:\n          - net.dst.ip: {cidr: 10.0.0.0/8}\n          - {net.dst.ip: [127.0.0.1, '::1'], net.dst.port: [8443, 8080]}\n          - net.dst.port: 53\n          - {net.dst_name: [API.example.com., hub.example.org], net.dst.port: 443}\n",
    );
    let peer = |net: &str, port| EgressPeer {
        net: net.parse().unwrap(),
        port,
    };
    let Placement::Kernel(KernelRule::EgressAllow {
        workload,
        peers,
        names,
    }) = &got[0].1
    else {
        panic!("{got:?}");
    };
    assert_eq!(workload, "model");
    // Names are compared lower case, without the trailing dot.
    let name = |name: &str| EgressName {
        name: name.into(),
        port: Some(443),
    };
    assert_eq!(names, &[name("api.example.com"), name("hub.example.org")]);
    assert!(got[0].1.describe().contains("2 name(s)"), "{got:?}");
    let mut want = vec![
        peer("10.0.0.0/8", None),
        peer("127.0.0.1/32", Some(8080)),
        peer("127.0.0.1/32", Some(8443)),
        peer("::1/128", Some(8080)),
        peer("::1/128", Some(8443)),
        peer("0.0.0.0/0", Some(53)),
        peer("::/0", Some(53)),
    ];
    want.sort();
    assert_eq!(peers, &want);
}

#[test]
fn egress_rules_the_kernel_cannot_decide_say_why() {
    let got = placements(
        "rules:\n  - id: by-name\n    severity: high\n    action: deny\n    when:\n      kind: connect\n      workload.name: m\n      not:\n        net.dst_name: {glob: '*.example.com'}\n  - id: two-workloads\n    severity: high\n    action: deny\n    when:\n      kind: connect\n      not:\n        net.dst.port: 443\n  - id: first\n    severity: high\n    action: deny\n    when:\n      kind: connect\n      workload.name: m\n      not:\n        net.dst.port: 443\n  - id: second\n    severity: high\n    action: deny\n    when:\n      kind: connect\n      workload.name: m\n      not:\n        net.dst.port: 80\n",
    );
    assert!(
        matches!(&got[0].1, Placement::NotEnforced(why) if why.contains("only exact names")),
        "{got:?}"
    );
    assert!(
        matches!(&got[1].1, Placement::NotEnforced(why) if why.contains("workload.name")),
        "{got:?}"
    );
    assert!(matches!(&got[2].1, Placement::Kernel(_)), "{got:?}");
    assert!(
        matches!(&got[3].1, Placement::NotEnforced(why) if why.contains("rule first")),
        "{got:?}"
    );
}

#[test]
fn an_allowed_destination_of_names_and_addresses_at_once_is_refused() {
    let got = placements(
        "rules:\n  - id: e\n    severity: high\n    action: deny\n    when:\n      kind: connect\n      workload.name: m\n      not:\n        {net.dst_name: api.example.com, net.dst.ip: 10.0.0.1}\n",
    );
    assert!(
        matches!(&got[0].1, Placement::NotEnforced(why) if why.contains("both addresses and names")),
        "{got:?}"
    );
}

#[test]
fn dns_names_are_compared_in_one_spelling() {
    assert_eq!(
        dns_name("API.Example.com.").as_deref(),
        Some("api.example.com")
    );
    for bad in ["", ".", "a..b", "a b.com", "*.example.com", &"x".repeat(64)] {
        assert_eq!(dns_name(bad), None, "{bad:?}");
    }
}

#[test]
fn a_deny_the_kernel_cannot_decide_is_not_enforced() {
    let got = placements(
        "rules:\n  - id: d\n    severity: high\n    action: deny\n    when:\n      kind: connect\n",
    );
    assert!(matches!(&got[0].1, Placement::NotEnforced(_)), "{got:?}");
}
