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

use crate::cluster::{Cluster, PEERS_NS};
use crate::procs::{Proc, binary, free_port};
use crate::prom::Prometheus;
use crate::testpod::{RemotePod, TestPod};
use crate::{https_get, wait_for};

/// The environment variable naming a real cluster's kubeconfig.
pub const KUBECONFIG_ENV: &str = "NETPROBE_E2E_KUBECONFIG";

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

/// A running agent: a local process, or a port-forward to its pod.
pub struct Agent {
    pub node: String,
    pub addr: SocketAddr,
    pub proc: Proc,
    /// Pod name on a real cluster.
    pub pod: Option<String>,
}

/// A running operator replica (same shape as [`Agent`]).
pub struct Operator {
    pub identity: String,
    pub addr: SocketAddr,
    pub proc: Proc,
}

/// Where the API and the components run.
enum Backend {
    /// The in-repo stand-in on loopback; components are local processes.
    StandIn {
        server: Server,
        rt: tokio::runtime::Runtime,
    },
    /// A real cluster with netprobe deployed in it.
    Cluster(Cluster),
}

/// Fields drop in order: processes stop (agents detach their programs)
/// before the pods and the API go away.
pub struct World {
    pub prom: Prometheus,
    pub operators: Vec<Operator>,
    pub agents: Vec<Agent>,
    pods: BTreeMap<String, TestPod>,
    backend: Backend,
    kubeconfig: PathBuf,
    /// The nodes standing for node-a and node-b.
    nodes: Vec<String>,
    /// The operators' lease duration, in seconds.
    pub lease_secs: u64,
    pub dir: tempfile::TempDir,
    /// A token of `monitoring/prometheus`, bound to the ClusterRole
    /// `netprobe-metrics-reader`: what Prometheus scrapes with.
    pub reader_token: String,
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
    /// With NETPROBE_E2E_KUBECONFIG set, the world is that cluster.
    pub fn start(test: &str, opts: WorldOptions) -> Option<World> {
        let mut missing = Vec::new();
        for tool in ["kubectl", "prometheus", "curl"] {
            if !netprobe_testutil::have(tool) {
                missing.push(tool);
            }
        }
        if !missing.is_empty() && !netprobe_testutil::can_run(&format!("e2e/{test}"), &missing) {
            return None;
        }
        let real = std::env::var(KUBECONFIG_ENV).ok().filter(|v| !v.is_empty());
        if real.is_none() && !netprobe_pods::kernel_available(&format!("e2e/{test}")) {
            return None;
        }
        let serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let dir = tempfile::Builder::new()
            .prefix("netprobe-e2e-")
            .tempdir()
            .unwrap_or_else(|e| panic!("tempdir: {e}"));
        let placeholder = Prometheus {
            addr: "127.0.0.1:1".parse().unwrap_or_else(|e| panic!("{e}")),
            proc: Proc::spawn("placeholder", Command::new("true"), dir.path()),
        };
        let mut world = match real {
            Some(kc) => Self::on_cluster(PathBuf::from(kc), &opts, dir, serial, placeholder),
            None => Self::on_standin(&opts, dir, serial, placeholder),
        };
        world.kubectl_ok(&["apply", "-f", &repo_root().join("crds").display().to_string()]);
        if matches!(world.backend, Backend::StandIn { .. }) {
            // netprobe's own RBAC, as installed (the metrics reader role included).
            world.kubectl_ok(&["apply", "-k", &repo_root().join("config/rbac").display().to_string()]);
        }
        world.reader_token = world.metrics_reader("prometheus", true);
        let token_file = world.dir.path().join("prometheus.token");
        std::fs::write(&token_file, &world.reader_token).unwrap_or_else(|e| panic!("token file: {e}"));
        if matches!(world.backend, Backend::StandIn { .. }) {
            for node in NODES {
                world.start_agent(node);
            }
            for i in 0..opts.operators {
                world.start_operator(&format!("operator-{i}"), opts.operators > 1, opts.lease_secs);
            }
        }
        let mut jobs = vec![("netprobe-agent", world.agents.iter().map(|a| a.addr).collect())];
        jobs.push(("netprobe-operator", world.operators.iter().map(|o| o.addr).collect()));
        world.prom = Prometheus::start(world.dir.path(), &jobs, &token_file);
        wait_for("every scrape target to be up", 60, || world.prom.all_up());
        Some(world)
    }

