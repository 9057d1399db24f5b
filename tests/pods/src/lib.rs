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

pub use metrics::*;
pub use plans::*;

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

/// A client script for the pod: 24 × 64 KiB to the peer's port 5001 over
/// IPv4, IPv6 and v4-mapped IPv6, each connection drained to the end.
pub fn bulk_client(pod: &Pod) -> String {
    bulk_client_to(&pod.peer_ip4, Some(&pod.peer_ip6))
}

/// The same to any peer: IPv4 always, IPv6 and v4-mapped when `v6` is given.
pub fn bulk_client_to(v4: &str, v6: Option<&str>) -> String {
    let mut s = String::from(
        r#"
import socket
def send(fam, addr):
    s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(120); s.connect((addr, 5001))
    buf = b"x" * 65536
    for _ in range(24):
        s.sendall(buf)
    s.shutdown(socket.SHUT_WR)
    while s.recv(65536):
        pass
    s.close()
"#,
    );
    s.push_str(&format!("send(socket.AF_INET, \"{v4}\")\n"));
    if let Some(v6) = v6 {
        s.push_str(&format!(
            "send(socket.AF_INET6, \"{v6}\")\nsend(socket.AF_INET6, \"::ffff:{v4}\")\n"
        ));
    }
    s.push_str("print(\"done\")\n");
    s
}

/// What a test TCP server does with each connection.
#[derive(Clone, Copy, Debug)]
pub enum Serve {
    /// Read until EOF (bulk transfers).
    Sink,
    /// Accept and close at once, in the accept loop: no thread per
    /// connection, so the server keeps up with a connection-rate client.
    AcceptClose,
    /// Echo what arrives (round trips).
    Echo,
}

/// A python script for the peer namespace serving `ports` on IPv4 and IPv6;
/// prints "ready" once listening (see [`Pod::peer_spawn`]).
pub fn servers(ports: &[(u16, Serve)]) -> String {
    let mut s = String::from(
        "import socket, threading\n\
         def sink(c):\n    try:\n        while c.recv(65536):\n            pass\n    except ConnectionResetError:\n        pass\n    c.close()\n\
         def close(c):\n    c.close()\n\
         def echo(c):\n    while True:\n        d = c.recv(64)\n        if not d:\n            break\n        c.sendall(d)\n\
         def serve(fam, addr, port, handler):\n    \
         s = socket.socket(fam, socket.SOCK_STREAM); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n    \
         if fam == socket.AF_INET6:\n        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)\n    \
         s.bind((addr, port)); s.listen(1024)\n    \
         while True:\n        c, _ = s.accept()\n        \
         if handler is close:\n            c.close()\n        else:\n            \
         threading.Thread(target=handler, args=(c,), daemon=True).start()\n",
    );
    for (port, kind) in ports {
        let h = match kind {
            Serve::Sink => "sink",
            Serve::AcceptClose => "close",
            Serve::Echo => "echo",
        };
        s.push_str(&format!(
            "for fam, addr in [(socket.AF_INET, '0.0.0.0'), (socket.AF_INET6, '::')]:\n    \
             threading.Thread(target=serve, args=(fam, addr, {port}, {h}), daemon=True).start()\n"
        ));
    }
    s.push_str("print('ready', flush=True)\nthreading.Event().wait()\n");
    s
}

/// The series flood of the tenant-isolation tests: `peers` distinct peer
/// addresses (10.214.0.0/16, local to the pod's peer namespace, whose SYNs
/// to port 5005 are dropped), one non-blocking connect from the pod to each,
/// held 2.5 s (so each SYN is retransmitted) and closed. Every peer becomes a
/// retransmit series under a probe with peer labels.
pub fn connect_to_distinct_dropped_peers(pod: &Pod, peers: usize) {
    sh(&format!(
        "ip -n {} route add 10.214.0.0/16 via {} && ip -n {} route add local 10.214.0.0/16 dev lo",
        pod.ns, pod.peer_ip4, pod.peer_ns
    ));
    Pod::nft(
        &pod.peer_ns,
        "table inet nptest {\n chain input {\n type filter hook input priority 0;\n tcp dport 5005 tcp flags syn counter drop\n }\n}",
    );
    let out = pod.run(&pending_connects(
        peers,
        "\"10.214.%d.%d\" % (i // 250, i % 250 + 1)",
        5005,
        "time.sleep(2.5)",
    ));
    assert!(out.contains(&format!("closed {peers}")), "{out}");
}

