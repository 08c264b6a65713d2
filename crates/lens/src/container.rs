//! Container identity from a cgroup path alone: which container (id, runtime) and which
//! Kubernetes pod (uid, QoS class) a process runs in, for every common layout. The path is
//! what the kernel event's cgroup id resolves to, so a process or container that is already
//! gone is still attributed; nothing here reads the system.
//!
//! Layouts are recognised component by component, not anchored at the start of the path: kind
//! nodes put the kubelet's tree under `/kubelet.slice/kubelet-kubepods.slice/…`, nested runtimes
//! under the outer container's cgroup (`/system.slice/docker-<id>.scope/kubepods/…`). Paths under
//! `user.slice` (users' own, delegated subtrees, rootless Podman's among them) are host
//! processes whatever their names say. The innermost container wins; cgroups a container
//! makes below its own (Podman's `…/libpod-<id>.scope/container`, systemd in a container) still
//! belong to it.
//!
//! | layout | container component |
//! | --- | --- |
//! | containerd (CRI, systemd driver) | `cri-containerd-<id>.scope` |
//! | containerd (nerdctl) | `nerdctl-<id>.scope` |
//! | CRI-O | `crio-<id>.scope`, `crio-<id>` (cgroupfs driver); `crio-conmon-<id>…` is conmon |
//! | Docker | `docker-<id>.scope`, `/docker/<id>` |
//! | Podman | `libpod-<id>.scope`, `libpod-<id>`; `libpod-conmon-<id>…` is conmon |
//! | kubelet, cgroupfs driver | `kubepods[/<qos>]/pod<uid>/<id>`: runtime unknown |
//!
//! Pods: `kubepods[-<qos>]-pod<uid with _ for ->.slice` (systemd driver, any slice prefix) or
//! `kubepods[/<qos>]/pod<uid>` (cgroupfs driver); no QoS level means Guaranteed.

/// The runtime that made a container, as far as its cgroup name tells. Its name is the JSON
/// value: `containerd`, `cri-o`, `docker`, `podman`, `unknown`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "lowercase")]
pub enum Runtime {
    Containerd,
    #[strum(serialize = "cri-o")]
    CriO,
    Docker,
    Podman,
    /// A bare id (the kubelet's cgroupfs driver names every runtime's containers so).
    Unknown,
}

/// A container found in a cgroup path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerRef {
    /// The container id: 64 lowercase hex digits, as in the path.
    pub id: String,
    pub runtime: Runtime,
    /// The uid of the pod whose cgroup holds the container, dashed (`metadata.uid`); static
    /// pods' cgroups carry their 32-hex config hash instead, kept as is.
    pub pod_uid: Option<String>,
    /// The pod's QoS class: `Guaranteed`, `Burstable`, `BestEffort`.
    pub qos: Option<String>,
}

impl ContainerRef {
    /// The container of a process in the cgroup at `path`; `None` for processes outside any
    /// container (including pod-level cgroups: see [`Placement`]).
    pub fn from_cgroup(path: &str) -> Option<ContainerRef> {
        match Placement::of(path) {
            Placement::Container(c) => Some(c),
            Placement::Pod { .. } | Placement::Host => None,
        }
    }
}

/// Where a cgroup path puts a process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// In a container (maybe in a pod).
    Container(ContainerRef),
    /// In a pod's cgroup but in none of its containers: a runtime helper charged to the pod
    /// (CRI-O's and Podman's conmon), or a process the runtime put in the pod-level cgroup
    /// (cgroup v1 allows it). The pause container is a container of its own (its id is the
    /// sandbox id, which no container status lists).
    Pod { uid: String, qos: Option<String> },
    /// Outside any container and pod: the host (a systemd unit, a session, the root).
    Host,
}

