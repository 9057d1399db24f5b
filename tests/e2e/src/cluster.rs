//! The real-cluster backend, used when NETPROBE_E2E_KUBECONFIG names a
//! kubeconfig: netprobe is deployed from `config/default` (unless
//! NETPROBE_E2E_DEPLOY=0 says it is installed already, e.g. by Helm), the
//! first two Ready nodes play node-a and node-b, test pods run the image
//! NETPROBE_E2E_IMAGE (python3, iproute2, nftables; see tests/e2e/Dockerfile),
//! and agents and operators are reached through `kubectl port-forward`.
//! Everything created is deleted on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::procs::{Proc, free_port};
use crate::wait_for;
use crate::world::{PodSpec, SYSTEM_NS};

/// Namespace of the peer pods (never selected by the scenarios' probes).
pub const PEERS_NS: &str = "netprobe-e2e-peers";

pub struct Cluster {
    pub kubeconfig: PathBuf,
    repo: PathBuf,
    /// Manifests applied by the tests (deleted on drop).
    pub applied: std::sync::Mutex<Vec<String>>,
    pub image: String,
    pub deployed: bool,
    /// The cluster's nodes standing for node-a and node-b.
    pub nodes: Vec<String>,
    /// Namespaces this run created (deleted on drop).
    pub namespaces: Vec<String>,
}

pub fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    use std::io::Write;
    let mut child = Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("kubectl: {e}"))?;
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        let _ = input.write_all(text.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| format!("kubectl: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)))
    }
}

impl Cluster {
    pub fn connect(kubeconfig: PathBuf, repo: &Path) -> Cluster {
        let image = std::env::var("NETPROBE_E2E_IMAGE").unwrap_or_else(|_| {
            panic!("NETPROBE_E2E_IMAGE must name a test image with python3, iproute2 and nftables")
        });
        let deployed = std::env::var("NETPROBE_E2E_DEPLOY").map_or(true, |v| v != "0");
        let mut c = Cluster {
            kubeconfig,
            repo: repo.to_path_buf(),
            applied: std::sync::Mutex::new(Vec::new()),
            image,
            deployed,
            nodes: Vec::new(),
            namespaces: Vec::new(),
        };
        if deployed {
            c.ok(&["apply", "-k", &repo.join("config/default").display().to_string()]);
        }
        c.rolled_out("daemonset/netprobe-agent");
        c.rolled_out("deployment/netprobe-operator");
        let nodes: Value = c.json(&["get", "nodes"]);
        c.nodes = nodes["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| {
                n["spec"]["unschedulable"] != true
                    && n["status"]["conditions"]
                        .as_array()
                        .is_some_and(|cs| cs.iter().any(|x| x["type"] == "Ready" && x["status"] == "True"))
            })
            .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
            .take(2)
            .collect();
        assert_eq!(c.nodes.len(), 2, "the system tests need two Ready, schedulable nodes");
        c
    }

    /// Wait for a workload of netprobe's namespace to be fully rolled out.
    pub fn rolled_out(&self, workload: &str) {
        self.ok(&["rollout", "status", "-n", SYSTEM_NS, workload, "--timeout=180s"]);
    }

    pub fn ok(&self, args: &[&str]) -> String {
        kubectl(&self.kubeconfig, args, None).unwrap_or_else(|e| panic!("kubectl {}: {e}", args.join(" ")))
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend_from_slice(&["-o", "json"]);
        let text = self.ok(&a);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    pub fn apply_json(&self, obj: &Value) {
        kubectl(&self.kubeconfig, &["apply", "-f", "-"], Some(&obj.to_string()))
            .unwrap_or_else(|e| panic!("apply {obj}: {e}"));
    }

    pub fn create_namespace(&mut self, name: &str, labels: &[(&str, &str)]) {
        let labels: serde_json::Map<String, Value> = labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        self.apply_json(
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}),
        );
        self.namespaces.push(name.to_string());
    }

    /// Create the pod and its peer on `node`; returns the peer's IPv4.
    pub fn create_pod(&self, p: &PodSpec, node: &str) -> String {
        let labels: serde_json::Map<String, Value> = p.labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        let container = |caps: Value| {
            json!([{"name": "app", "image": self.image, "command": ["sleep", "infinity"],
                    "securityContext": {"capabilities": {"add": caps}}}])
        };
        self.apply_json(&json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": p.name, "namespace": p.namespace, "labels": labels},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0, "containers": container(json!([]))}}));
        let peer = format!("{}-peer", p.name);
        self.apply_json(&json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": peer, "namespace": PEERS_NS, "labels": {"netprobe-e2e/peer-of": p.name}},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0, "containers": container(json!(["NET_ADMIN"]))}}));
        for (ns, name) in [(p.namespace, p.name), (PEERS_NS, peer.as_str())] {
            self.ok(&[
                "wait",
                "--for=condition=Ready",
                &format!("pod/{name}"),
                "-n",
                ns,
                "--timeout=180s",
            ]);
        }
        let v = self.json(&["get", "pod", &peer, "-n", PEERS_NS]);
        v["status"]["podIP"].as_str().unwrap_or_default().to_string()
    }

    /// Pods of a component, as (pod name, node name).
    pub fn component_pods(&self, name: &str) -> Vec<(String, String)> {
        let v = self.json(&[
            "get",
            "pods",
            "-n",
            SYSTEM_NS,
            "-l",
            &format!("app.kubernetes.io/name={name}"),
        ]);
        v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null() && p["status"]["phase"] == "Running")
            .map(|p| {
                (
                    p["metadata"]["name"].as_str().unwrap_or_default().to_string(),
                    p["spec"]["nodeName"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// `kubectl port-forward` to a pod's port; the local address.
    pub fn forward(&self, pod: &str, port: u16, log_dir: &Path) -> (std::net::SocketAddr, Proc) {
        let local = free_port();
        let mut cmd = Command::new("kubectl");
        cmd.env("KUBECONFIG", &self.kubeconfig).args([
            "port-forward",
            "-n",
            SYSTEM_NS,
            &format!("pod/{pod}"),
            &format!("{local}:{port}"),
        ]);
        let proc = Proc::spawn(&format!("forward-{pod}"), cmd, log_dir);
        let addr: std::net::SocketAddr = format!("127.0.0.1:{local}").parse().unwrap_or_else(|e| panic!("{e}"));
        wait_for(&format!("port-forward to {pod}"), 30, || {
            std::net::TcpStream::connect(addr)
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        (addr, proc)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Probes first (their finalizers need the operator), then the namespaces.
        let applied = std::mem::take(&mut *self.applied.lock().unwrap_or_else(|p| p.into_inner()));
        for path in applied.iter().rev() {
            let _ = kubectl(
                &self.kubeconfig,
                &["delete", "-f", path, "--ignore-not-found", "--timeout=60s"],
                None,
            );
        }
        for ns in self.namespaces.iter().rev() {
            let _ = kubectl(
                &self.kubeconfig,
                &["delete", "networkprobes", "--all", "-n", ns, "--timeout=60s"],
                None,
            );
            let _ = kubectl(
                &self.kubeconfig,
                &["delete", "namespace", ns, "--wait=true", "--timeout=120s"],
                None,
            );
        }
        if self.deployed {
            let _ = kubectl(
                &self.kubeconfig,
                &[
                    "delete",
                    "-k",
                    &self.repo.join("config/default").display().to_string(),
                    "--ignore-not-found",
                    "--timeout=120s",
                ],
                None,
            );
        }
    }
}
