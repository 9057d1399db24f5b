//! The agent's footprint: the real binary, standalone, over 250 cgroups.

use std::time::{Duration, Instant};

use netprobe_api::ProbeType;

use crate::measure::median;
use crate::support::sh;

fn proc_stat(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (rss_kb, ticks)
}

/// One scrape of /metrics: how long it took and the body's size.
fn scrape(addr: &str) -> (Duration, usize) {
    let started = Instant::now();
    let addr = addr.parse().expect("agent address");
    let body = netprobe_testutil::http_get(addr, "/metrics")
        .map(|(_, b)| b.len())
        .unwrap_or(0);
    (started.elapsed(), body)
}

/// Section 4: the standalone agent's memory, CPU and scrape time with
/// 250 selected cgroups and every probe type.
pub fn footprint() {
    println!("\n== 4. agent footprint: 250 selected cgroups x every probe type (standalone binary) ==");
    let root = netprobe_agent::cgroups::cgroup2_mount(std::path::Path::new("/proc/self/mountinfo")).expect("cgroup2");
    let base = root.join(format!("npbench{}", std::process::id()));
    std::fs::create_dir_all(&base).expect("bench cgroup root");
    for i in 0..250 {
        let _ = std::fs::create_dir(base.join(format!("pod{i:03}")));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("all.yaml"),
        netprobe_pods::standalone_manifest(
            "bench",
            &[
                ProbeType::TcpRetransmits,
                ProbeType::TcpResets,
                ProbeType::TcpConnectLatency,
                ProbeType::TcpRtt,
                ProbeType::PacketDrops,
            ],
            "  metrics: {maxSeriesPerNode: 100000}\n",
        ),
    )
    .expect("manifest");
    let addr = "127.0.0.1:19991";
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_netprobe-agent"))
        .args([
            "--standalone",
            &dir.path().display().to_string(),
            "--metrics-addr",
            addr,
            "--cgroup-root",
            &base.display().to_string(),
            "--standalone-depth",
            "1",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("agent");
    std::thread::sleep(Duration::from_secs(3));
    let hz = 100.0;
    let (_, t0) = proc_stat(child.id());
    std::thread::sleep(Duration::from_secs(10));
    let (rss_idle, t1) = proc_stat(child.id());
    println!(
        "idle: RSS {:.1} MiB, CPU {:.2}% of a core over 10 s",
        rss_idle as f64 / 1024.0,
        (t1 - t0) as f64 / hz / 10.0 * 100.0
    );
    // Load: one process visits every cgroup and makes events there.
    let load = format!(
        "import socket, os\nsrv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen(4096); port = srv.getsockname()[1]\nfor i in range(250):\n    open('{}/pod%03d/cgroup.procs' % i, 'w').write(str(os.getpid()))\n    for p in (port, 1):\n        s = socket.socket()\n        try:\n            s.connect(('127.0.0.1', p))\n        except OSError:\n            pass\n        s.close()\n    c, _ = srv.accept(); c.close()\nopen('{}/cgroup.procs', 'w').write(str(os.getpid()))\n",
        base.display(),
        root.display()
    );
    let started = Instant::now();
    sh(&format!("python3 -c \"{load}\""));
    let (_, t2) = proc_stat(child.id());
    let (s_time, s_size) = scrape(addr);
    let (rss_load, t3) = proc_stat(child.id());
    let wall = started.elapsed().as_secs_f64();
    println!(
        "under load ({wall:.1} s of events in 250 cgroups): RSS {:.1} MiB, CPU {:.2}% of a core",
        rss_load as f64 / 1024.0,
        (t3 - t1) as f64 / hz / wall * 100.0
    );
    let _ = t2;
    let mut times = Vec::new();
    for _ in 0..5 {
        times.push(scrape(addr).0.as_secs_f64() * 1000.0);
    }
    println!(
        "scrape: first {:.1} ms, median {:.1} ms, {} bytes",
        s_time.as_secs_f64() * 1000.0,
        median(times),
        s_size
    );
    let _ = child.kill();
    let _ = child.wait();
    for i in 0..250 {
        let _ = std::fs::remove_dir(base.join(format!("pod{i:03}")));
    }
    let _ = std::fs::remove_dir(&base);
}
