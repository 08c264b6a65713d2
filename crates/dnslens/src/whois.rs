//! `dnslens whois PID`: the chain from a live process to its workload, read the way events are
//! attributed: /proc/PID/cgroup (the v2 line, and the v1 memory line on hybrid hosts) -> the
//! container and pod the path names -> the pod's metadata from the Kubernetes API.

use dnslens_probe::Named;
use std::fmt::Write as _;
use std::io::ErrorKind;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use dnslens_lens::container::{ContainerRef, Placement};
use dnslens_lens::pods::{PodDirectory, PodInfo};
use dnslens_lens::text::Printable;

use crate::cluster::Connection;
use crate::settings::Whois;

/// How long to wait for the watch's first list to bring the pod.
const WAIT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(100);

pub fn run(whois: Whois) -> anyhow::Result<()> {
    let process = Process::read(Path::new("/proc"), whois.pid)?;
    let placement = Placement::of(process.cgroup());
    let in_pod_or_container = !matches!(placement, Placement::Host);
    let (found, names) = if !in_pod_or_container {
        (None, Names::NotNeeded)
    } else if !whois.kubernetes.enabled {
        (None, Names::Off)
    } else {
        let connection = Connection::start(&whois.kubernetes)?;
        match connection.directory() {
            None => (None, Names::NoCluster),
            Some(directory) => {
                let found = wait_for(&*directory, &placement, WAIT);
                (found, Names::Asked(connection.node().map(str::to_string)))
            }
        }
    };
    print!("{}", render(&process, &placement, found.as_ref(), &names));
    Ok(())
}

/// What /proc says about the process.
#[derive(Debug, PartialEq, Eq)]
struct Process {
    pid: u32,
    comm: String,
    /// The executable, or why it could not be read.
    exe: Result<String, String>,
    /// The cgroup v2 path (the `0::` line).
    v2: Option<String>,
    /// The path in the v1 hierarchy with the memory controller.
    v1_memory: Option<String>,
}

impl Process {
    fn read(proc_root: &Path, pid: u32) -> anyhow::Result<Process> {
        let dir = proc_root.join(pid.to_string());
        let cgroup = match std::fs::read_to_string(dir.join("cgroup")) {
            Ok(text) => text,
            Err(e) if e.kind() == ErrorKind::NotFound => bail!(
                "no process {pid}: give the pid of a running process, as ps shows it on this \
                 host (not inside a container's pid namespace)"
            ),
            Err(e) => {
                return Err(e).with_context(|| format!("reading {}", dir.join("cgroup").display()))
            }
        };
        let comm = std::fs::read_to_string(dir.join("comm"))
            .map(|c| c.trim_end_matches('\n').to_string())
            .unwrap_or_default();
        let exe = match std::fs::read_link(dir.join("exe")) {
            Ok(path) => Ok(path.to_string_lossy().into_owned()),
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                // SAFETY: geteuid has no preconditions.
                let root = unsafe { libc::geteuid() } == 0;
                let hint = if root { "" } else { " (run as root)" };
                Err(format!("unreadable: permission denied{hint}"))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                Err("none (a kernel thread, or the process has exited)".to_string())
            }
            Err(e) => Err(format!("unreadable: {e}")),
        };
        let (v2, v1_memory) = parse_proc_cgroup(&cgroup);
        Ok(Process {
            pid,
            comm,
            exe,
            v2,
            v1_memory,
        })
    }

    /// The path events of this process carry: v2, unless that is the root or missing and the v1
    /// memory path is not the root (hybrid hosts put containers only in v1).
    fn cgroup(&self) -> &str {
        let not_root = |p: &&String| p.as_str() != "/";
        self.v2
            .as_ref()
            .filter(not_root)
            .or(self.v1_memory.as_ref().filter(not_root))
            .or(self.v2.as_ref())
            .or(self.v1_memory.as_ref())
            .map_or("", String::as_str)
    }
}

/// The v2 path and the v1 memory path of a `/proc/PID/cgroup` text
/// (`hierarchy-id:controllers:path` lines; v2 is `0::path`).
fn parse_proc_cgroup(text: &str) -> (Option<String>, Option<String>) {
    let (mut v2, mut v1) = (None, None);
    for line in text.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            v2 = Some(path.to_string());
        } else if controllers.split(',').any(|c| c == "memory") {
            v1 = Some(path.to_string());
        }
    }
    (v2, v1)
}

/// Whether pod names were looked for, and where.
#[derive(Debug, PartialEq, Eq)]
enum Names {
    /// A host process: nothing to name.
    NotNeeded,
    /// `--no-kubernetes`.
    Off,
    /// No in-cluster configuration and no kubeconfig.
    NoCluster,
    /// The API was asked (on this node).
    Asked(Option<String>),
}

