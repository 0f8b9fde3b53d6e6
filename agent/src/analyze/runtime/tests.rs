use std::{collections::HashMap, sync::Arc, time::Duration};

use super::{cri, IdentityCache, RuntimeIdentity};
use crate::analyze::workload::WorkloadKind;
use crate::event::{Container, K8s};

const ID: &str = "4f1c2a3b5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7a8";

fn annotations(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn pod_annotations_declare_a_workload() {
    let declared = cri::declaration(
        ID,
        &annotations(&[
            ("aiwatch.io/workload", "fraud-model"),
            ("aiwatch.io/kind", "inference"),
        ]),
    )
    .expect("valid")
    .expect("declared");
    assert_eq!(declared.name, "fraud-model");
    assert_eq!(declared.kind, WorkloadKind::Inference);
    assert_eq!(declared.matcher.container_id.as_deref(), Some(ID));
    // No workload annotation: nothing declared, and no complaint.
    assert_eq!(
        cri::declaration(ID, &annotations(&[("other", "x")])),
        Ok(None)
    );
}

#[test]
fn bad_pod_annotations_are_errors_with_a_sentence() {
    let missing = cri::declaration(ID, &annotations(&[("aiwatch.io/workload", "w")]));
    assert_eq!(missing, Err(cri::AnnotationError::MissingKind));
    let bad = cri::declaration(
        ID,
        &annotations(&[("aiwatch.io/workload", "w"), ("aiwatch.io/kind", "miner")]),
    );
    let message = bad.expect_err("bad kind").to_string();
    assert!(message.contains("`miner` is not inference"), "{message}");
    // Discovery's catch-all kind cannot be declared.
    assert!(cri::declaration(
        ID,
        &annotations(&[
            ("aiwatch.io/workload", "w"),
            ("aiwatch.io/kind", "unknown-ai")
        ]),
    )
    .is_err());
    assert_eq!(
        cri::declaration(
            ID,
            &annotations(&[("aiwatch.io/workload", " "), ("aiwatch.io/kind", "agent")])
        ),
        Err(cri::AnnotationError::EmptyName)
    );
}

#[test]
fn kubelet_labels_give_the_pod() {
    let labels: HashMap<&str, &str> = [
        ("io.kubernetes.pod.namespace", "ml"),
        ("io.kubernetes.pod.name", "server-0"),
        ("io.kubernetes.pod.uid", "u-1"),
        ("io.kubernetes.container.name", "main"),
    ]
    .into();
    let k8s = super::k8s_from_labels(|k| labels.get(k).copied()).expect("k8s");
    assert_eq!(
        k8s,
        K8s {
            namespace: Some("ml".into()),
            pod: Some("server-0".into()),
            pod_uid: Some("u-1".into()),
            container: Some("main".into()),
        }
    );
    assert_eq!(super::k8s_from_labels(|_| None), None);
    // Not a Kubernetes name: left out.
    let long = "x".repeat(254);
    assert_eq!(super::k8s_from_labels(|_| Some(long.as_str())), None);
}

#[tokio::test]
async fn the_cache_asks_once_and_fills_events_once_known() {
    let (ask, mut asked) = tokio::sync::mpsc::channel(4);
    let mut cache = IdentityCache::new(2, Duration::from_secs(2), Some(ask));
    cache.observe(ID, Some("containerd"));
    cache.observe(ID, Some("containerd"));
    let lookup = asked.try_recv().expect("asked once");
    assert_eq!(lookup.id, ID);
    assert!(asked.try_recv().is_err(), "asked twice");
    assert!(cache.is_pending(ID));

    let mut container = Container {
        id: Some(ID.into()),
        ..Container::default()
    };
    let mut k8s = None;
    cache.fill(&mut container, &mut k8s);
    assert_eq!(container.name, None, "nothing known yet");

    cache.resolved(
        ID,
        Some(Arc::new(RuntimeIdentity {
            runtime: "containerd".into(),
            name: Some("main".into()),
            image: Some("localhost/bb:1".into()),
            k8s: Some(K8s {
                namespace: Some("ml".into()),
                pod_uid: Some("u-1".into()),
                ..K8s::default()
            }),
            declaration: None,
        })),
    );
    assert!(!cache.is_pending(ID));
    cache.fill(&mut container, &mut k8s);
    assert_eq!(container.image.as_deref(), Some("localhost/bb:1"));
    assert_eq!(container.runtime.as_deref(), Some("containerd"));
    assert_eq!(container.pod_uid.as_deref(), Some("u-1"));
    assert_eq!(k8s.and_then(|k| k.namespace).as_deref(), Some("ml"));

    // Two more ids in a cache of two: the least recently used goes.
    cache.observe("a", None);
    cache.observe("b", None);
    assert_eq!(cache.evicted(), 1);
    assert!(cache.known(ID).is_none());
}

#[test]
fn a_full_resolver_queue_asks_again_at_the_next_event() {
    let (ask, _asked) = tokio::sync::mpsc::channel(1);
    let mut cache = IdentityCache::new(8, Duration::from_secs(2), Some(ask));
    cache.observe("a", None);
    cache.observe("b", None);
    assert!(cache.is_pending("a"));
    assert!(!cache.is_pending("b"));
    assert_eq!(cache.unasked(), 1);
    // Still full: "b" is not remembered, so it is asked again next time.
    cache.observe("b", None);
    assert_eq!(cache.unasked(), 2);
    assert!(cache.known("b").is_none() && !cache.is_pending("b"));
    // Off: never pending.
    let mut off = IdentityCache::disabled();
    off.observe("a", None);
    assert!(!off.is_pending("a"));
}
