//! Kernel-tier fixtures: "pods" built the way the kubelet builds them — a
//! network namespace wired by veth to a peer namespace, and a cgroup tree
//! under the cgroup2 mount in the systemd or cgroupfs driver layout — and
//! the kernel's own counters (nstat in the namespace, nft rule counters) as
//! the oracle. Everything is removed on drop, also when a test fails.
//! Used by the agent's kernel tests and by the system tests.

pub mod dns;
mod metrics;
mod plans;
pub mod traffic;
mod workloads;

pub use metrics::*;
pub use plans::*;
pub use workloads::*;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use netprobe_agent::cgroups;
use netprobe_agent::pipeline::desired::{Owner, Target};

/// Kernel tests share the machine's tracepoints and timing: run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// True when kernel tests can run here. Otherwise says so loudly and, when
/// NETPROBE_REQUIRE_KERNEL_TESTS=1 (CI), fails instead of skipping.
pub fn kernel_available(test: &str) -> bool {
    let mut missing = Vec::new();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        missing.push("root");
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        missing.push("kernel BTF (/sys/kernel/btf/vmlinux)");
    }
    if cgroups::cgroup2_mount(Path::new("/proc/self/mountinfo")).is_err() {
        missing.push("a cgroup2 mount");
    }
    for tool in ["ip", "nft", "nstat", "ss", "python3", "bpftool"] {
        if !netprobe_testutil::have(tool) {
            missing.push(tool);
        }
    }
    netprobe_testutil::can_run(&format!("kernel/{test}"), &missing)
}

