use super::*;
use crate::event::Event;
use crate::event::{FileInfo, Process};

/// A pid no process has: library scans find no maps.
const PID: u32 = 4_190_001;

fn analyzer() -> Analyzer {
    Analyzer::new(&WorkloadsConfig::default()).expect("analyzer")
}

fn event(kind: Kind, file: Option<FileInfo>) -> Event {
    Event {
        kind,
        process: Process {
            pid: PID,
            exe: "/usr/bin/python3.11".into(),
            argv: vec!["python3".into(), "train_loop.py".into(), "/tmp/run".into()].into(),
            ..Default::default()
        },
        file,
        ..Default::default()
    }
}

fn file(path: &str, target: Option<&str>, access: Option<&str>, class: &str) -> Option<FileInfo> {
    Some(FileInfo {
        path: path.into(),
        target: target.map(Into::into),
        access: access.map(|v| v.parse().unwrap()),
        class: Some(class.parse().unwrap()),
        ..Default::default()
    })
}

#[test]
fn a_checkpoint_renamed_into_place_is_a_model_write() {
    let mut analyzer = analyzer();
    let mut exec = event(Kind::Exec, None);
    analyzer.attribute(&mut exec);
    let mut data = event(
        Kind::Open,
        file("/tmp/run/data/train.npy", None, Some("read"), "dataset"),
    );
    analyzer.attribute(&mut data);
    assert_eq!(
        data.workload, None,
        "a script and a data set are not enough"
    );
    let mut rename = event(
        Kind::Rename,
        file(
            "/tmp/run/checkpoints/.tmpXYZ",
            Some("/tmp/run/checkpoints/step-20.safetensors"),
            None,
            "model",
        ),
    );
    let changes = analyzer.attribute(&mut rename);
    assert!(!changes.is_empty(), "the process joined a workload");
    let workload = rename.workload.expect("the rename itself is attributed");
    assert_eq!(workload.kind.as_str(), "training");
}

#[test]
fn renaming_a_data_set_is_not_a_model_write() {
    let mut analyzer = analyzer();
    let mut exec = event(Kind::Exec, None);
    analyzer.attribute(&mut exec);
    let mut rename = event(
        Kind::Rename,
        file("/tmp/run/a.npy", Some("/tmp/run/b.npy"), None, "dataset"),
    );
    analyzer.attribute(&mut rename);
    assert_eq!(rename.workload, None);
}
