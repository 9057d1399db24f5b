//! The Dns probe's oracle: a DNS server in the pod's peer namespace that
//! answers by a script in the query name (response code, delay, or no
//! answer), and a client that sends a known mix of queries over IPv4 and
//! IPv6 and tallies what it got. netprobe must count what the client saw.

/// How the server treats a query, by the first label of its name.
pub const SCRIPT: [(&str, usize); 7] = [
    // (label, queries per family)
    ("ok", 5),   // NOERROR at once
    ("nx", 3),   // NXDOMAIN
    ("sf", 2),   // SERVFAIL
    ("rf", 1),   // REFUSED
    ("slow", 2), // NOERROR after 150 ms
    ("drop", 2), // never answered
    ("late", 1), // NOERROR after 1.3 s (past a 1 s timeout)
];

/// The server on UDP `port`, IPv4 and IPv6; prints "ready".
pub fn dns_server(port: u16) -> String {
    format!(
        r#"
import socket, struct, threading, time
CODES = {{"ok": 0, "nx": 3, "sf": 2, "rf": 5, "slow": 0, "late": 0}}
DELAY = {{"slow": 0.15, "late": 1.3}}
def answer(s, data, peer):
    qid, = struct.unpack("!H", data[:2])
    label = data[13:13 + data[12]].decode()
    if label not in CODES:
        return
    time.sleep(DELAY.get(label, 0))
    s.sendto(struct.pack("!HHHHHH", qid, 0x8180 | CODES[label], 1, 0, 0, 0) + data[12:], peer)
def serve(fam, addr):
    s = socket.socket(fam, socket.SOCK_DGRAM)
    if fam == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((addr, {port}))
    while True:
        data, peer = s.recvfrom(4096)
        threading.Thread(target=answer, args=(s, data, peer), daemon=True).start()
for fam, addr in [(socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")]:
    threading.Thread(target=serve, args=(fam, addr), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"#
    )
}

/// The client: every query of [`SCRIPT`] to `v4` (and `v6` when given) on
/// `port`, one socket per family, each awaited up to 2 s; prints one line
/// per outcome ("rcode N SECONDS" or "timeout") and finally "done".
pub fn dns_client(v4: &str, v6: Option<&str>, port: u16) -> String {
    let script: Vec<String> = SCRIPT.iter().map(|(l, n)| format!("(\"{l}\", {n})")).collect();
    let mut servers = format!("(socket.AF_INET, \"{v4}\")");
    if let Some(v6) = v6 {
        servers.push_str(&format!(", (socket.AF_INET6, \"{v6}\")"));
    }
    format!(
        r#"
import socket, struct, random, time
SCRIPT = [{script}]
for fam, addr in [{servers}]:
    s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(2.0)
    for label, n in SCRIPT:
        for i in range(n):
            qid = random.randrange(65536)
            name = b"".join(bytes([len(p)]) + p for p in [label.encode(), b"q%d" % i, b"test"]) + b"\0"
            t0 = time.monotonic()
            s.sendto(struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + name + struct.pack("!HH", 1, 1), (addr, {port}))
            try:
                while True:
                    data = s.recv(4096)
                    if struct.unpack("!H", data[:2])[0] == qid:
                        print("rcode", data[3] & 0xF, time.monotonic() - t0)
                        break
            except socket.timeout:
                print("timeout")
    s.close()
print("done")
"#,
        script = script.join(", ")
    )
}