impl Placement {
    /// Parses `path` (as in `/proc/PID/cgroup` or the event's `cgroup`). An empty path (not
    /// resolved) is `Host` here: callers that know it is unresolved say so themselves.
    pub fn of(path: &str) -> Placement {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        // systemd delegates `user.slice` subtrees to their users (`user@UID.service`), who may
        // create and name cgroups there as they like: nothing under them is taken as a container
        // or pod, or a user could pass for any pod on the node.
        let delegated = |part: &&str| part.starts_with("user@") && part.ends_with(".service");
        if parts.first() == Some(&"user.slice") || parts.iter().any(delegated) {
            return Placement::Host;
        }
        let mut container = None;
        let mut pod = None;
        for (i, part) in parts.iter().enumerate() {
            let parent = i.checked_sub(1).map(|p| parts[p]);
            if let Some(found) = pod_component(part, parent, i.checked_sub(2).map(|g| parts[g])) {
                pod = Some((i, found));
            } else if let Some(found) = container_component(part, parent) {
                container = Some((i, found));
            }
        }
        match (container, pod) {
            // A pod below the last container (kind: the node is a container): the process is in
            // the pod's own cgroup.
            (Some((c, _)), Some((p, (uid, qos)))) if p > c => Placement::Pod { uid, qos },
            (Some((_, (id, runtime))), pod) => {
                let (pod_uid, qos) = pod.map(|(_, p)| p).unzip();
                Placement::Container(ContainerRef {
                    id: id.to_string(),
                    runtime,
                    pod_uid,
                    qos: qos.flatten(),
                })
            }
            (None, Some((_, (uid, qos)))) => Placement::Pod { uid, qos },
            (None, None) => Placement::Host,
        }
    }
}

/// A container component: `<prefix>-<id>[.scope]` of a runtime, or a bare id.
fn container_component<'a>(part: &'a str, parent: Option<&str>) -> Option<(&'a str, Runtime)> {
    if is_container_id(part) {
        let runtime = match parent {
            Some("docker") => Runtime::Docker,
            _ => Runtime::Unknown,
        };
        return Some((part, runtime));
    }
    let name = part.strip_suffix(".scope").unwrap_or(part);
    const PREFIXES: [(&str, Runtime); 5] = [
        ("cri-containerd-", Runtime::Containerd),
        ("nerdctl-", Runtime::Containerd),
        ("crio-", Runtime::CriO),
        ("docker-", Runtime::Docker),
        ("libpod-", Runtime::Podman),
    ];
    PREFIXES.iter().find_map(|&(prefix, runtime)| {
        let id = name.strip_prefix(prefix)?;
        // `crio-conmon-<id>` and `libpod-conmon-<id>` fail here: not 64 hex digits.
        is_container_id(id).then_some((id, runtime))
    })
}

/// Container ids of every runtime here are 64 lowercase hex digits.
fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A pod component, with the pod's uid (dashed) and QoS class.
fn pod_component(
    part: &str,
    parent: Option<&str>,
    grandparent: Option<&str>,
) -> Option<(String, Option<String>)> {
    if let Some(name) = part.strip_suffix(".slice") {
        // systemd driver: `[prefix-]kubepods[-qos]-pod<uid>.slice`; the slice name repeats its
        // parents' (`kubelet-kubepods-besteffort-pod…` on kind).
        let (head, uid) = name.rsplit_once("-pod")?;
        let uid = pod_uid(uid, '_')?;
        let at = head.rfind("kubepods")?;
        let qos = match &head[at + "kubepods".len()..] {
            "" => "guaranteed",
            rest => rest.strip_prefix('-')?,
        };
        return Some((uid, Some(qos_class(qos))));
    }
    // cgroupfs driver: `kubepods/pod<uid>` or `kubepods/<qos>/pod<uid>`.
    let uid = pod_uid(part.strip_prefix("pod")?, '-')?;
    let qos = match (parent?, grandparent) {
        ("kubepods", _) => "guaranteed",
        (qos, Some("kubepods")) => qos,
        _ => return None,
    };
    Some((uid, Some(qos_class(qos))))
}

