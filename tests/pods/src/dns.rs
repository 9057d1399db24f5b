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

/// Query types the client cycles through, query by query (their `qtype`
/// labels: A, AAAA, SRV, PTR, and MX as `other`).
pub const QTYPES: [(u16, &str); 5] = [(1, "A"), (28, "AAAA"), (33, "SRV"), (12, "PTR"), (15, "other")];

/// The `qtype` label of a query type number, as netprobe names it.
pub fn qtype_label(n: u16) -> &'static str {
    QTYPES.iter().find(|(q, _)| *q == n).map_or("other", |(_, l)| l)
}

/// The server on `port`, UDP and TCP (length-prefixed messages, answered on
/// the connection in any order), IPv4 and IPv6; prints "ready".
pub fn dns_server(port: u16) -> String {
    format!(
        r#"
import socket, struct, threading, time
CODES = {{"ok": 0, "nx": 3, "sf": 2, "rf": 5, "slow": 0, "late": 0}}
DELAY = {{"slow": 0.15, "late": 1.3}}
def reply(data):
    qid, = struct.unpack("!H", data[:2])
    label = data[13:13 + data[12]].decode()
    if label not in CODES:
        return None, 0
    return struct.pack("!HHHHHH", qid, 0x8180 | CODES[label], 1, 0, 0, 0) + data[12:], DELAY.get(label, 0)
def answer_udp(s, data, peer):
    out, delay = reply(data)
    if out is not None:
        time.sleep(delay)
        s.sendto(out, peer)
def serve_udp(fam, addr):
    s = socket.socket(fam, socket.SOCK_DGRAM)
    if fam == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((addr, {port}))
    while True:
        data, peer = s.recvfrom(4096)
        threading.Thread(target=answer_udp, args=(s, data, peer), daemon=True).start()
def answer_tcp(c, lock, data):
    out, delay = reply(data)
    if out is not None:
        time.sleep(delay)
        with lock:
            c.sendall(struct.pack("!H", len(out)) + out)
def recv_exact(c, n):
    buf = b""
    while len(buf) < n:
        more = c.recv(n - len(buf))
        if not more:
            return None
        buf += more
    return buf
def conn_tcp(c):
    lock = threading.Lock()
    while True:
        n = recv_exact(c, 2)
        data = n and recv_exact(c, struct.unpack("!H", n)[0])
        if not data:
            return
        threading.Thread(target=answer_tcp, args=(c, lock, data), daemon=True).start()
def serve_tcp(fam, addr):
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if fam == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((addr, {port}))
    s.listen(16)
    while True:
        c, _ = s.accept()
        threading.Thread(target=conn_tcp, args=(c,), daemon=True).start()
for fam, addr in [(socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")]:
    threading.Thread(target=serve_udp, args=(fam, addr), daemon=True).start()
    threading.Thread(target=serve_tcp, args=(fam, addr), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"#
    )
}

/// The client: every query of [`SCRIPT`] to `v4` (and `v6` when given) on
/// `port`, over UDP or over one TCP connection per family, query types
/// cycling through [`QTYPES`], each awaited up to 2 s; prints one line per
/// outcome ("rcode N SECONDS QTYPE" or "timeout QTYPE") and finally "done".
/// Over TCP the first two queries go out in one write, as resolvers send A
/// and AAAA together.
pub fn dns_client(v4: &str, v6: Option<&str>, port: u16, tcp: bool) -> String {
    let script: Vec<String> = SCRIPT.iter().map(|(l, n)| format!("(\"{l}\", {n})")).collect();
    let qtypes: Vec<String> = QTYPES.iter().map(|(q, _)| q.to_string()).collect();
    let mut servers = format!("(socket.AF_INET, \"{v4}\")");
    if let Some(v6) = v6 {
        servers.push_str(&format!(", (socket.AF_INET6, \"{v6}\")"));
    }
    format!(
        r#"
import socket, struct, random, time
SCRIPT = [{script}]
QTYPES = [{qtypes}]
TCP = {tcp}
def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        more = s.recv(n - len(buf))
        if not more:
            raise socket.timeout()
        buf += more
    return buf
def receive(s):
    if TCP:
        return recv_exact(s, struct.unpack("!H", recv_exact(s, 2))[0])
    return s.recv(4096)
def query(label, i, qtype):
    qid = random.randrange(65536)
    name = b"".join(bytes([len(p)]) + p for p in [label.encode(), b"q%d" % i, b"test"]) + b"\0"
    msg = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + name + struct.pack("!HH", qtype, 1)
    return qid, (struct.pack("!H", len(msg)) + msg) if TCP else msg
def await_all(s, pending):
    deadline = time.monotonic() + 2.0
    while pending:
        s.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            data = receive(s)
        except socket.timeout:
            break
        qid = struct.unpack("!H", data[:2])[0]
        if qid in pending:
            t0, qtype = pending.pop(qid)
            print("rcode", data[3] & 0xF, time.monotonic() - t0, qtype)
    for t0, qtype in pending.values():
        print("timeout", qtype)
n = 0
for fam, addr in [{servers}]:
    s = socket.socket(fam, socket.SOCK_STREAM if TCP else socket.SOCK_DGRAM)
    if TCP:
        s.connect((addr, {port}))
    batches = []
    for label, count in SCRIPT:
        for i in range(count):
            batches.append([(label, i)])
    if TCP:
        batches[0:2] = [batches[0] + batches[1]]
    for batch in batches:
        pending, wire = {{}}, b""
        for label, i in batch:
            qtype = QTYPES[n % len(QTYPES)]
            n += 1
            qid, msg = query(label, i, qtype)
            pending[qid] = (time.monotonic(), qtype)
            wire += msg
        if TCP:
            s.sendall(wire)
        else:
            s.sendto(wire, (addr, {port}))
        await_all(s, pending)
    s.close()
print("done")
"#,
        script = script.join(", "),
        qtypes = qtypes.join(", "),
        tcp = if tcp { "True" } else { "False" },
    )
}