    fn on_standin(
        opts: &WorldOptions,
        dir: tempfile::TempDir,
        serial: MutexGuard<'static, ()>,
        prom: Prometheus,
    ) -> World {
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
        standin.put("v1", "namespaces", json!({"metadata": {"name": SYSTEM_NS}}));
        for (ns, labels) in &opts.namespaces {
            standin.put(
                "v1",
                "namespaces",
                json!({"metadata": {"name": ns, "labels": labels_json(labels)}}),
            );
        }
        let mut pods = BTreeMap::new();
        let mut pod_cidrs: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (i, p) in opts.pods.iter().enumerate() {
            // Every scenario's pods live under the kubelet layouts the agent
            // must find (the kernel tier resolves all of them; these give
            // series): kind's nested kubelet, a cgroupfs kubelet under
            // --cgroup-root, a Guaranteed pod, cgroupfs BestEffort, systemd.
            const LAYOUTS: [Driver; 5] = [
                Driver::KindNested,
                Driver::CgroupfsCustomRoot,
                Driver::SystemdGuaranteed,
                Driver::Cgroupfs,
                Driver::Systemd,
            ];
            let driver = LAYOUTS[i % LAYOUTS.len()];
            let pod = Pod::new(driver);
            standin.put(
                "v1",
                "pods",
                json!({"metadata": {"name": p.name, "namespace": p.namespace, "uid": pod.uid,
                                    "labels": labels_json(p.labels)},
                       "spec": {"nodeName": p.node, "containers": [{"name": "app", "image": "python"}]},
                       "status": {"phase": "Running", "podIP": pod.ip4}}),
            );
            if let Some(cidr) = pod.ip4.rsplit_once('.').map(|(net, _)| format!("{net}.0/24")) {
                pod_cidrs.entry(p.node).or_default().push(cidr);
            }
            pods.insert(format!("{}/{}", p.namespace, p.name), TestPod::Local(pod));
        }
        // Nodes in zones zone-a and zone-b; each pod's /24 (its address and
        // its peer's) is in its node's pod CIDRs, as a CNI allocating per
        // node would have it (peer classes read them from the operator's
        // peer index).
        for node in NODES {
            let zone = format!("zone-{}", node.trim_start_matches("node-"));
            standin.put(
                "v1",
                "nodes",
                json!({"metadata": {"name": node, "labels": {"kubernetes.io/hostname": node,
                                                              "topology.kubernetes.io/zone": zone}},
                       "spec": {"podCIDRs": pod_cidrs.get(node).cloned().unwrap_or_default()}}),
            );
        }
        World {
            prom,
            operators: Vec::new(),
            agents: Vec::new(),
            pods,
            backend: Backend::StandIn { server, rt },
            kubeconfig,
            nodes: NODES.iter().map(|n| n.to_string()).collect(),
            lease_secs: opts.lease_secs,
            dir,
            reader_token: String::new(),
            _serial: serial,
        }
    }

