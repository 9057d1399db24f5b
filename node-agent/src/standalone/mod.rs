//! Standalone mode: probes from manifests on disk, no Kubernetes. Pod
//! selectors do not apply; every cgroup down to a depth is a target and
//! series carry a `cgroup` label (its path under the cgroup2 root).

pub mod run;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use netprobe_api::{ClusterNetworkProbe, NetworkProbe, PlanSource, ProbeId, ProbePlan, SourceKind};
use tracing::warn;

use crate::cgroups;
use crate::pipeline::desired::{Desired, Owner, PlanTargets, Target};

#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    #[error("reading {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// A manifest that could not become a plan, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub origin: String,
    pub reason: String,
}

/// Every manifest path must exist when the agent starts: a typo would
/// otherwise run zero probes without a word.
pub fn check_paths(paths: &[PathBuf]) -> Result<(), StandaloneError> {
    for p in paths {
        if let Err(source) = std::fs::metadata(p) {
            return Err(StandaloneError::Io {
                path: p.display().to_string(),
                source,
            });
        }
    }
    Ok(())
}

/// YAML files under each path (a file, or a directory read non-recursively).
fn manifest_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, StandaloneError> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let rd = std::fs::read_dir(p).map_err(|source| StandaloneError::Io {
                path: p.display().to_string(),
                source,
            })?;
            let mut files: Vec<PathBuf> = rd
                .flatten()
                .map(|e| e.path())
                .filter(|f| f.extension().is_some_and(|e| e == "yaml" || e == "yml" || e == "json"))
                .collect();
            files.sort();
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Plans from manifests: every valid, unsuspended probe; the rest rejected
/// with the field named. One bad document never stops the others.
pub fn load_plans(paths: &[PathBuf]) -> Result<(Vec<ProbePlan>, Vec<Rejected>), StandaloneError> {
    let mut plans = Vec::new();
    let mut rejected = Vec::new();
    for file in manifest_files(paths)? {
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                rejected.push(Rejected {
                    origin: file.display().to_string(),
                    reason: format!("cannot read: {e}"),
                });
                continue;
            }
        };
        for (i, doc) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            let origin = format!("{}#{}", file.display(), i + 1);
            let value: serde_json::Value = match serde::Deserialize::deserialize(doc) {
                Ok(v) => v,
                Err(e) => {
                    // A syntax error ends the stream: the parser cannot
                    // resynchronize, and would repeat the error forever.
                    // The documents before it are kept.
                    rejected.push(Rejected {
                        origin,
                        reason: format!("not YAML: {e}"),
                    });
                    break;
                }
            };
            if value.is_null() {
                continue;
            }
            match plan_of(&value) {
                Ok(Some(p)) => plans.push(p),
                Ok(None) => {}
                Err(reason) => rejected.push(Rejected { origin, reason }),
            }
        }
    }
    Ok((plans, rejected))
}

