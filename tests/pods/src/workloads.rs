//! What runs in the pods: the Python workloads the tests start (clients,
//! servers, pending and refused connects), as scripts, and the handles
//! that hold them while a test reads the counters.

use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::{Pod, sh};

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
