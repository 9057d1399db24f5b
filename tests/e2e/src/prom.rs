//! A real Prometheus (Debian's `prometheus` package) scraping the agents
//! and operators every second, and its HTTP query API.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::procs::{Proc, free_port};
use crate::{http_get, urlencode};

pub struct Prometheus {
    pub addr: SocketAddr,
    pub proc: Proc,
}

/// One series of an instant query: its labels and value.
pub type Sample = (BTreeMap<String, String>, f64);

impl Prometheus {
    /// Start it with one scrape job per `(job, targets)`, scraping over
    /// HTTPS with the token in `token_file`, as netprobe's ServiceMonitors
    /// do (the components' certificates are self-signed).
    pub fn start(dir: &Path, jobs: &[(&str, Vec<SocketAddr>)], token_file: &Path) -> Prometheus {
        let mut cfg = String::from("global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n");
        for (job, targets) in jobs {
            let t: Vec<String> = targets.iter().map(|a| format!("'{a}'")).collect();
            cfg.push_str(&format!(
                "- job_name: {job}\n  scheme: https\n  tls_config: {{insecure_skip_verify: true}}\n  \
                 authorization: {{credentials_file: '{}'}}\n  static_configs:\n  - targets: [{}]\n",
                token_file.display(),
                t.join(", ")
            ));
        }
        let cfg_path = dir.join("prometheus.yml");
        std::fs::write(&cfg_path, cfg).unwrap_or_else(|e| panic!("write prometheus.yml: {e}"));
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port())
            .parse()
            .unwrap_or_else(|e| panic!("addr: {e}"));
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", cfg_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--query.lookback-delta=5s");
        let mut proc = Proc::spawn("prometheus", cmd, dir);
        proc.wait_serving(addr, "/-/ready", false, 60);
        Prometheus { addr, proc }
    }

    /// An instant query; panics on a query error (a bug in the test).
    pub fn query(&self, q: &str) -> Vec<Sample> {
        let (code, body) = http_get(self.addr, &format!("/api/v1/query?query={}", urlencode(q)))
            .unwrap_or_else(|e| panic!("query {q}: {e}"));
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("query {q}: {e}: {body}"));
        assert_eq!(code, 200, "query {q}: {body}");
        v["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let labels = s["metric"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect();
                let value = s["value"][1].as_str().and_then(|x| x.parse().ok()).unwrap_or(f64::NAN);
                (labels, value)
            })
            .collect()
    }

    /// Value of the one series of `q` whose labels include `want`.
    pub fn value(&self, q: &str, want: &[(&str, &str)]) -> Option<f64> {
        self.query(q)
            .into_iter()
            .find(|(l, _)| want.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
            .map(|(_, v)| v)
    }

    /// Whether every target has been scraped successfully at least once.
    pub fn all_up(&self) -> Result<(), String> {
        let up = self.query("up");
        if !up.is_empty() && up.iter().all(|(_, v)| *v == 1.0) {
            Ok(())
        } else {
            Err(format!("{up:?}"))
        }
    }
}
