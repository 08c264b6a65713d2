//! Whom an event or alert belongs to, decided once: its pod (named by the cluster, or only by
//! uid), else its container, else the host process, else unknown (the cgroup did not resolve).
//! Every view names its rows from [`Identity::of`] (the table, `count`, `top`, the metrics, the
//! detectors' keys and alert subjects), so one workload has one name everywhere, and the
//! markers below are the same in all of them.

use std::fmt::{self, Display, Write as _};
use std::net::IpAddr;

use crate::model::{Attribution, Container, Pod, ProcessInfo};
use crate::pods::PodInfo;

/// Processes outside any container and pod.
pub const HOST: &str = "(host)";
/// Processes whose cgroup did not resolve, and pods the cluster has not named (where a name is
/// asked for).
pub const UNKNOWN: &str = "(unknown)";
/// What a process does not have: the pod of a container outside pods, the container of a
/// process in a pod's own cgroup.
pub const NONE: &str = "(none)";

/// Whom an event or alert belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identity<'a> {
    /// A pod: `info` is what the cluster said of it, `None` until it named the pod.
    Pod {
        pod: &'a Pod,
        info: Option<&'a PodInfo>,
        container: Option<&'a Container>,
    },
    /// A container outside pods (plain Docker, Podman).
    Container(&'a Container),
    /// A process outside containers and pods.
    Host(&'a ProcessInfo),
    /// A process whose cgroup did not resolve: neither host nor container can be told.
    Unknown(&'a ProcessInfo),
    /// A client known only by its address (a DNS server's dnstap, replayed).
    Client(IpAddr),
}

impl<'a> Identity<'a> {
    /// The one rule.
    pub fn of(who: &'a Attribution) -> Identity<'a> {
        if let (None, None, Some(client)) = (&who.pod, &who.container, who.client) {
            return Identity::Client(client);
        }
        Identity::from_parts(
            who.pod.as_ref(),
            who.container.as_ref(),
            who.host,
            &who.process,
        )
    }

    /// The rule, for the parts of an attribution held apart (`host` `None`: unresolved).
    pub fn from_parts(
        pod: Option<&'a Pod>,
        container: Option<&'a Container>,
        host: Option<bool>,
        process: &'a ProcessInfo,
    ) -> Identity<'a> {
        match (pod, container, host) {
            (Some(pod), container, _) => Identity::Pod {
                pod,
                info: pod.info.as_deref(),
                container,
            },
            (None, Some(container), _) => Identity::Container(container),
            (None, None, Some(true)) => Identity::Host(process),
            (None, None, _) => Identity::Unknown(process),
        }
    }

    /// What runs the pod, as a user names it: `namespace/Kind/name` (`namespace/Pod/name` for a
    /// pod without an owner), once the cluster named the pod.
    pub fn workload(&self) -> Option<WorkloadName<'a>> {
        let Identity::Pod {
            info: Some(info), ..
        } = self
        else {
            return None;
        };
        Some(match &info.workload {
            Some(w) => WorkloadName {
                namespace: &info.namespace,
                kind: &w.kind,
                name: &w.name,
            },
            None => WorkloadName {
                namespace: &info.namespace,
                kind: "Pod",
                name: &info.name,
            },
        })
    }

    /// The container, in a pod or not.
    pub fn container(&self) -> Option<&'a Container> {
        match *self {
            Identity::Pod { container, .. } => container,
            Identity::Container(container) => Some(container),
            Identity::Host(_) | Identity::Unknown(_) | Identity::Client(_) => None,
        }
    }
}

impl Display for Identity<'_> {
    /// The one display form: `namespace/name` for a named pod, its uid until then; the first 12
    /// hex digits of a container's id; `(host) name` and `(unknown) name` for processes;
    /// `client ADDRESS`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Pod {
                info: Some(info), ..
            } => write!(f, "{}/{}", info.namespace, info.name),
            Identity::Pod {
                pod, info: None, ..
            } => f.write_str(&pod.uid),
            Identity::Container(c) => f.write_str(c.short_id()),
            Identity::Host(p) => write!(f, "{HOST} {}", p.display_name()),
            Identity::Unknown(p) => write!(f, "{UNKNOWN} {}", p.display_name()),
            Identity::Client(address) => write!(f, "client {address}"),
        }
    }
}

/// A pod's workload: `namespace/Kind/name`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkloadName<'a> {
    pub namespace: &'a str,
    /// `Deployment`, `StatefulSet`, ...; `Pod` for a pod without an owner.
    pub kind: &'a str,
    pub name: &'a str,
}

impl Display for WorkloadName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.namespace, self.kind, self.name)
    }
}

/// Writes `value` into `out`, cleared first: the views keep one buffer for the keys they make
/// per event.
pub fn write_into(out: &mut String, value: impl Display) {
    out.clear();
    write!(out, "{value}").expect("writing to a String cannot fail");
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::container::Runtime;
    use crate::model::sample;
    use crate::pods::Workload;

    #[test]
    fn one_rule_one_display_form() {
        let mut who = sample::query(1, "x.test", 1, 0).who;
        assert_eq!(Identity::of(&who).to_string(), "(unknown) dig");
        who.host = Some(true);
        assert_eq!(Identity::of(&who).to_string(), "(host) dig");
        who.process.name = "".into();
        assert_eq!(Identity::of(&who).to_string(), "(host) isc-net-0000");
        assert_eq!(Identity::of(&who).workload(), None);

        who.host = Some(false);
        let container = Container {
            id: Arc::from("ab".repeat(32).as_str()),
            runtime: Runtime::Containerd,
            name: None,
        };
        who.container = Some(container.clone());
        let id = Identity::of(&who);
        assert_eq!(id.to_string(), "abababababab");
        assert_eq!(id.container(), Some(&container));

        who.pod = Some(Pod {
            uid: Arc::from("u-1"),
            info: None,
        });
        assert_eq!(Identity::of(&who).to_string(), "u-1");
        assert_eq!(Identity::of(&who).workload(), None);

        who.pod.as_mut().unwrap().info = Some(sample::pod_info(None));
        let id = Identity::of(&who);
        assert_eq!(id.to_string(), "shop/web-7d4b9f-xk2p1");
        assert_eq!(
            id.workload().unwrap().to_string(),
            "shop/Pod/web-7d4b9f-xk2p1"
        );

        who.pod.as_mut().unwrap().info = Some(sample::pod_info(Some(Workload {
            kind: "Deployment".into(),
            name: "web".into(),
        })));
        let id = Identity::of(&who);
        assert_eq!(id.workload().unwrap().to_string(), "shop/Deployment/web");
        assert_eq!(id.container(), Some(&container));

        let mut client = sample::query(1, "x.test", 1, 0).who;
        client.client = Some("10.0.0.7".parse().unwrap());
        assert_eq!(Identity::of(&client).to_string(), "client 10.0.0.7");

        let mut key = String::from("stale");
        write_into(&mut key, id);
        assert_eq!(key, "shop/web-7d4b9f-xk2p1");
    }
}
