//! One system-test world: API, operator(s), two agents with their pods,
//! Prometheus, and `kubectl` pointed at it all.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use kube_standin::{Server, Standin};
use netprobe_pods::{Driver, Pod};
use serde_json::{Value, json};

use crate::procs::{Proc, binary, free_port};
use crate::prom::Prometheus;
use crate::{http_get, wait_for};

/// The two nodes every world has.
pub const NODES: [&str; 2] = ["node-a", "node-b"];
/// The namespace of plan ConfigMaps and the leader Lease.
pub const SYSTEM_NS: &str = "netprobe-system";

/// Worlds share the kernel's tracepoints and the machine's two cores: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// A pod to build on a node.
#[derive(Clone, Debug)]
pub struct PodSpec {
    pub namespace: &'static str,
    pub name: &'static str,
    pub node: &'static str,
    pub labels: &'static [(&'static str, &'static str)],
}

#[derive(Clone, Debug)]
pub struct WorldOptions {
    /// Operator replicas (more than one runs them with leader election).
    pub operators: usize,
    /// Namespaces to create, with their labels.
    pub namespaces: Vec<(&'static str, &'static [(&'static str, &'static str)])>,
    pub pods: Vec<PodSpec>,
    /// Lease duration of the operators, in seconds.
    pub lease_secs: u64,
}

impl Default for WorldOptions {
    fn default() -> Self {
        Self {
            operators: 1,
            namespaces: vec![("shop", &[]), ("other", &[])],
            pods: Vec::new(),
            lease_secs: 15,
        }
    }
}

/// A running agent.
pub struct Agent {
    pub node: String,
    pub addr: SocketAddr,
    pub proc: Proc,
}

/// A running operator replica.
pub struct Operator {
    pub identity: String,
    pub addr: SocketAddr,
    pub proc: Proc,
}

/// Fields drop in order: processes stop (agents detach their programs)
/// before the pods and the API go away.
pub struct World {
    pub prom: Prometheus,
    pub operators: Vec<Operator>,
    pub agents: Vec<Agent>,
    pods: BTreeMap<String, Pod>,
    pub server: Server,
    pub standin: Standin,
    rt: tokio::runtime::Runtime,
    kubeconfig: PathBuf,
    pub dir: tempfile::TempDir,
    _serial: MutexGuard<'static, ()>,
}

fn labels_json(labels: &[(&str, &str)]) -> Value {
    Value::Object(labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect())
}

/// The repository root (crds/, config/).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

