//! A test pod as the scenarios use it: run a script in it, read its
//! kernel counters, serve from its peer and make the path to the peer
//! lossy. Locally it is a kubelet-shaped netns + cgroups ([`Pod`]); on a
//! real cluster it is a Pod plus a peer Pod on the same node, driven with
//! `kubectl exec`.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use netprobe_pods::{Pod, bulk_client, bulk_client_to, parse_nstat, read_ready};

pub enum TestPod {
    Local(Pod),
    Remote(RemotePod),
}

/// A pod of a real cluster and its peer (in the peers namespace, same node).
pub struct RemotePod {
    pub kubeconfig: PathBuf,
    pub namespace: String,
    pub name: String,
    pub peer_namespace: String,
    pub peer: String,
    pub peer_ip4: String,
    children: Vec<Child>,
}

impl RemotePod {
    pub fn new(kubeconfig: PathBuf, namespace: &str, name: &str, peer_namespace: &str, peer_ip4: &str) -> Self {
        Self {
            kubeconfig,
            namespace: namespace.into(),
            name: name.into(),
            peer_namespace: peer_namespace.into(),
            peer: format!("{name}-peer"),
            peer_ip4: peer_ip4.into(),
            children: Vec::new(),
        }
    }

    fn exec(&self, namespace: &str, pod: &str, argv: &[&str]) -> Command {
        let mut c = Command::new("kubectl");
        c.env("KUBECONFIG", &self.kubeconfig)
            .args(["exec", "-i", "-n", namespace, pod, "--"])
            .args(argv);
        c
    }

    fn output(mut c: Command, stdin: Option<&str>) -> String {
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("kubectl exec: {e}"));
        if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
            let _ = input.write_all(text.as_bytes());
        }
        let out = child.wait_with_output().unwrap_or_else(|e| panic!("kubectl exec: {e}"));
        assert!(
            out.status.success(),
            "{c:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for RemotePod {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl TestPod {
    /// Run python in the pod to completion; its stdout.
    pub fn run(&self, python: &str) -> String {
        match self {
            TestPod::Local(p) => p.run(python),
            TestPod::Remote(r) => RemotePod::output(r.exec(&r.namespace, &r.name, &["python3", "-c", python]), None),
        }
    }

    /// A kernel counter of the pod's network namespace.
    pub fn nstat(&self, counter: &str) -> u64 {
        match self {
            TestPod::Local(p) => p.nstat(counter),
            TestPod::Remote(r) => parse_nstat(
                &RemotePod::output(r.exec(&r.namespace, &r.name, &["nstat", "-asz", counter]), None),
                counter,
            ),
        }
    }

    /// Start a server script in the peer; returns once it prints "ready".
    pub fn serve_peer(&mut self, python: &str) {
        match self {
            TestPod::Local(p) => p.peer_spawn(python),
            TestPod::Remote(r) => {
                let mut child = r
                    .exec(&r.peer_namespace, &r.peer, &["python3", "-u", "-c", python])
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap_or_else(|e| panic!("kubectl exec: {e}"));
                read_ready(&mut child);
                r.children.push(child);
            }
        }
    }

    /// Load an nft ruleset in the peer's network namespace.
    pub fn nft_peer(&self, ruleset: &str) {
        match self {
            TestPod::Local(p) => Pod::nft(&p.peer_ns, ruleset),
            TestPod::Remote(r) => {
                RemotePod::output(r.exec(&r.peer_namespace, &r.peer, &["nft", "-f", "-"]), Some(ruleset));
            }
        }
    }

    pub fn peer_ip4(&self) -> &str {
        match self {
            TestPod::Local(p) => &p.peer_ip4,
            TestPod::Remote(r) => &r.peer_ip4,
        }
    }

    /// A bulk transfer script to the peer (IPv6 too where the pod has it).
    pub fn bulk_client(&self) -> String {
        match self {
            TestPod::Local(p) => bulk_client(p),
            TestPod::Remote(r) => bulk_client_to(&r.peer_ip4, None),
        }
    }
}
