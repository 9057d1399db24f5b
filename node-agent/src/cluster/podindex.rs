//! The pod index: pods on this node as the API describes them, joined with
//! where the kernel finds them (pod cgroup id by scanning the cgroup2
//! hierarchy for the kubelet's `pod<UID>` directory, network namespace from a
//! member process). Resolution is cached and retried for pods whose cgroup
//! does not exist yet.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use crate::cgroups;
use crate::pipeline::selection::PodView;

#[derive(Clone, Debug)]
struct Resolved {
    dir: PathBuf,
    cgroup_id: u64,
    netns: Option<u32>,
}

/// Pod UID → where the kernel finds it.
pub struct PodIndex {
    cgroup_root: PathBuf,
    proc_root: PathBuf,
    resolved: BTreeMap<String, Resolved>,
}

/// The workload that owns a pod: Deployment (through its ReplicaSet),
/// StatefulSet, DaemonSet or Job; None for a bare pod.
pub fn workload_of(pod: &Pod) -> Option<String> {
    let owner = pod.owner_references().iter().find(|o| o.controller == Some(true))?;
    match owner.kind.as_str() {
        "ReplicaSet" => {
            // <deployment>-<pod-template-hash>
            let hash = pod.labels().get("pod-template-hash");
            match hash.and_then(|h| owner.name.strip_suffix(&format!("-{h}"))) {
                Some(deployment) => Some(deployment.to_string()),
                None => Some(owner.name.clone()),
            }
        }
        _ => Some(owner.name.clone()),
    }
}

impl PodIndex {
    pub fn new(cgroup_root: PathBuf, proc_root: PathBuf) -> Self {
        PodIndex {
            cgroup_root,
            proc_root,
            resolved: BTreeMap::new(),
        }
    }

    fn resolve(&mut self, uid: &str, host_network: bool) -> Option<Resolved> {
        if let Some(r) = self.resolved.get(uid)
            && cgroups::cgroup_id(&r.dir).ok() == Some(r.cgroup_id)
            && (host_network || r.netns.is_some())
        {
            return Some(r.clone());
        }
        let dir = cgroups::find_pod_cgroup(&self.cgroup_root, uid)?;
        let cgroup_id = cgroups::cgroup_id(&dir).ok()?;
        let netns = if host_network {
            None
        } else {
            cgroups::netns_of_cgroup(&self.proc_root, &dir)
        };
        let r = Resolved { dir, cgroup_id, netns };
        self.resolved.insert(uid.to_string(), r.clone());
        Some(r)
    }

    /// Views of `pods`, resolving what is new; forgets pods that are gone.
    pub fn views(&mut self, pods: &[&Pod]) -> Vec<PodView> {
        let mut out = Vec::with_capacity(pods.len());
        let mut seen = std::collections::BTreeSet::new();
        for pod in pods {
            let Some(uid) = pod.uid() else { continue };
            seen.insert(uid.clone());
            let spec = pod.spec.as_ref();
            let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
            let phase = pod
                .status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .unwrap_or("Pending");
            let active = !matches!(phase, "Succeeded" | "Failed");
            let r = if active { self.resolve(&uid, host_network) } else { None };
            out.push(PodView {
                uid,
                namespace: pod.namespace().unwrap_or_default(),
                name: pod.name_any(),
                labels: pod.labels().clone(),
                workload: workload_of(pod),
                active,
                cgroup_id: r.as_ref().map(|r| r.cgroup_id),
                netns: r.and_then(|r| r.netns),
            });
        }
        self.resolved.retain(|uid, _| seen.contains(uid));
        out
    }

    pub fn cgroup_root(&self) -> &Path {
        &self.cgroup_root
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn workloads_from_owner_references() {
        let deploy = pod(
            json!({"metadata": {"name": "web-7d9f-abc", "labels": {"pod-template-hash": "7d9f"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f", "uid": "1", "controller": true}]}}),
        );
        assert_eq!(workload_of(&deploy).as_deref(), Some("web"));
        let sts = pod(json!({"metadata": {"name": "db-0",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "uid": "2", "controller": true}]}}));
        assert_eq!(workload_of(&sts).as_deref(), Some("db"));
        let bare = pod(json!({"metadata": {"name": "x"}}));
        assert_eq!(workload_of(&bare), None);
    }

    #[test]
    fn late_cgroups_resolve_on_a_later_pass_and_gone_pods_are_forgotten() {
        let root = tempfile::tempdir().unwrap();
        let uid = "aaaaaaaa-0000-4000-8000-000000000001";
        let p = pod(
            json!({"metadata": {"name": "p", "namespace": "shop", "uid": uid}, "spec": {"containers": [], "hostNetwork": true},
            "status": {"phase": "Running"}}),
        );
        let mut idx = PodIndex::new(root.path().to_path_buf(), PathBuf::from("/proc"));
        let v = idx.views(&[&p]);
        assert_eq!(v[0].cgroup_id, None, "no cgroup yet");
        let dir = root.path().join(format!("kubepods/pod{uid}"));
        std::fs::create_dir_all(&dir).unwrap();
        let v = idx.views(&[&p]);
        assert_eq!(v[0].cgroup_id, cgroups::cgroup_id(&dir).ok());
        assert_eq!(v[0].netns, None, "hostNetwork pods have no netns of their own");
        assert!(idx.views(&[]).is_empty());
        assert!(idx.resolved.is_empty());
    }
}