pub fn sh(cmd: &str) -> Output {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"));
    if !out.status.success() {
        panic!(
            "`{cmd}` failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

fn sh_quiet(cmd: &str) {
    let _ = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

static NEXT: AtomicU32 = AtomicU32::new(1);

/// The cgroup driver layout to build.
#[derive(Clone, Copy, Debug)]
pub enum Driver {
    /// systemd driver, a Burstable pod: `kubepods.slice/kubepods-burstable.slice/…`.
    Systemd,
    /// cgroupfs driver, a BestEffort pod: `kubepods/besteffort/pod<uid>`.
    Cgroupfs,
    /// systemd driver, a Guaranteed pod (no QoS slice).
    SystemdGuaranteed,
    /// kind's nested kubelet (systemd driver, a BestEffort pod):
    /// `kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/…`.
    KindNested,
    /// cgroupfs driver under a kubelet `--cgroup-root=/kubelet`, a Burstable pod.
    CgroupfsCustomRoot,
}

impl Driver {
    /// Every kubelet layout the agent must find pods in.
    pub const ALL: [Driver; 5] = [
        Driver::Systemd,
        Driver::Cgroupfs,
        Driver::SystemdGuaranteed,
        Driver::KindNested,
        Driver::CgroupfsCustomRoot,
    ];
}

/// A kubelet-shaped pod: netns + peer netns over veth, pod and container cgroups.
pub struct Pod {
    pub uid: String,
    pub ns: String,
    pub peer_ns: String,
    pub host_network: bool,
    pub cgroup2: PathBuf,
    /// Pod-level cgroup (what the agent registers).
    pub pod_cgroup: PathBuf,
    /// Current container cgroup (processes run here).
    pub container: PathBuf,
    /// Directories to remove on drop, deepest first.
    created: Vec<PathBuf>,
    pub ip4: String,
    pub peer_ip4: String,
    pub ip6: String,
    pub peer_ip6: String,
    children: Vec<Child>,
}

impl Pod {
    pub fn new(driver: Driver) -> Pod {
        Self::build(driver, false)
    }

    /// A hostNetwork pod: cgroups only, processes stay in the host netns.
    pub fn host_network(driver: Driver) -> Pod {
        Self::build(driver, true)
    }

    fn build(driver: Driver, host_network: bool) -> Pod {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let tag = format!("{}{:02}", std::process::id() % 10000, n);
        let uid = format!("{:08x}-0000-4000-8000-{:012x}", std::process::id(), n);
        let cgroup2 = cgroups::cgroup2_mount(Path::new("/proc/self/mountinfo")).expect("cgroup2 mount");
        let us = uid.replace('-', "_");
        let (dirs, pod_rel, container_rel): (Vec<String>, String, String) = match driver {
            Driver::Systemd => {
                let pod = format!("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{us}.slice");
                (
                    vec![
                        "kubepods.slice".into(),
                        "kubepods.slice/kubepods-burstable.slice".into(),
                        pod.clone(),
                    ],
                    pod.clone(),
                    format!("{pod}/cri-containerd-{tag}a.scope"),
                )
            }
            Driver::Cgroupfs => {
                let pod = format!("kubepods/besteffort/pod{uid}");
                (
                    vec!["kubepods".into(), "kubepods/besteffort".into(), pod.clone()],
                    pod.clone(),
                    format!("{pod}/{tag}a"),
                )
            }
            Driver::SystemdGuaranteed => {
                let pod = format!("kubepods.slice/kubepods-pod{us}.slice");
                (
                    vec!["kubepods.slice".into(), pod.clone()],
                    pod.clone(),
                    format!("{pod}/cri-containerd-{tag}a.scope"),
                )
            }
            Driver::KindNested => {
                let qos = "kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice";
                let pod = format!("{qos}/kubelet-kubepods-besteffort-pod{us}.slice");
                (
                    vec![
                        "kubelet.slice".into(),
                        "kubelet.slice/kubelet-kubepods.slice".into(),
                        qos.into(),
                        pod.clone(),
                    ],
                    pod.clone(),
                    format!("{pod}/cri-containerd-{tag}a.scope"),
                )
            }
            Driver::CgroupfsCustomRoot => {
                let pod = format!("kubelet/kubepods/burstable/pod{uid}");
                (
                    vec![
                        "kubelet".into(),
                        "kubelet/kubepods".into(),
                        "kubelet/kubepods/burstable".into(),
                        pod.clone(),
                    ],
                    pod.clone(),
                    format!("{pod}/{tag}a"),
                )
            }
        };
        let mut created = Vec::new();
        for d in dirs.iter().chain(std::iter::once(&container_rel)) {
            let p = cgroup2.join(d);
            if !p.exists() {
                std::fs::create_dir(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
                created.push(p);
            }
        }
        let ns = format!("np{tag}");
        let peer_ns = format!("np{tag}p");
        let octet = n % 250 + 1;
        let mut pod = Pod {
            uid,
            ns: ns.clone(),
            peer_ns: peer_ns.clone(),
            host_network,
            pod_cgroup: cgroup2.join(&pod_rel),
            container: cgroup2.join(&container_rel),
            cgroup2,
            created,
            ip4: format!("10.213.{octet}.1"),
            peer_ip4: format!("10.213.{octet}.2"),
            ip6: format!("fd00:213:{octet}::1"),
            peer_ip6: format!("fd00:213:{octet}::2"),
            children: Vec::new(),
        };
        if host_network {
            return pod;
        }
        sh(&format!("ip netns add {ns} && ip netns add {peer_ns}"));
        sh(&format!(
            "ip link add v{tag} netns {ns} type veth peer name v{tag}p netns {peer_ns} && \
             ip -n {ns} link set lo up && ip -n {peer_ns} link set lo up && \
             ip -n {ns} addr add {}/24 dev v{tag} && ip -n {peer_ns} addr add {}/24 dev v{tag}p && \
             ip -n {ns} addr add {}/64 dev v{tag} nodad && ip -n {peer_ns} addr add {}/64 dev v{tag}p nodad && \
             ip -n {ns} link set v{tag} up && ip -n {peer_ns} link set v{tag}p up",
            pod.ip4, pod.peer_ip4, pod.ip6, pod.peer_ip6
        ));
        // Resolve neighbours both ways before any test measures anything
        // (the first IPv6 SYN can otherwise wait for neighbour discovery).
        let warm = format!(
            "import socket\nfor fam, addr in [(socket.AF_INET, '{}'), (socket.AF_INET6, '{}')]:\n    \
             s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(5)\n    \
             try:\n        s.connect((addr, 1))\n    except OSError:\n        pass\n    s.close()\n",
            pod.peer_ip4, pod.peer_ip6
        );
        sh(&format!("ip netns exec {ns} python3 -c \"{warm}\""));
        // Keep one long-lived member process, as a pause container would be.
        let mut pause = pod.spawn("import time; print('ready', flush=True); time.sleep(3600)");
        read_ready(&mut pause);
        pod.children.push(pause);
        pod
    }

    /// The kubelet's pods cgroup this pod is below (its outermost
    /// `kubepods` ancestor), where a cluster agent attaches Traffic's and
    /// Dns's programs (`cgroups::pods_subtree`).
    pub fn kubepods_cgroup(&self) -> PathBuf {
        self.pod_cgroup
            .ancestors()
            .take_while(|a| *a != self.cgroup2)
            .filter(|a| a.file_name().is_some_and(|n| n.to_string_lossy().contains("kubepods")))
            .last()
            .unwrap_or(&self.cgroup2)
            .to_path_buf()
    }

    /// The agent's view of this pod.
    pub fn target(&self, namespace: &str, name: &str) -> Target {
        Target {
            key: self.uid.clone(),
            owner: Owner::Pod {
                namespace: namespace.into(),
                pod: name.into(),
                workload: None,
            },
            cgroup_id: cgroups::cgroup_id(&self.pod_cgroup).expect("pod cgroup id"),
            netns: if self.host_network {
                None
            } else {
                cgroups::netns_of_cgroup(Path::new("/proc"), &self.pod_cgroup)
            },
        }
    }

    fn in_pod(&self, cgroup: &Path, ns: Option<&str>, python: &str) -> Command {
        let mut c = Command::new("sh");
        let netns = ns.map(|n| format!("ip netns exec {n} ")).unwrap_or_default();
        c.arg("-c")
            .arg(format!(
                "echo $$ > {}/cgroup.procs && exec {netns}python3 -c \"$0\"",
                cgroup.display()
            ))
            .arg(python);
        c
    }

    fn ns_arg(&self) -> Option<&str> {
        if self.host_network { None } else { Some(&self.ns) }
    }

    /// Run python in the pod's container (its cgroup and netns) to completion.
    pub fn run(&self, python: &str) -> String {
        let out = self
            .in_pod(&self.container, self.ns_arg(), python)
            .output()
            .expect("spawn python in pod");
        if !out.status.success() {
            panic!(
                "pod script failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Start python in the pod's container in the background.
    pub fn spawn(&self, python: &str) -> Child {
        self.in_pod(&self.container, self.ns_arg(), python)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn python in pod")
    }

    /// Run python in the peer namespace (outside any pod cgroup).
    pub fn peer_run(&self, python: &str) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.peer_ns, "python3", "-c", python])
            .output()
            .expect("spawn python in peer");
        if !out.status.success() {
            panic!("peer script failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Start python in the peer namespace in the background; waits until it
    /// prints "ready".
    pub fn peer_spawn(&mut self, python: &str) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.peer_ns, "python3", "-u", "-c", python])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn python in peer");
        read_ready(&mut child);
        self.children.push(child);
    }

    /// A kernel counter of a namespace, as nstat reads it.
    pub fn nstat_in(ns: &str, counter: &str) -> u64 {
        let out = sh(&format!("ip netns exec {ns} nstat -asz {counter}"));
        parse_nstat(&String::from_utf8_lossy(&out.stdout), counter)
    }

    pub fn nstat(&self, counter: &str) -> u64 {
        Self::nstat_in(&self.ns, counter)
    }

    pub fn peer_nstat(&self, counter: &str) -> u64 {
        Self::nstat_in(&self.peer_ns, counter)
    }

    /// Load an nft ruleset into a namespace.
    pub fn nft(ns: &str, ruleset: &str) {
        let path = std::env::temp_dir().join(format!("nptest-{}-{ns}.nft", std::process::id()));
        std::fs::write(&path, ruleset).expect("write nft ruleset");
        sh(&format!("ip netns exec {ns} nft -f {}", path.display()));
        let _ = std::fs::remove_file(path);
    }

    /// Packets counted by the first `counter` of `table inet nptest` in `ns`.
    pub fn nft_counter(ns: &str) -> u64 {
        let out = sh(&format!("ip netns exec {ns} nft -j list table inet nptest"));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("nft json");
        v["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| o["rule"]["expr"].as_array())
            .flatten()
            .find_map(|e| e["counter"]["packets"].as_u64())
            .expect("an nft counter")
    }

    /// A container restart: a new leaf cgroup (new id), the old one gone.
    pub fn restart_container(&mut self) {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let parent = self.container.parent().expect("container has a parent").to_path_buf();
        let systemd = self.container.extension().is_some_and(|e| e == "scope");
        let fresh = parent.join(if systemd {
            format!("cri-containerd-restart{n}.scope")
        } else {
            format!("restart{n}")
        });
        std::fs::create_dir(&fresh).expect("new container cgroup");
        // Move the pause process, like a runtime re-parenting, then drop the old leaf.
        for pid in cgroups::member_pids(&self.container) {
            let _ = std::fs::write(fresh.join("cgroup.procs"), pid.to_string());
        }
        let _ = std::fs::remove_dir(&self.container);
        self.created.retain(|p| p != &self.container);
        self.created.push(fresh.clone());
        self.container = fresh;
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for dir in self.created.iter().rev() {
            let kill = dir.join("cgroup.kill");
            if kill.exists() {
                let _ = std::fs::write(&kill, "1");
            }
        }
        // Our own dirs (killed processes take a moment to leave: rmdir says
        // EBUSY meanwhile), then the shared kubepods parents, once: they are
        // busy for as long as another pod still uses them.
        for dir in self.created.iter().rev() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while let Err(e) = std::fs::remove_dir(dir) {
                if e.raw_os_error() != Some(libc::EBUSY) || Instant::now() >= deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        for dir in self.pod_cgroup.ancestors().skip(1).take_while(|p| *p != self.cgroup2) {
            let _ = std::fs::remove_dir(dir);
        }
        if !self.host_network {
            sh_quiet(&format!("ip netns del {}", self.ns));
            sh_quiet(&format!("ip netns del {}", self.peer_ns));
        }
    }
}

/// netprobe's programs (`np_*`) loaded in the kernel: id → name.
pub fn np_programs() -> BTreeMap<u64, String> {
    let out = sh("bpftool -j prog show");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v.as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["name"].as_str().is_some_and(|n| n.starts_with("np_")))
        .filter_map(|p| Some((p["id"].as_u64()?, p["name"].as_str()?.to_string())))
        .collect()
}

/// IDs of the BPF programs a process holds through a program or link fd
/// (`prog_id` in /proc/<pid>/fdinfo; bpftool's own `pids` needs a build
/// option Debian's lacks).
pub fn programs_held_by(pid: u32) -> std::collections::BTreeSet<u64> {
    let dir = PathBuf::from(format!("/proc/{pid}/fdinfo"));
    std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("prog_id:").and_then(|v| v.trim().parse().ok()))
        })
        .collect()
}