/// A python script that opens `n` non-blocking connects to `(addr, port)`
/// (`addr` a python expression, which may use the index `i`), runs `hold`
/// (python, at the top level) while they pend, closes them all and prints
/// "closed N".
pub fn pending_connects(n: usize, addr: &str, port: u16, hold: &str) -> String {
    format!(
        r#"
import os, resource, socket, time
resource.setrlimit(resource.RLIMIT_NOFILE, ({n} + 1024, {n} + 1024))
socks = []
for i in range({n}):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        s.connect(({addr}, {port}))
    except BlockingIOError:
        pass
    socks.append(s)
{hold}
for s in socks:
    s.close()
print("closed", len(socks))
"#
    )
}

/// Connects a pod's client opened and holds until released: pending (in
/// SYN_SENT) while the peer drops their SYNs ([`Pod::drop_syns`]),
/// established when the peer listens without accepting. Dropping it
/// releases them too, so a failing test leaves no client behind.
pub struct HeldConnects {
    child: Option<Child>,
    go: PathBuf,
    n: usize,
}

static HELD: AtomicU32 = AtomicU32::new(0);

impl Pod {
    /// Open `n` connects from the pod to its peer's `port` and hold them;
    /// returns once all are opened.
    pub fn hold_connects(&self, n: usize, port: u16) -> HeldConnects {
        let go = std::env::temp_dir().join(format!(
            "nptest-held-{}-{}",
            std::process::id(),
            HELD.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&go);
        let mut child = self.spawn(&pending_connects(
            n,
            &format!("{:?}", self.peer_ip4),
            port,
            &format!(
                "print(\"ready\", flush=True)\nwhile not os.path.exists({:?}):\n    time.sleep(0.05)",
                go.display().to_string()
            ),
        ));
        read_ready(&mut child);
        HeldConnects {
            child: Some(child),
            go,
            n,
        }
    }

    /// The peer drops every SYN to `port` (nft, `table inet nptest`), so
    /// connects to it stay pending.
    pub fn drop_syns(&self, port: u16) {
        Pod::nft(
            &self.peer_ns,
            &format!(
                "table inet nptest {{\n chain input {{\n type filter hook input priority 0;\n tcp dport {port} tcp flags syn counter drop\n }}\n}}"
            ),
        );
    }
}

impl HeldConnects {
    /// Close them all and wait for the client, which must have closed
    /// every one.
    pub fn release(mut self) {
        let _ = std::fs::write(&self.go, b"");
        if let Some(child) = self.child.take() {
            let out = child.wait_with_output().expect("held connects' client");
            let said = String::from_utf8_lossy(&out.stdout);
            assert!(said.contains(&format!("closed {}", self.n)), "the client said {said:?}");
        }
    }
}

impl Drop for HeldConnects {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.go);
    }
}

/// Wait for a child's first line and check it says "ready" (or "ok").
pub fn read_ready(child: &mut Child) {
    use std::io::BufRead;
    let mut line = String::new();
    if let Some(out) = child.stdout.as_mut() {
        let _ = std::io::BufReader::new(out).read_line(&mut line);
    }
    assert!(
        matches!(line.trim(), "ready" | "ok"),
        "child did not get ready: {line:?}"
    );
}

/// A python script connecting `times` times to each of `addrs` (IPv6 when
/// it has a `:`) on `port`, where nothing listens: each connect is refused
/// (a reset received, a failed connect).
pub fn refused_connects(addrs: &[&str], times: usize, port: u16) -> String {
    let list: Vec<String> = addrs.iter().map(|a| format!("{a:?}")).collect();
    format!(
        r#"
import socket
for addr in [{}] * {times}:
    s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.connect((addr, {port}))
    except ConnectionRefusedError:
        pass
    s.close()
"#,
        list.join(", ")
    )
}

/// A TCP server script on IPv4 `port` for `conns` connections, one after
/// the other: each reads to the client's end, sends `send` bytes and
/// closes; prints "ready" once listening (see [`read_ready`]).
pub fn tcp_server(port: u16, conns: usize, send: usize) -> String {
    format!(
        r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", {port})); s.listen(16); print("ready", flush=True)
for _ in range({conns}):
    c, _ = s.accept()
    while c.recv(65536):
        pass
    c.sendall(b"y" * {send})
    c.close()
"#
    )
}

/// Its client: `conns` connections to `addr`:`port`, each sending `send`
/// bytes, then reading to the server's end.
pub fn tcp_clients(addr: &str, port: u16, conns: usize, send: usize) -> String {
    format!(
        r#"
import socket
for _ in range({conns}):
    s = socket.socket(); s.settimeout(120); s.connect(("{addr}", {port}))
    s.sendall(b"q" * {send}); s.shutdown(socket.SHUT_WR)
    while s.recv(65536):
        pass
    s.close()
"#
    )
}