fn plan_of(value: &serde_json::Value) -> Result<Option<ProbePlan>, String> {
    let kind = value["kind"].as_str().unwrap_or_default();
    let Some(source_kind) = SourceKind::from_kind(kind) else {
        return Err(format!("kind {kind:?} is not NetworkProbe or ClusterNetworkProbe"));
    };
    let (spec, ns_sel, namespace, name) = match source_kind {
        SourceKind::Namespaced => {
            let p: NetworkProbe = serde_json::from_value(value.clone()).map_err(|e| format!("NetworkProbe: {e}"))?;
            let ns = p.metadata.namespace.clone().unwrap_or_else(|| "default".into());
            (p.spec, None, Some(ns), p.metadata.name.unwrap_or_default())
        }
        SourceKind::Cluster => {
            let p: ClusterNetworkProbe =
                serde_json::from_value(value.clone()).map_err(|e| format!("ClusterNetworkProbe: {e}"))?;
            (
                p.spec.probe,
                p.spec.namespace_selector,
                None,
                p.metadata.name.unwrap_or_default(),
            )
        }
    };
    if spec.suspend == Some(true) {
        return Ok(None);
    }
    let source = PlanSource::new(ProbeId::new(source_kind, namespace.as_deref(), &name), "standalone", 1);
    ProbePlan::build(source, &spec, ns_sel.as_ref())
        .map(Some)
        .map_err(|errs| errs.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
}

/// The root cgroup (`/`, catching everything not in a deeper target) and
/// every cgroup under it to `depth`, as targets.
pub fn cgroup_targets(root: &Path, depth: usize) -> BTreeMap<String, Target> {
    let mut out = BTreeMap::new();
    if let Ok(id) = cgroups::cgroup_id(root) {
        out.insert(
            "/".to_string(),
            Target {
                key: "/".into(),
                owner: Owner::Cgroup { path: "/".into() },
                cgroup_id: id,
                netns: None,
            },
        );
    }
    for rel in cgroups::cgroups_to_depth(root, depth) {
        let Ok(id) = cgroups::cgroup_id(&root.join(&rel)) else {
            continue;
        };
        let path = rel.display().to_string();
        out.insert(
            path.clone(),
            Target {
                key: path.clone(),
                owner: Owner::Cgroup { path },
                cgroup_id: id,
                netns: None,
            },
        );
    }
    out
}

/// Give each target the network namespace it owns, so packets without a
/// socket (resets to closed ports, drops before socket lookup) count for the
/// cgroup whose processes live in that namespace, as they count for the pod
/// in cluster mode. A namespace belongs to the deepest target that contains
/// every process in it: a namespace shared by several services (the host's)
/// goes to their common ancestor, `/` at the latest. The kernel map holds one
/// namespace per target; a target owning several keeps the one with the most
/// processes, and the others are logged.
pub fn assign_netns(targets: &mut BTreeMap<String, Target>, proc_root: &Path) {
    let mut members: BTreeMap<u32, (Vec<String>, usize)> = BTreeMap::new();
    let Ok(procs) = std::fs::read_dir(proc_root) else {
        return;
    };
    for e in procs.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let (Some(ns), Some(path)) = (cgroups::netns_of_pid(proc_root, pid), cgroup_v2_path(proc_root, pid)) else {
            continue;
        };
        let key = owning_target(targets, &path);
        let entry = members.entry(ns).or_default();
        entry.1 += 1;
        entry.0 = match std::mem::take(&mut entry.0) {
            v if v.is_empty() => key.split('/').filter(|c| !c.is_empty()).map(str::to_string).collect(),
            v => common_prefix(&v, &key),
        };
    }
    let mut owned: BTreeMap<String, Vec<(usize, u32)>> = BTreeMap::new();
    for (ns, (components, procs)) in members {
        let key = owning_target(targets, &components.join("/"));
        owned.entry(key).or_default().push((procs, ns));
    }
    for (key, mut nss) in owned {
        nss.sort_unstable_by(|a, b| b.cmp(a));
        if let Some(t) = targets.get_mut(&key) {
            t.netns = nss.first().map(|(_, ns)| *ns);
            if nss.len() > 1 {
                warn!(
                    cgroup = %key,
                    kept = ?t.netns,
                    others = ?nss[1..].iter().map(|(_, n)| n).collect::<Vec<_>>(),
                    "cgroup owns several network namespaces; socketless events of the others are not attributed"
                );
            }
        }
    }
}

/// A process's cgroup v2 path (`0::/a/b` in `/proc/<pid>/cgroup`), without
/// the leading slash.
fn cgroup_v2_path(proc_root: &Path, pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim_start_matches('/').to_string())
}

/// The deepest target whose path contains `path` (`/` at the latest).
fn owning_target(targets: &BTreeMap<String, Target>, path: &str) -> String {
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    (1..=comps.len())
        .rev()
        .map(|n| comps[..n].join("/"))
        .find(|k| targets.contains_key(k))
        .unwrap_or_else(|| "/".to_string())
}

fn common_prefix(a: &[String], b: &str) -> Vec<String> {
    a.iter()
        .zip(b.split('/').filter(|c| !c.is_empty()))
        .take_while(|(x, y)| x.as_str() == *y)
        .map(|(x, _)| x.clone())
        .collect()
}

