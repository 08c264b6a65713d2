//! From a Pod as the API server returns it to the [`PodInfo`] that enrichment reads. Pure: the
//! workload is resolved elsewhere (it may need API calls) and passed in.

use std::collections::BTreeMap;

use dnslens_lens::pods::{PodInfo, Workload};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

/// The pod's fields, or `None` for an object without a uid (never sent by a real API server).
pub(crate) fn pod_info(pod: &Pod, workload: Option<Workload>) -> Option<PodInfo> {
    let meta = &pod.metadata;
    let uid = meta.uid.clone().filter(|u| !u.is_empty())?;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let mut containers = BTreeMap::new();
    if let Some(status) = status {
        let all = [
            &status.init_container_statuses,
            &status.container_statuses,
            &status.ephemeral_container_statuses,
        ];
        for statuses in all.into_iter().flatten() {
            for s in statuses {
                if let Some(id) = container_id(s) {
                    containers.insert(id.to_string(), s.name.clone());
                }
            }
        }
    }
    Some(PodInfo {
        uid,
        name: meta.name.clone().unwrap_or_default(),
        namespace: meta.namespace.clone().unwrap_or_default(),
        node: spec.and_then(|s| s.node_name.clone()),
        pod_ip: status
            .and_then(|s| s.pod_ip.clone())
            .filter(|ip| !ip.is_empty()),
        service_account: spec
            .and_then(|s| s.service_account_name.clone().or(s.service_account.clone()))
            .filter(|sa| !sa.is_empty()),
        labels: meta.labels.clone().unwrap_or_default(),
        workload,
        containers,
    })
}

/// The bare container id of a status: `containerd://<hex>`, `cri-o://<hex>`, `docker://<hex>`
/// all become `<hex>`, the form the cgroup path carries. `None` while the container has not
/// been created yet (the API server sends an empty or absent id then).
fn container_id(status: &ContainerStatus) -> Option<&str> {
    bare_container_id(status.container_id.as_deref()?)
}

pub(crate) fn bare_container_id(raw: &str) -> Option<&str> {
    let id = raw.split_once("://").map_or(raw, |(_, id)| id);
    (!id.is_empty()).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus};
    use kube::api::ObjectMeta;

    fn status(name: &str, id: Option<&str>) -> ContainerStatus {
        ContainerStatus {
            name: name.to_string(),
            container_id: id.map(str::to_string),
            ..ContainerStatus::default()
        }
    }

    #[test]
    fn runtime_prefixes_are_removed() {
        assert_eq!(bare_container_id("containerd://abc123"), Some("abc123"));
        assert_eq!(bare_container_id("cri-o://abc123"), Some("abc123"));
        assert_eq!(bare_container_id("docker://abc123"), Some("abc123"));
        assert_eq!(bare_container_id("abc123"), Some("abc123"));
        assert_eq!(bare_container_id("containerd://"), None);
        assert_eq!(bare_container_id(""), None);
    }

    #[test]
    fn all_container_kinds_are_indexed_and_pending_ones_skipped() {
        let pod = Pod {
            metadata: ObjectMeta {
                uid: Some("u-1".into()),
                name: Some("web-1".into()),
                namespace: Some("prod".into()),
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: Some("node-a".into()),
                service_account: Some("legacy".into()),
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                pod_ip: Some("10.1.2.3".into()),
                init_container_statuses: Some(vec![status("init", Some("containerd://i1"))]),
                container_statuses: Some(vec![
                    status("app", Some("containerd://a1")),
                    status("waiting", Some("")),
                    status("unborn", None),
                ]),
                ephemeral_container_statuses: Some(vec![status("debug", Some("cri-o://e1"))]),
                ..PodStatus::default()
            }),
        };
        let info = pod_info(&pod, None).unwrap();
        assert_eq!(info.name, "web-1");
        assert_eq!(info.namespace, "prod");
        assert_eq!(info.node.as_deref(), Some("node-a"));
        assert_eq!(info.pod_ip.as_deref(), Some("10.1.2.3"));
        assert_eq!(info.service_account.as_deref(), Some("legacy"));
        assert_eq!(info.labels["app"], "web");
        let containers: Vec<_> = info
            .containers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(containers, [("a1", "app"), ("e1", "debug"), ("i1", "init")]);
    }

    #[test]
    fn a_pod_without_uid_is_skipped() {
        assert_eq!(pod_info(&Pod::default(), None), None);
    }
}