/// A pod uid as in a cgroup name (`sep` between the groups: `_` for systemd slices), dashed.
/// Static pods' cgroups carry the 32-hex hash of their manifest instead of a UUID.
fn pod_uid(s: &str, sep: char) -> Option<String> {
    let hex = |b: u8| matches!(b, b'0'..=b'9' | b'a'..=b'f');
    if s.len() == 32 && s.bytes().all(hex) {
        return Some(s.to_string());
    }
    let uuid = s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == sep,
            _ => c.is_ascii() && hex(c as u8),
        });
    uuid.then(|| s.replace(sep, "-"))
}

/// The Kubernetes spelling of a QoS level named in a cgroup; unknown names are kept as they are.
fn qos_class(level: &str) -> String {
    match level {
        "guaranteed" => "Guaranteed",
        "burstable" => "Burstable",
        "besteffort" => "BestEffort",
        other => other,
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dnslens_abi::Named;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const OUTER: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";
    const UID: &str = "6f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b";
    const UID_: &str = "6f1a2b3c_4d5e_4f60_8a7b_9c0d1e2f3a4b";

    fn container(runtime: Runtime, uid: Option<&str>, qos: Option<&str>) -> Placement {
        Placement::Container(ContainerRef {
            id: ID.to_string(),
            runtime,
            pod_uid: uid.map(str::to_string),
            qos: qos.map(str::to_string),
        })
    }

    fn pod(uid: &str, qos: &str) -> Placement {
        Placement::Pod {
            uid: uid.to_string(),
            qos: Some(qos.to_string()),
        }
    }

    #[test]
    fn real_world_paths() {
        use Runtime::*;
        let in_pod = |r, qos| container(r, Some(UID), Some(qos));
        let cases: Vec<(String, Placement)> = vec![
            // kubelet systemd driver: the same path in cgroup v2 and in the v1 memory hierarchy.
            (
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope"),
                in_pod(Containerd, "Burstable"),
            ),
            (
                format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/crio-{ID}.scope"),
                in_pod(CriO, "BestEffort"),
            ),
            (
                format!("/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{ID}.scope"),
                in_pod(Containerd, "Guaranteed"),
            ),
            (
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/docker-{ID}.scope"),
                in_pod(Docker, "Burstable"),
            ),
            // kubelet cgroupfs driver (classic on cgroup v1 hosts): bare ids, whatever the
            // runtime.
            (
                format!("/kubepods/burstable/pod{UID}/{ID}"),
                in_pod(Unknown, "Burstable"),
            ),
            (format!("/kubepods/pod{UID}/{ID}"), in_pod(Unknown, "Guaranteed")),
            (
                format!("/kubepods/besteffort/pod{UID}/crio-{ID}"),
                in_pod(CriO, "BestEffort"),
            ),
            // kind: the node is a container; inside it the kubelet's tree under kubelet.slice.
            (
                format!("/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope"),
                in_pod(Containerd, "BestEffort"),
            ),
            (
                format!("/system.slice/docker-{OUTER}.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod{UID_}.slice/cri-containerd-{ID}.scope"),
                in_pod(Containerd, "Guaranteed"),
            ),
            // Nested runtime, cgroupfs inside a Docker container (v1 or v2).
            (
                format!("/system.slice/docker-{OUTER}.scope/kubepods/besteffort/pod{UID}/{ID}"),
                in_pod(Unknown, "BestEffort"),
            ),
            (
                format!("/docker/{OUTER}/kubepods/burstable/pod{UID}/{ID}"),
                in_pod(Unknown, "Burstable"),
            ),
            // Plain Docker and Podman.
            (format!("/system.slice/docker-{ID}.scope"), container(Docker, None, None)),
            // Docker's cgroupfs driver (v1), and the systemd driver above.
            (format!("/docker/{ID}"), container(Docker, None, None)),
            (format!("/machine.slice/libpod-{ID}.scope"), container(Podman, None, None)),
            (format!("/machine.slice/libpod-{ID}.scope/container"), container(Podman, None, None)),
            (format!("/libpod_parent/libpod-{ID}"), container(Podman, None, None)),
            (format!("/system.slice/nerdctl-{ID}.scope"), container(Containerd, None, None)),
            // Sub-cgroups of a container (systemd running in it) belong to it.
            (format!("/system.slice/docker-{ID}.scope/init.scope"), container(Docker, None, None)),
            // Pod-level cgroups: in the pod, in no container.
            (
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice"),
                pod(UID, "Burstable"),
            ),
            (
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-conmon-{ID}.scope"),
                pod(UID, "Burstable"),
            ),
            (format!("/kubepods/pod{UID}"), pod(UID, "Guaranteed")),
            (
                format!("/system.slice/docker-{OUTER}.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_}.slice"),
                pod(UID, "BestEffort"),
            ),
            // A static pod: its cgroup carries the manifest hash.
            (
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0f3c1d2e4b5a69788796a5b4c3d2e1f0.slice/cri-containerd-{ID}.scope"),
                container(Containerd, Some("0f3c1d2e4b5a69788796a5b4c3d2e1f0"), Some("Burstable")),
            ),
        ];
        for (path, want) in cases {
            assert_eq!(Placement::of(&path), want, "{path}");
        }
    }

    #[test]
    fn paths_that_are_not_containers() {
        let host = [
            "/",
            "",
            "/init.scope",
            "/system.slice/docker.service",
            "/system.slice/containerd.service",
            "/system.slice/crio.service",
            "/system.slice/kubelet.service",
            "/user.slice/user-1000.slice/session-3.scope",
            "/user.slice/user-1000.slice/user@1000.service/app.slice/podman-pause.scope",
            // A user's own subtree is the user's to name: rootless Podman, and a user posing as a
            // pod's container with ids read from /proc, are host processes of that user.
            &format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"),
            &format!(
                "/user.slice/user-1000.slice/user@1000.service/x/kubepods-besteffort-pod{UID_}.slice/\
                 cri-containerd-{ID}.scope"
            ),
            &format!("/user.slice/kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope"),
            "/kubepods.slice",
            "/kubepods.slice/kubepods-burstable.slice",
            "/kubepods/burstable",
        ];
        for path in host {
            assert_eq!(Placement::of(path), Placement::Host, "{path}");
        }
        let not_containers = [
            // conmon outside a pod.
            format!("/machine.slice/libpod-conmon-{ID}.scope"),
            format!("/system.slice/crio-conmon-{ID}.scope"),
            // Ids of the wrong length or case.
            format!("/system.slice/docker-{}.scope", &ID[..63]),
            format!("/system.slice/docker-{ID}0.scope"),
            format!("/docker/{}", &ID[..12]),
            format!("/docker/{}", ID.to_uppercase()),
            // A pod uid of the wrong form, or "pod…" outside kubepods.
            format!("/kubepods/burstable/pod{}", &UID[..35]),
            format!("/kubepods/burstable/pod{UID_}"),
            format!("/system.slice/pod{UID}"),
            format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID}.slice"),
            format!("/system.slice/other-pod{UID_}.slice"),
        ];
        for path in &not_containers {
            assert_eq!(Placement::of(path), Placement::Host, "{path}");
        }
    }

    #[test]
    fn container_ref_is_none_outside_containers() {
        assert_eq!(
            ContainerRef::from_cgroup("/system.slice/docker.service"),
            None
        );
        assert_eq!(
            ContainerRef::from_cgroup(&format!("/kubepods/pod{UID}")),
            None
        );
        let c = ContainerRef::from_cgroup(&format!("/docker/{ID}")).unwrap();
        assert_eq!((c.id.as_str(), c.runtime.name()), (ID, "docker"));
        let names: Vec<&str> = [
            Runtime::Containerd,
            Runtime::CriO,
            Runtime::Docker,
            Runtime::Podman,
            Runtime::Unknown,
        ]
        .iter()
        .map(|r| r.name())
        .collect();
        assert_eq!(
            names,
            ["containerd", "cri-o", "docker", "podman", "unknown"]
        );
    }
}