/// Every plan selects every target.
pub fn desired(plans: &[ProbePlan], targets: BTreeMap<String, Target>) -> Desired {
    let keys: std::collections::BTreeSet<String> = targets.keys().cloned().collect();
    let mut d = Desired {
        objects: Default::default(),
        targets,
        plans: BTreeMap::new(),
    };
    for p in plans {
        if d.plans.contains_key(&p.source.key()) {
            warn!(probe = %p.source.key(), "duplicate probe in manifests; keeping the first");
            continue;
        }
        d.plans.insert(
            p.source.key(),
            PlanTargets {
                plan: Arc::new(p.clone()),
                targets: keys.clone(),
            },
        );
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(key: &str) -> (String, Target) {
        (
            key.to_string(),
            Target {
                key: key.into(),
                owner: Owner::Cgroup { path: key.into() },
                cgroup_id: 1,
                netns: None,
            },
        )
    }

    /// The ownership arithmetic; the kernel test checks real processes in
    /// real namespaces.
    #[test]
    fn a_namespace_belongs_to_the_deepest_target_holding_all_its_processes() {
        let targets: BTreeMap<String, Target> = ["/", "system.slice", "system.slice/redis.service", "user.slice"]
            .map(target)
            .into();
        assert_eq!(
            owning_target(&targets, "system.slice/redis.service/x/y"),
            "system.slice/redis.service"
        );
        assert_eq!(owning_target(&targets, "system.slice/other.service"), "system.slice");
        assert_eq!(owning_target(&targets, "init.scope"), "/");
        assert_eq!(owning_target(&targets, ""), "/");
        let common = common_prefix(
            &["system.slice".into(), "redis.service".into()],
            "system.slice/other.service",
        );
        assert_eq!(owning_target(&targets, &common.join("/")), "system.slice");
        let common = common_prefix(&["system.slice".into()], "user.slice/u.scope");
        assert_eq!(owning_target(&targets, &common.join("/")), "/");
    }

    #[test]
    fn a_yaml_syntax_error_is_rejected_with_its_line_and_the_other_files_load() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a-good.yaml"),
            "apiVersion: netprobe.dev/v1alpha1\nkind: NetworkProbe\nmetadata: {name: a, namespace: x}\nspec:\n  probes: [{type: TcpResets}]\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("b-broken.yaml"),
            "apiVersion: netprobe.dev/v1alpha1\nkind: NetworkProbe\nmetadata: {name: b\nspec: [\n",
        )
        .unwrap();
        let paths = vec![dir.path().to_path_buf()];
        // The parser used to repeat a syntax error forever: bound the wait.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(load_plans(&paths));
        });
        let (plans, rejected) = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("loading terminates")
            .unwrap();
        assert_eq!(plans.len(), 1);
        assert_eq!(rejected.len(), 1, "{rejected:?}");
        assert!(rejected[0].origin.contains("b-broken.yaml"), "{rejected:?}");
        assert!(rejected[0].reason.contains("line"), "{rejected:?}");
        assert!(check_paths(&[dir.path().join("missing")]).is_err());
        assert!(check_paths(&[dir.path().to_path_buf()]).is_ok());
    }

    #[test]
    fn loads_valid_probes_and_rejects_bad_ones_alone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.yaml"),
            "apiVersion: netprobe.dev/v1alpha1\nkind: NetworkProbe\nmetadata: {name: a, namespace: x}\nspec:\n  probes: [{type: TcpRetransmits}]\n---\n\
             apiVersion: netprobe.dev/v1alpha1\nkind: NetworkProbe\nmetadata: {name: bad}\nspec:\n  probes: [{type: TcpRtt, tcpRtt: {buckets: [0.2, 0.1]}}]\n---\n\
             apiVersion: netprobe.dev/v1alpha1\nkind: NetworkProbe\nmetadata: {name: off}\nspec:\n  suspend: true\n  probes: [{type: TcpResets}]\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("b.yaml"), "kind: Deployment\n").unwrap();
        std::fs::write(dir.path().join("c.txt"), "ignored").unwrap();
        let (plans, rejected) = load_plans(&[dir.path().to_path_buf()]).unwrap();
        assert_eq!(plans.len(), 1);
        assert_eq!(plans[0].source.key(), "NetworkProbe/x/a");
        assert_eq!(rejected.len(), 2, "{rejected:?}");
        assert!(
            rejected[0].reason.contains("spec.probes[0].tcpRtt.buckets"),
            "{rejected:?}"
        );
        assert!(rejected[1].reason.contains("Deployment"));
    }

    #[test]
    fn every_sample_loads() {
        let samples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/samples");
        let (plans, rejected) = load_plans(&[samples]).unwrap();
        assert!(rejected.is_empty(), "{rejected:?}");
        assert!(plans.len() >= 6);
    }
}
