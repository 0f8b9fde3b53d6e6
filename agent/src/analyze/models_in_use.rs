//! Which model files are in use: read by a running AI workload. A change to
//! such a file by anybody outside that workload is tampering, whatever tool
//! makes it; a write to a model file nobody has loaded is usually a
//! deployment (a download, an export, a checkpoint).
//!
//! Owns the bounded path → workload map and the `file.model_in_use` flag it
//! sets on write, rename, truncate and unlink events. Nothing else.

use std::collections::{HashMap, VecDeque};

use crate::event::{AssetClass, Event, Kind};

/// Model paths remembered; the oldest is forgotten first.
pub const MAX_MODELS_IN_USE: usize = 4096;

const O_ACCMODE: u32 = 0o3;
const O_RDONLY: u32 = 0;
const O_TRUNC: u32 = 0o1000;

/// Model files read by workloads, and by which.
#[derive(Debug, Default)]
pub struct ModelsInUse {
    /// Path → id of the workload that read it last.
    readers: HashMap<String, String>,
    /// Insertion order, for eviction.
    order: VecDeque<String>,
    /// Paths forgotten to stay within [`MAX_MODELS_IN_USE`].
    pub evicted: u64,
}

fn is_model(class: Option<AssetClass>) -> bool {
    class.is_some_and(AssetClass::is_model)
}

impl ModelsInUse {
    /// Remembers model reads by workloads, and marks changes to a model a
    /// workload other than the writer's has read.
    pub fn observe(&mut self, event: &mut Event) {
        // Borrowed: most events are not about a model, and the id is copied
        // only when remembered.
        let own_workload = event.workload.as_ref().map(|w| w.id.as_str());
        let Some(file) = event.file.as_mut() else {
            return;
        };
        if file.result < 0 || !is_model(file.class) {
            return;
        }
        let reads = event.kind == Kind::Open
            && file.flags & O_ACCMODE == O_RDONLY
            && file.flags & O_TRUNC == 0;
        if reads {
            if let Some(workload) = own_workload {
                self.remember(&file.path, workload.to_string());
            }
            return;
        }
        let changes = matches!(
            event.kind,
            Kind::Open | Kind::Rename | Kind::Link | Kind::Unlink | Kind::Truncate | Kind::Chmod
        );
        if !changes {
            return;
        }
        let used_by_other = |path: &str| {
            self.readers
                .get(path)
                .is_some_and(|reader| own_workload != Some(reader.as_str()))
        };
        file.model_in_use =
            used_by_other(&file.path) || file.target.as_deref().is_some_and(used_by_other);
    }

    fn remember(&mut self, path: &str, workload: String) {
        if let Some(reader) = self.readers.get_mut(path) {
            *reader = workload;
            return;
        }
        if self.readers.len() >= MAX_MODELS_IN_USE {
            if let Some(oldest) = self.order.pop_front() {
                self.readers.remove(&oldest);
                self.evicted += 1;
            }
        }
        self.readers.insert(path.to_string(), workload);
        self.order.push_back(path.to_string());
    }

    pub fn len(&self) -> usize {
        self.readers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.readers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{FileInfo, WorkloadRef};

    fn file_event(kind: Kind, path: &str, flags: u32, workload: Option<&str>) -> Event {
        let mut event = Event {
            kind,
            ..Default::default()
        };
        event.file = Some(FileInfo {
            path: path.to_string(),
            flags,
            class: Some(AssetClass::Model),
            ..Default::default()
        });
        event.workload = workload.map(|id| WorkloadRef {
            id: id.to_string(),
            kind: crate::event::WorkloadKind::Inference,
            name: id.to_string(),
            claimed: false,
        });
        event
    }

    #[test]
    fn a_model_a_workload_read_is_in_use_for_others_only() {
        let mut models = ModelsInUse::default();
        let mut read = file_event(Kind::Open, "/models/m.onnx", 0, Some("srv"));
        models.observe(&mut read);
        assert!(!read.file.as_ref().unwrap().model_in_use);

        let mut stranger = file_event(Kind::Open, "/models/m.onnx", 0o1101, None);
        models.observe(&mut stranger);
        assert!(stranger.file.as_ref().unwrap().model_in_use);

        let mut itself = file_event(Kind::Open, "/models/m.onnx", 0o1101, Some("srv"));
        models.observe(&mut itself);
        assert!(!itself.file.as_ref().unwrap().model_in_use);

        let mut fresh = file_event(Kind::Open, "/models/new.onnx", 0o1101, None);
        models.observe(&mut fresh);
        assert!(!fresh.file.as_ref().unwrap().model_in_use);
    }

    #[test]
    fn a_rename_over_a_model_in_use_is_marked() {
        let mut models = ModelsInUse::default();
        models.observe(&mut file_event(
            Kind::Open,
            "/models/m.gguf",
            0,
            Some("srv"),
        ));
        let mut rename = file_event(Kind::Rename, "/tmp/x.gguf", 0, None);
        rename.file.as_mut().unwrap().target = Some("/models/m.gguf".to_string());
        models.observe(&mut rename);
        assert!(rename.file.as_ref().unwrap().model_in_use);
    }

    #[test]
    fn the_map_stays_bounded() {
        let mut models = ModelsInUse::default();
        for i in 0..MAX_MODELS_IN_USE + 10 {
            let path = format!("/models/{i}.onnx");
            models.observe(&mut file_event(Kind::Open, &path, 0, Some("srv")));
        }
        assert_eq!(models.len(), MAX_MODELS_IN_USE);
        assert_eq!(models.evicted, 10);
    }
}