/// The pod of the container (and the container's name), else of the pod uid, once the
/// directory has it; `None` after `wait`.
fn wait_for(
    directory: &dyn PodDirectory,
    placement: &Placement,
    wait: Duration,
) -> Option<(Arc<PodInfo>, Option<String>)> {
    let (id, uid) = match placement {
        Placement::Container(c) => (Some(c.id.as_str()), c.pod_uid.as_deref()),
        Placement::Pod { uid, .. } => (None, Some(uid.as_str())),
        Placement::Host => return None,
    };
    let start = Instant::now();
    loop {
        let found = id
            .and_then(|id| directory.container(id))
            .map(|(pod, name)| (pod, Some(name)))
            .or_else(|| {
                uid.and_then(|uid| directory.pod(uid))
                    .map(|pod| (pod, None))
            });
        if found.is_some() || start.elapsed() >= wait {
            return found;
        }
        std::thread::sleep(POLL);
    }
}

/// The chain, one labelled line per link.
fn render(
    process: &Process,
    placement: &Placement,
    found: Option<&(Arc<PodInfo>, Option<String>)>,
    names: &Names,
) -> String {
    let mut out = String::new();
    // Names, paths and labels are the workload's: no control character reaches the terminal.
    let mut line = |label: &str, text: &str| {
        writeln!(out, "{label:<10} {}", Printable(text)).expect("writing to a String cannot fail");
    };
    line("pid", &process.pid.to_string());
    let exe = match &process.exe {
        Ok(exe) => exe.clone(),
        Err(why) => format!("exe {why}"),
    };
    line("process", &format!("{}  {exe}", process.comm));
    match (&process.v2, &process.v1_memory) {
        (None, None) => line("cgroup", "none listed in /proc/PID/cgroup"),
        (v2, v1) => {
            if let Some(v2) = v2 {
                line("cgroup", &format!("{v2}  (v2)"));
            }
            if let Some(v1) = v1.as_ref().filter(|v1| Some(*v1) != v2.as_ref()) {
                line("cgroup", &format!("{v1}  (v1 memory)"));
            }
        }
    }
    let (pod_info, container_name) = match found {
        Some((pod, name)) => (Some(&**pod), name.as_deref()),
        None => (None, None),
    };
    let (pod_uid, qos) = match placement {
        Placement::Host => {
            line("container", "none: a host process");
            return out;
        }
        Placement::Pod { uid, qos } => {
            line(
                "container",
                "none: in the pod's own cgroup (a runtime helper)",
            );
            (Some(uid.as_str()), qos.as_deref())
        }
        Placement::Container(ContainerRef {
            id,
            runtime,
            pod_uid,
            qos,
        }) => {
            let name = container_name.map_or(String::new(), |n| format!("  {n}"));
            line("container", &format!("{id}  {}{name}", runtime.name()));
            (pod_uid.as_deref(), qos.as_deref())
        }
    };
    let why_unnamed = match names {
        Names::NotNeeded => "",
        Names::Off => "names not asked for (--no-kubernetes)",
        Names::NoCluster => {
            "names need the Kubernetes API: no in-cluster configuration, no kubeconfig"
        }
        Names::Asked(_) => "not known to the API server for this node",
    };
    match (pod_info, pod_uid) {
        (Some(pod), _) => {
            let qos = qos.map_or(String::new(), |q| format!("  ({q})"));
            line(
                "pod",
                &format!("{}  {}/{}{qos}", pod.uid, pod.namespace, pod.name),
            );
            match &pod.workload {
                Some(w) => line(
                    "workload",
                    &format!("{} {}/{}", w.kind, pod.namespace, w.name),
                ),
                None => line("workload", "none: a pod without an owner"),
            }
        }
        (None, Some(uid)) => line("pod", &format!("{uid}  ({why_unnamed})")),
        (None, None) => line("pod", "none: a container outside Kubernetes"),
    }
    if let Names::Asked(Some(node)) = names {
        line("node", node);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use dnslens_lens::pods::Workload;
    use std::collections::BTreeMap;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const UID: &str = "6f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b";

    fn pod_path() -> String {
        format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/\
             cri-containerd-{ID}.scope",
            UID.replace('-', "_")
        )
    }

    #[test]
    fn proc_cgroup_lines() {
        let hybrid = format!(
            "12:memory:{p}\n11:cpu,cpuacct:{p}\n1:name=systemd:{p}\n0::/\n",
            p = pod_path()
        );
        assert_eq!(
            parse_proc_cgroup(&hybrid),
            (Some("/".into()), Some(pod_path()))
        );
        let v2 = format!("0::{}\n", pod_path());
        assert_eq!(parse_proc_cgroup(&v2), (Some(pod_path()), None));
        assert_eq!(
            parse_proc_cgroup("5:cpuset,memory:/docker/x\n"),
            (None, Some("/docker/x".into()))
        );
        assert_eq!(parse_proc_cgroup("garbage\n"), (None, None));
    }

    #[test]
    fn reads_a_process_and_says_when_there_is_none() {
        let root = std::env::temp_dir().join(format!("dnslens-whois-{}", std::process::id()));
        let dir = root.join("42");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("comm"), "dig\n").unwrap();
        std::fs::write(
            dir.join("cgroup"),
            format!("4:memory:{}\n0::/\n", pod_path()),
        )
        .unwrap();
        std::os::unix::fs::symlink("/usr/bin/dig", dir.join("exe")).unwrap();
        let p = Process::read(&root, 42).unwrap();
        assert_eq!(p.comm, "dig");
        assert_eq!(p.exe, Ok("/usr/bin/dig".to_string()));
        assert_eq!(p.cgroup(), pod_path(), "v2 at the root: the v1 path");
        let e = format!("{:#}", Process::read(&root, 43).unwrap_err());
        assert!(e.starts_with("no process 43: give the pid"), "{e}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    fn process(cgroup: &str) -> Process {
        Process {
            pid: 4242,
            comm: "python3".to_string(),
            exe: Ok("/usr/bin/python3.12".to_string()),
            v2: Some(cgroup.to_string()),
            v1_memory: None,
        }
    }

    #[test]
    fn the_chain_of_a_named_pod() {
        let p = process(&pod_path());
        let placement = Placement::of(p.cgroup());
        let pod = Arc::new(PodInfo {
            uid: UID.to_string(),
            name: "payment-svc-7d4b9f-xk2p1".to_string(),
            namespace: "production".to_string(),
            node: Some("node-1".to_string()),
            pod_ip: None,
            service_account: None,
            labels: BTreeMap::new(),
            workload: Some(Workload {
                kind: "Deployment".to_string(),
                name: "payment-svc".to_string(),
            }),
            containers: BTreeMap::from([(ID.to_string(), "app".to_string())]),
        });
        struct One(Arc<PodInfo>);
        impl PodDirectory for One {
            fn pod(&self, uid: &str) -> Option<Arc<PodInfo>> {
                (self.0.uid == uid).then(|| self.0.clone())
            }
            fn container(&self, id: &str) -> Option<(Arc<PodInfo>, String)> {
                Some((self.0.clone(), self.0.containers.get(id)?.clone()))
            }
        }
        let found = wait_for(&One(pod), &placement, Duration::ZERO);
        let text = render(
            &p,
            &placement,
            found.as_ref(),
            &Names::Asked(Some("node-1".to_string())),
        );
        assert_eq!(
            text,
            format!(
                "pid        4242\n\
                 process    python3  /usr/bin/python3.12\n\
                 cgroup     {}  (v2)\n\
                 container  {ID}  containerd  app\n\
                 pod        {UID}  production/payment-svc-7d4b9f-xk2p1  (Burstable)\n\
                 workload   Deployment production/payment-svc\n\
                 node       node-1\n",
                pod_path()
            )
        );
    }

    #[test]
    fn the_chain_without_names() {
        let p = process(&pod_path());
        let placement = Placement::of(p.cgroup());
        let text = render(&p, &placement, None, &Names::NoCluster);
        assert!(
            text.ends_with(&format!(
                "container  {ID}  containerd\npod        {UID}  (names need the Kubernetes \
                 API: no in-cluster configuration, no kubeconfig)\n"
            )),
            "{text}"
        );
        let host = process("/system.slice/ssh.service");
        let text = render(
            &host,
            &Placement::of(host.cgroup()),
            None,
            &Names::NotNeeded,
        );
        assert!(
            text.ends_with(
                "cgroup     /system.slice/ssh.service  (v2)\ncontainer  none: a host process\n"
            ),
            "{text}"
        );
        let docker = process(&format!("/system.slice/docker-{ID}.scope"));
        let placement = Placement::of(docker.cgroup());
        let text = render(&docker, &placement, None, &Names::Asked(None));
        assert!(
            text.ends_with(&format!(
                "container  {ID}  docker\npod        none: a container outside Kubernetes\n"
            )),
            "{text}"
        );
    }
}