impl World {
    /// Start a world, or None (after saying why) when this machine cannot
    /// run system tests; with NETPROBE_REQUIRE_KERNEL_TESTS=1 that fails.
    pub fn start(test: &str, opts: WorldOptions) -> Option<World> {
        let mut missing = Vec::new();
        for tool in ["kubectl", "prometheus"] {
            if !netprobe_testutil::have(tool) {
                missing.push(tool);
            }
        }
        if !missing.is_empty() && !netprobe_testutil::can_run(&format!("e2e/{test}"), &missing) {
            return None;
        }
        if !netprobe_pods::kernel_available(&format!("e2e/{test}")) {
            return None;
        }
        let serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let dir = tempfile::Builder::new()
            .prefix("netprobe-e2e-")
            .tempdir()
            .unwrap_or_else(|e| panic!("tempdir: {e}"));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("runtime: {e}"));
        let standin = Standin::new();
        let server = rt
            .block_on(Server::start(
                standin.clone(),
                "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}")),
            ))
            .unwrap_or_else(|e| panic!("stand-in listener: {e}"));
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, server.kubeconfig()).unwrap_or_else(|e| panic!("kubeconfig: {e}"));

        // The cluster as the kubelets and an admin made it: nodes, namespaces, pods.
        for node in NODES {
            standin.put(
                "v1",
                "nodes",
                json!({"metadata": {"name": node, "labels": {"kubernetes.io/hostname": node}}}),
            );
        }
        standin.put("v1", "namespaces", json!({"metadata": {"name": SYSTEM_NS}}));
        for (ns, labels) in &opts.namespaces {
            standin.put(
                "v1",
                "namespaces",
                json!({"metadata": {"name": ns, "labels": labels_json(labels)}}),
            );
        }
        let mut pods = BTreeMap::new();
        for (i, p) in opts.pods.iter().enumerate() {
            let driver = if i % 2 == 0 { Driver::Systemd } else { Driver::Cgroupfs };
            let pod = Pod::new(driver);
            standin.put(
                "v1",
                "pods",
                json!({"metadata": {"name": p.name, "namespace": p.namespace, "uid": pod.uid,
                                    "labels": labels_json(p.labels)},
                       "spec": {"nodeName": p.node, "containers": [{"name": "app", "image": "python"}]},
                       "status": {"phase": "Running", "podIP": pod.ip4}}),
            );
            pods.insert(format!("{}/{}", p.namespace, p.name), pod);
        }

        let mut world = World {
            prom: Prometheus {
                addr: "127.0.0.1:1".parse().unwrap_or_else(|e| panic!("{e}")),
                proc: Proc::spawn("placeholder", Command::new("true"), dir.path()),
            },
            operators: Vec::new(),
            agents: Vec::new(),
            pods,
            server,
            standin,
            rt,
            kubeconfig,
            dir,
            _serial: serial,
        };
        world.kubectl_ok(&["apply", "-f", &repo_root().join("crds").display().to_string()]);
        for node in NODES {
            world.start_agent(node);
        }
        for i in 0..opts.operators {
            world.start_operator(&format!("operator-{i}"), opts.operators > 1, opts.lease_secs);
        }
        let mut jobs = vec![("netprobe-agent", world.agents.iter().map(|a| a.addr).collect())];
        jobs.push(("netprobe-operator", world.operators.iter().map(|o| o.addr).collect()));
        world.prom = Prometheus::start(world.dir.path(), &jobs);
        wait_for("every scrape target to be up", 60, || world.prom.all_up());
        Some(world)
    }

    pub fn start_agent(&mut self, node: &str) {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port())
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let mut cmd = Command::new(binary("netprobe-agent"));
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env("NODE_NAME", node)
            .env("POD_NAMESPACE", SYSTEM_NS)
            .env("RUST_LOG", "info")
            .args([
                "--metrics-addr",
                &addr.to_string(),
                "--status-min-interval",
                "1",
                "--rtt-interval",
                "1",
            ]);
        let mut proc = Proc::spawn(&format!("agent-{node}"), cmd, self.dir.path());
        wait_for(&format!("agent {node} to serve /healthz"), 30, || {
            if !proc.running() {
                panic!("agent {node} exited:\n{}", proc.tail(30));
            }
            match http_get(addr, "/healthz") {
                Ok((200, _)) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        });
        self.agents.push(Agent {
            node: node.to_string(),
            addr,
            proc,
        });
    }

    pub fn start_operator(&mut self, identity: &str, leader_elect: bool, lease_secs: u64) {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port())
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let mut cmd = Command::new(binary("netprobe-operator"));
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env("POD_NAMESPACE", SYSTEM_NS)
            .env("RUST_LOG", "info")
            .args(["--metrics-addr", &addr.to_string(), "--identity", identity])
            .args(["--lease-duration", &lease_secs.to_string()]);
        if leader_elect {
            cmd.arg("--leader-elect");
        }
        let mut proc = Proc::spawn(identity, cmd, self.dir.path());
        wait_for(&format!("{identity} to serve /healthz"), 30, || {
            if !proc.running() {
                panic!("{identity} exited:\n{}", proc.tail(30));
            }
            match http_get(addr, "/healthz") {
                Ok((200, _)) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        });
        self.operators.push(Operator {
            identity: identity.to_string(),
            addr,
            proc,
        });
    }

    /// Run kubectl against this world's API.
    pub fn kubectl(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("kubectl")
            .env("KUBECONFIG", &self.kubeconfig)
            .args(args)
            .output()
            .map_err(|e| format!("kubectl: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)))
        }
    }

    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        self.kubectl(args)
            .unwrap_or_else(|e| panic!("kubectl {}: {e}", args.join(" ")))
    }

    /// `kubectl apply -f` of a manifest given as text.
    pub fn apply(&self, yaml: &str) -> Result<String, String> {
        let path = self.dir.path().join(format!("manifest-{}.yaml", free_port()));
        std::fs::write(&path, yaml).map_err(|e| e.to_string())?;
        self.kubectl(&["apply", "-f", &path.display().to_string()])
    }

    /// An object as `kubectl get -o json` shows it.
    pub fn get_json(&self, args: &[&str]) -> Result<Value, String> {
        let mut a = vec!["get"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["-o", "json"]);
        let text = self.kubectl(&a)?;
        serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))
    }

    pub fn pod(&self, namespace: &str, name: &str) -> &Pod {
        self.pods
            .get(&format!("{namespace}/{name}"))
            .unwrap_or_else(|| panic!("no pod {namespace}/{name} in this world"))
    }

    pub fn pod_mut(&mut self, namespace: &str, name: &str) -> &mut Pod {
        self.pods
            .get_mut(&format!("{namespace}/{name}"))
            .unwrap_or_else(|| panic!("no pod {namespace}/{name} in this world"))
    }

    pub fn agent(&self, node: &str) -> &Agent {
        self.agents
            .iter()
            .find(|a| a.node == node)
            .unwrap_or_else(|| panic!("no agent {node}"))
    }

    /// The agent's own exposition (what Prometheus scrapes).
    pub fn agent_metrics(&self, node: &str) -> String {
        match http_get(self.agent(node).addr, "/metrics") {
            Ok((200, body)) => body,
            other => panic!("agent {node} /metrics: {other:?}"),
        }
    }

    /// Stop the API server (connections refused, open watches cut) until [`World::resume_api`].
    pub fn stop_api(&mut self) {
        self.server.stop();
    }

    pub fn resume_api(&mut self) {
        let server = &mut self.server;
        self.rt
            .block_on(server.resume())
            .unwrap_or_else(|e| panic!("restart the stand-in listener: {e}"));
    }

    /// The np_* programs an agent holds: (name, id), sorted.
    pub fn programs_of(&self, node: &str) -> Vec<(String, u64)> {
        let Some(pid) = self.agent(node).proc.pid() else {
            return Vec::new();
        };
        let held = netprobe_pods::programs_held_by(pid);
        let mut out: Vec<(String, u64)> = netprobe_pods::np_programs()
            .into_iter()
            .filter(|(id, _)| held.contains(id))
            .map(|(id, name)| (name, id))
            .collect();
        out.sort();
        out
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for p in self
                .operators
                .iter()
                .map(|o| &o.proc)
                .chain(self.agents.iter().map(|a| &a.proc))
            {
                eprintln!("---- last log lines of {} ----\n{}", p.name, p.tail(40));
            }
        }
        // Agents first, so they detach before their pods go.
        for a in &mut self.agents {
            a.proc.stop();
        }
        for o in &mut self.operators {
            o.proc.stop();
        }
    }
}