    fn on_cluster(
        kubeconfig: PathBuf,
        opts: &WorldOptions,
        dir: tempfile::TempDir,
        serial: MutexGuard<'static, ()>,
        prom: Prometheus,
    ) -> World {
        let mut cluster = Cluster::connect(kubeconfig.clone(), &repo_root());
        for (ns, labels) in &opts.namespaces {
            cluster.create_namespace(ns, labels);
        }
        cluster.create_namespace(PEERS_NS, &[]);
        let nodes = cluster.nodes.clone();
        let real = |node: &str| match NODES.iter().position(|n| *n == node) {
            Some(i) => nodes[i].clone(),
            None => node.to_string(),
        };
        let mut pods = BTreeMap::new();
        for p in &opts.pods {
            let peer_ip = cluster.create_pod(p, &real(p.node));
            pods.insert(
                format!("{}/{}", p.namespace, p.name),
                TestPod::Remote(RemotePod::new(
                    kubeconfig.clone(),
                    p.namespace,
                    p.name,
                    PEERS_NS,
                    &peer_ip,
                )),
            );
        }
        let mut agents = Vec::new();
        for (pod, node) in cluster.component_pods("netprobe-agent") {
            if nodes.contains(&node) {
                let (addr, proc) = cluster.forward(&pod, 9990, dir.path());
                agents.push(Agent {
                    node,
                    addr,
                    proc,
                    pod: Some(pod),
                });
            }
        }
        let mut operators = Vec::new();
        for (pod, _) in cluster.component_pods("netprobe-operator") {
            let (addr, proc) = cluster.forward(&pod, 8080, dir.path());
            operators.push(Operator {
                identity: pod,
                addr,
                proc,
            });
        }
        World {
            prom,
            operators,
            agents,
            pods,
            backend: Backend::Cluster(cluster),
            kubeconfig,
            nodes,
            // The Deployment in config/ keeps the operator's default.
            lease_secs: 15,
            dir,
            reader_token: String::new(),
            _serial: serial,
        }
    }

