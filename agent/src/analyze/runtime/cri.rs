//! The CRI (`runtime.v1`), as containerd's CRI plugin serves it: the pod
//! sandbox a container belongs to, and that sandbox's annotations, where a
//! pod's `aiwatch.io/workload` and `aiwatch.io/kind` live. Containers carry
//! the kubelet's labels, not the pod's annotations.

use std::collections::HashMap;

use k8s_cri::v1::{
    runtime_service_client::RuntimeServiceClient, ContainerFilter, ListContainersRequest,
    PodSandboxStatusRequest,
};
use tonic::{transport::Channel, Code};

use super::{resolver::LookupError, KIND_ANNOTATION, WORKLOAD_ANNOTATION};
use crate::analyze::workload::{declared::DeclaredMatch, DeclaredWorkload, WorkloadKind};

/// The annotations of the pod sandbox that container `id` belongs to (or of
/// the sandbox `id` itself, its pause container), or `None` when the CRI
/// does not know the id (a container `ctr` made).
pub(super) async fn pod_annotations(
    channel: Channel,
    id: &str,
) -> Result<Option<HashMap<String, String>>, LookupError> {
    let mut client = RuntimeServiceClient::new(channel);
    let listed = client
        .list_containers(ListContainersRequest {
            filter: Some(ContainerFilter {
                id: id.to_string(),
                ..ContainerFilter::default()
            }),
        })
        .await?
        .into_inner();
    let sandbox = match listed.containers.into_iter().find(|c| c.id == id) {
        Some(container) => container.pod_sandbox_id,
        None => id.to_string(),
    };
    let status = client
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: sandbox,
            verbose: false,
        })
        .await;
    match status {
        Ok(response) => Ok(response
            .into_inner()
            .status
            .map(|status| status.annotations)),
        Err(status) if status.code() == Code::NotFound => Ok(None),
        Err(status) => Err(status.into()),
    }
}

/// A pod annotation that does not declare a workload as it means to.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnnotationError {
    #[error("pod annotation {WORKLOAD_ANNOTATION} is empty")]
    EmptyName,
    #[error("pod annotation {KIND_ANNOTATION} is missing (inference, training, notebook, agent or pipeline)")]
    MissingKind,
    #[error("pod annotation {KIND_ANNOTATION}: `{0}` is not inference, training, notebook, agent or pipeline")]
    BadKind(String),
}

/// The workload a pod's annotations declare for container `id`: none
/// without `aiwatch.io/workload`, an error when it is there but unusable.
pub fn declaration(
    id: &str,
    annotations: &HashMap<String, String>,
) -> Result<Option<DeclaredWorkload>, AnnotationError> {
    let Some(name) = annotations.get(WORKLOAD_ANNOTATION) else {
        return Ok(None);
    };
    let name = name.trim();
    if name.is_empty() {
        return Err(AnnotationError::EmptyName);
    }
    let kind = annotations
        .get(KIND_ANNOTATION)
        .ok_or(AnnotationError::MissingKind)?;
    let kind = WorkloadKind::parse(kind.trim())
        .filter(|kind| *kind != WorkloadKind::UnknownAi)
        .ok_or_else(|| AnnotationError::BadKind(kind.clone()))?;
    Ok(Some(DeclaredWorkload {
        name: name.to_string(),
        kind,
        // What the declaration covers: this container, as a configured
        // `match: {container_id: ...}` would.
        matcher: DeclaredMatch {
            container_id: Some(id.to_string()),
            ..DeclaredMatch::default()
        },
    }))
}
