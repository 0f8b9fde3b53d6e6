//! containerd's containers API: the image a container was created from and
//! its labels, among which the kubelet's (`io.kubernetes.pod.*`,
//! `io.kubernetes.container.name`). Every containerd client has its own
//! namespace; the kubelet's is `k8s.io`, `ctr`'s `default`.

use containerd_client::services::v1::{containers_client::ContainersClient, GetContainerRequest};
use tonic::{transport::Channel, Code, Request};

use super::{
    k8s_from_labels,
    resolver::{Answer, LookupError},
    RuntimeIdentity,
};

/// The metadata header that picks a containerd namespace.
const NAMESPACE_HEADER: &str = "containerd-namespace";

/// Labels that name a container, most specific first: the kubelet's, then
/// nerdctl's.
const NAME_LABELS: &[&str] = &["io.kubernetes.container.name", "nerdctl/name"];

/// Looks `id` up in each namespace in turn.
pub(super) async fn lookup(
    channel: Channel,
    namespaces: &[String],
    id: &str,
) -> Result<Answer, LookupError> {
    let mut client = ContainersClient::new(channel);
    for namespace in namespaces {
        let mut request = Request::new(GetContainerRequest { id: id.to_string() });
        let Ok(value) = namespace.parse() else {
            // A namespace that cannot be a header value names nothing.
            continue;
        };
        request.metadata_mut().insert(NAMESPACE_HEADER, value);
        match client.get(request).await {
            Ok(response) => {
                let Some(container) = response.into_inner().container else {
                    continue;
                };
                let label = |key: &str| container.labels.get(key).map(String::as_str);
                let name = NAME_LABELS
                    .iter()
                    .find_map(|key| label(key))
                    .filter(|name| !name.is_empty())
                    .map(str::to_string);
                return Ok(Answer::Found(Box::new(RuntimeIdentity {
                    runtime: "containerd".into(),
                    name,
                    image: (!container.image.is_empty()).then(|| container.image.clone()),
                    k8s: k8s_from_labels(label),
                    declaration: None,
                })));
            }
            Err(status) if status.code() == Code::NotFound => continue,
            Err(status) => return Err(status.into()),
        }
    }
    Ok(Answer::NotFound)
}