    /// A token of the ServiceAccount `monitoring/<name>`, requested with
    /// kubectl; bound to `netprobe-metrics-reader` when
    /// `reader`, as a cluster admin binds their Prometheus.
    pub fn metrics_reader(&self, name: &str, reader: bool) -> String {
        let mut yaml = format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: monitoring}}\n---\n\
             apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {name}, namespace: monitoring}}\n"
        );
        if reader {
            yaml.push_str(&format!(
                "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\n\
                 metadata: {{name: netprobe-e2e-{name}}}\n\
                 roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: netprobe-metrics-reader}}\n\
                 subjects: [{{kind: ServiceAccount, name: {name}, namespace: monitoring}}]\n"
            ));
        }
        self.apply(&yaml)
            .unwrap_or_else(|e| panic!("metrics reader {name}: {e}"));
        // What `kubectl create token` asks, in JSON (the stand-in speaks no
        // protobuf, which that command insists on).
        let request = self.dir.path().join(format!("token-request-{name}.json"));
        std::fs::write(
            &request,
            r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{}}"#,
        )
        .unwrap_or_else(|e| panic!("token request: {e}"));
        let path = format!("/api/v1/namespaces/monitoring/serviceaccounts/{name}/token");
        let out = self.kubectl_ok(&["create", "--raw", &path, "-f", &request.display().to_string()]);
        let answer: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("token answer {out}: {e}"));
        match answer["status"]["token"].as_str() {
            Some(t) => t.to_string(),
            None => panic!("no token in {out}"),
        }
    }

    /// The nodes standing for node-a and node-b, in that order.
    pub fn nodes(&self) -> Vec<String> {
        self.nodes.clone()
    }

    /// How many Node objects the cluster has (what the operator expects to
    /// report when a probe has no nodeSelector).
    pub fn node_total(&self) -> usize {
        match &self.backend {
            Backend::StandIn { .. } => NODES.len(),
            Backend::Cluster(c) => c.json(&["get", "nodes"])["items"].as_array().map_or(0, Vec::len),
        }
    }

    /// The real name of node-a or node-b.
    pub fn node(&self, logical: &str) -> String {
        NODES
            .iter()
            .position(|n| *n == logical)
            .and_then(|i| self.nodes.get(i).cloned())
            .unwrap_or_else(|| logical.to_string())
    }

    /// Something that changes when an agent restarts: its pid, or its pod's
    /// uid and restart count.
    pub fn agent_instances(&self) -> Vec<String> {
        match &self.backend {
            Backend::StandIn { .. } => self.agents.iter().map(|a| format!("{:?}", a.proc.pid())).collect(),
            Backend::Cluster(c) => self
                .agents
                .iter()
                .map(|a| {
                    let v = c.json(&["get", "pod", a.pod.as_deref().unwrap_or_default(), "-n", SYSTEM_NS]);
                    format!(
                        "{}/{}",
                        v["metadata"]["uid"], v["status"]["containerStatuses"][0]["restartCount"]
                    )
                })
                .collect(),
        }
    }

    /// Stop every operator replica (to edit what they would repair).
    pub fn stop_operators(&mut self) {
        match &self.backend {
            Backend::StandIn { .. } => {
                for o in &mut self.operators {
                    o.proc.stop();
                }
            }
            Backend::Cluster(c) => {
                c.ok(&["scale", "-n", SYSTEM_NS, "deployment/netprobe-operator", "--replicas=0"]);
                wait_for("operator pods to go", 120, || {
                    let left = c.component_pods("netprobe-operator");
                    if left.is_empty() {
                        Ok(())
                    } else {
                        Err(format!("{left:?}"))
                    }
                });
            }
        }
    }

    /// Bring the operator back after [`World::stop_operators`].
    pub fn restart_operators(&mut self) {
        match &self.backend {
            Backend::StandIn { .. } => self.start_operator("operator-again", false, 15),
            Backend::Cluster(c) => {
                c.ok(&["scale", "-n", SYSTEM_NS, "deployment/netprobe-operator", "--replicas=2"]);
                c.rolled_out("deployment/netprobe-operator");
            }
        }
    }

    /// Kill an operator replica without a chance to release its Lease.
    pub fn kill_operator(&mut self, identity: &str) {
        match &self.backend {
            Backend::StandIn { .. } => {
                if let Some(o) = self.operators.iter_mut().find(|o| o.identity == identity) {
                    o.proc.kill9();
                }
            }
            Backend::Cluster(c) => {
                c.ok(&[
                    "delete",
                    "pod",
                    identity,
                    "-n",
                    SYSTEM_NS,
                    "--grace-period=0",
                    "--force",
                ]);
            }
        }
    }

    /// Stop an operator replica the way the kubelet stops a pod (SIGTERM,
    /// then SIGKILL after the grace period); returns how long it took to exit.
    pub fn stop_operator(&mut self, identity: &str) -> std::time::Duration {
        let started = std::time::Instant::now();
        match &self.backend {
            Backend::StandIn { .. } => {
                if let Some(o) = self.operators.iter_mut().find(|o| o.identity == identity) {
                    o.proc.stop();
                }
            }
            Backend::Cluster(c) => {
                c.ok(&["delete", "pod", identity, "-n", SYSTEM_NS, "--wait=true"]);
            }
        }
        started.elapsed()
    }

    /// True when the API server can be stopped by the test (stand-in only).
    pub fn can_stop_api(&self) -> bool {
        matches!(self.backend, Backend::StandIn { .. })
    }

    /// SIGKILL a node's agent (stand-in only: on a cluster the DaemonSet
    /// would restart it at once). False when this backend cannot.
    pub fn kill_agent(&mut self, node: &str) -> bool {
        if !matches!(self.backend, Backend::StandIn { .. }) {
            return false;
        }
        if let Some(i) = self.agents.iter().position(|a| a.node == node) {
            let mut a = self.agents.remove(i);
            a.proc.kill9();
        }
        true
    }

    /// Stop a node's agent as the kubelet does (SIGTERM); stand-in only.
    pub fn stop_agent(&mut self, node: &str) -> bool {
        if !matches!(self.backend, Backend::StandIn { .. }) {
            return false;
        }
        if let Some(i) = self.agents.iter().position(|a| a.node == node) {
            let mut a = self.agents.remove(i);
            a.proc.stop();
        }
        true
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
        proc.wait_serving(addr, "/healthz", true, 30);
        self.agents.push(Agent {
            node: node.to_string(),
            addr,
            proc,
            pod: None,
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
        proc.wait_serving(addr, "/healthz", true, 30);
        self.operators.push(Operator {
            identity: identity.to_string(),
            addr,
            proc,
        });
    }

    /// Whether the API is the in-repo stand-in (the test may shape Nodes).
    pub fn is_standin(&self) -> bool {
        matches!(self.backend, Backend::StandIn { .. })
    }

    /// Run kubectl against this world's API. On a real cluster, manifests
    /// applied with `-f` (other than the CRDs) are deleted when the world ends.
    pub fn kubectl(&self, args: &[&str]) -> Result<String, String> {
        if let Backend::Cluster(c) = &self.backend
            && args.first() == Some(&"apply")
            && let Some(i) = args.iter().position(|a| *a == "-f")
            && let Some(path) = args.get(i + 1).filter(|p| !p.ends_with("crds"))
        {
            c.applied
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(path.to_string());
        }
        crate::cluster::kubectl(&self.kubeconfig, args, None)
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

    pub fn pod(&self, namespace: &str, name: &str) -> &TestPod {
        self.pods
            .get(&format!("{namespace}/{name}"))
            .unwrap_or_else(|| panic!("no pod {namespace}/{name} in this world"))
    }

    pub fn pod_mut(&mut self, namespace: &str, name: &str) -> &mut TestPod {
        self.pods
            .get_mut(&format!("{namespace}/{name}"))
            .unwrap_or_else(|| panic!("no pod {namespace}/{name} in this world"))
    }

    /// The agent of a node (by its real name, or as node-a / node-b).
    pub fn agent(&self, node: &str) -> &Agent {
        let real = self.node(node);
        self.agents
            .iter()
            .find(|a| a.node == real)
            .unwrap_or_else(|| panic!("no agent {node}"))
    }

    /// The agent's own exposition (what Prometheus scrapes).
    pub fn agent_metrics(&self, node: &str) -> String {
        match https_get(self.agent(node).addr, "/metrics", Some(&self.reader_token)) {
            Ok((200, body)) => body,
            other => panic!("agent {node} /metrics: {other:?}"),
        }
    }

    /// Stop the API server (connections refused, open watches cut) until
    /// [`World::resume_api`]. Stand-in only (see [`World::can_stop_api`]).
    pub fn stop_api(&mut self) {
        if let Backend::StandIn { server, .. } = &mut self.backend {
            server.stop();
        }
    }

    pub fn resume_api(&mut self) {
        if let Backend::StandIn { server, rt, .. } = &mut self.backend {
            rt.block_on(server.resume())
                .unwrap_or_else(|e| panic!("restart the stand-in listener: {e}"));
        }
    }

    /// How many programs the agent of `node` has attached: from the kernel
    /// locally, from the agent's own gauge on a real cluster.
    pub fn program_count(&self, node: &str) -> usize {
        match &self.backend {
            Backend::StandIn { .. } => self.programs_of(node).map_or(0, |p| p.len()),
            Backend::Cluster(_) => self
                .agent_metrics(node)
                .lines()
                .find_map(|l| l.strip_prefix("netprobe_agent_programs_loaded "))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .map_or(0, |v| v as usize),
        }
    }

    /// The np_* programs an agent holds, (name, id) sorted, read from the
    /// kernel; None on a real cluster (the kernel is another machine's).
    pub fn programs_of(&self, node: &str) -> Option<Vec<(String, u64)>> {
        if !matches!(self.backend, Backend::StandIn { .. }) {
            return None;
        }
        let Some(pid) = self.agent(node).proc.pid() else {
            return Some(Vec::new());
        };
        let held = netprobe_pods::programs_held_by(pid);
        let mut out: Vec<(String, u64)> = netprobe_pods::np_programs()
            .into_iter()
            .filter(|(id, _)| held.contains(id))
            .map(|(id, name)| (name, id))
            .collect();
        out.sort();
        Some(out)
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
        self.pods.clear();
    }
}
