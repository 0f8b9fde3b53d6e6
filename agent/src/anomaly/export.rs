//! `profile export --as-policy`: turns a learned profile into a policy file
//! (the language of `docs/policy.md`) whose rules allow exactly what was
//! learned for this workload and alert on anything else.

use serde::Serialize;
use serde_json::{json, Map, Value};

use super::config::Detector;
use super::generalize::{split_peer_item, EPHEMERAL_PORTS};
use super::profile::Profile;

/// The policy file: only `rules` are produced.
#[derive(Debug, Serialize)]
pub struct PolicyFile {
    pub rules: Vec<PolicyRule>,
}

#[derive(Debug, Serialize)]
pub struct PolicyRule {
    pub id: String,
    pub description: String,
    pub severity: String,
    pub tags: Vec<String>,
    pub when: Value,
}

/// Path classes that get a rule even when nothing of them was learned:
/// the profile would flag any such open.
const EXPORTED_PATH_CLASSES: [&str; 4] = ["model", "pickle-model", "dataset", "secret"];

/// The policy for one profile, as a value (serialise it with [`to_yaml`]).
pub fn policy_for(profile: &Profile) -> PolicyFile {
    let workload = &profile.workload;
    let slug = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect()
    };
    let id_base = format!(
        "anomaly.profile.{}.{}",
        slug(&workload.kind),
        slug(&workload.name)
    );
    let scope = |mut when: Map<String, Value>| -> Value {
        when.insert("workload.kind".into(), json!(workload.kind));
        when.insert("workload.name".into(), json!(workload.name));
        Value::Object(when)
    };
    let rule = |what: &str, detector: Detector, description: String, when: Value| PolicyRule {
        id: format!("{id_base}.{what}"),
        description,
        severity: detector.default_severity().as_str().to_string(),
        tags: vec!["anomaly-profile".into()],
        when,
    };
    let mut rules = Vec::new();

    let exes: Vec<&str> = profile.executables.iter().collect();
    rules.push(rule(
        "exec",
        Detector::NewExecutable,
        format!("{workload} ran an executable outside its learned set"),
        scope(with_not(
            [("kind".to_string(), json!("exec"))],
            any_of(
                exes.iter()
                    .map(|exe| field_match("process.exe", exe))
                    .collect(),
            ),
        )),
    ));

    let pairs: Vec<Value> = profile
        .process_pairs
        .iter()
        .filter_map(|pair| pair.split_once(" -> "))
        .map(|(parent, child)| {
            let mut both = Map::new();
            merge(&mut both, field_match("parent.exe", parent));
            merge(&mut both, field_match("process.exe", child));
            Value::Object(both)
        })
        .collect();
    rules.push(rule(
        "process-pair",
        Detector::NewProcessPair,
        format!("{workload} had a parent → child pair outside its learned set"),
        scope(with_not(
            [
                ("kind".to_string(), json!("exec")),
                ("parent.exe".to_string(), json!({"exists": true})),
            ],
            any_of(pairs),
        )),
    ));

    let peers: Vec<Value> = profile.peers.iter().filter_map(peer_condition).collect();
    rules.push(rule(
        "connect",
        Detector::NewPeer,
        format!("{workload} contacted a peer outside its learned set"),
        scope(with_not(
            [("kind".to_string(), json!({"in": ["connect", "udp_send"]}))],
            any_of(peers),
        )),
    ));

    let ports: Vec<Value> = profile
        .listen_ports
        .iter()
        .filter_map(|item| item.split_once('/'))
        .filter(|(protocol, _)| *protocol == "tcp")
        .map(|(_, port)| port_condition(port))
        .collect();
    rules.push(rule(
        "listen",
        Detector::NewListenPort,
        format!("{workload} listened on a port outside its learned set"),
        scope(with_not(
            [("kind".to_string(), json!("listen"))],
            any_of(ports),
        )),
    ));

    for class in EXPORTED_PATH_CLASSES {
        let patterns: Vec<&str> = profile
            .paths
            .get(class)
            .map(|set| set.iter().collect())
            .unwrap_or_default();
        let allowed = if patterns.is_empty() {
            None
        } else {
            Some(json!({"file.path": {"glob": patterns}}))
        };
        rules.push(rule(
            &format!("open-{class}"),
            Detector::NewFileClassPath,
            format!("{workload} opened a {class} file outside its learned paths"),
            scope(with_not(
                [
                    ("kind".to_string(), json!("open")),
                    ("file.class".to_string(), json!(class)),
                ],
                allowed,
            )),
        ));
    }
    PolicyFile { rules }
}

pub fn to_yaml(policy: &PolicyFile) -> Result<String, String> {
    serde_saphyr::to_string(policy).map_err(|e| e.to_string())
}

/// `{field: value}`, or `{field: {glob: value}}` for a generalised item.
fn field_match(field: &str, value: &str) -> Value {
    if value.contains('*') {
        json!({ field: {"glob": value} })
    } else {
        json!({ field: value })
    }
}

fn merge(into: &mut Map<String, Value>, condition: Value) {
    if let Value::Object(map) = condition {
        into.extend(map);
    }
}

/// One condition, or `any` of several; `None` when nothing was learned.
fn any_of(mut conditions: Vec<Value>) -> Option<Value> {
    match conditions.len() {
        0 => None,
        1 => conditions.pop(),
        _ => Some(json!({"any": conditions})),
    }
}

/// The base condition, plus `not: <allowed>` when something was learned.
fn with_not(
    base: impl IntoIterator<Item = (String, Value)>,
    allowed: Option<Value>,
) -> Map<String, Value> {
    let mut when: Map<String, Value> = base.into_iter().collect();
    if let Some(allowed) = allowed {
        when.insert("not".into(), allowed);
    }
    when
}

fn port_condition(port: &str) -> Value {
    if port == "ephemeral" {
        json!({"net.src.port": {"gte": EPHEMERAL_PORTS.start(), "lte": EPHEMERAL_PORTS.end()}})
    } else {
        match port.parse::<u16>() {
            Ok(port) => json!({ "net.src.port": port }),
            Err(_) => json!({ "net.src.port": port }),
        }
    }
}

fn peer_condition(item: &str) -> Option<Value> {
    let (host, port) = split_peer_item(item)?;
    let address = if host == "loopback" {
        json!({"net.dst.ip": {"cidr": ["127.0.0.0/8", "::1/128"]}})
    } else if host.parse::<ipnet::IpNet>().is_ok() {
        json!({"net.dst.ip": {"cidr": host}})
    } else {
        field_match("net.dst_name", host)
    };
    let mut condition = Map::new();
    merge(&mut condition, address);
    condition.insert("net.dst.port".into(), json!(port));
    Some(Value::Object(condition))
}
