//! The cgroup v2 hierarchy as the kubelet lays it out: where it is mounted,
//! the id of a cgroup (the kernel's `kernfs_node` id, which is the directory's
//! inode number), the pod-level cgroup of a pod UID under either cgroup
//! driver, and the network namespace of a cgroup's member processes.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup2 hierarchy: {0}")]
    NoCgroup2(String),
    #[error("reading {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The cgroup2 mount point, from a mountinfo file (normally
/// `/proc/self/mountinfo`); never assumed to be `/sys/fs/cgroup`.
pub fn cgroup2_mount(mountinfo: &Path) -> Result<PathBuf, CgroupError> {
    let text = std::fs::read_to_string(mountinfo).map_err(io(mountinfo))?;
    parse_cgroup2_mount(&text)
        .ok_or_else(|| CgroupError::NoCgroup2(format!("no cgroup2 mount in {}", mountinfo.display())))
}

/// The cgroup a `cgroup_skb` program attaches to, opened: `dir` when the
/// agent was told one, else the cgroup2 mount this process sees. The error
/// names the program, for its status.
pub fn open_skb_cgroup(dir: Option<&Path>, program: &str) -> Result<(PathBuf, std::fs::File), String> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => cgroup2_mount(Path::new("/proc/self/mountinfo"))
            .map_err(|e| format!("no cgroup2 root to attach {program} to: {e}"))?,
    };
    let file =
        std::fs::File::open(&dir).map_err(|e| format!("opening the cgroup {} for {program}: {e}", dir.display()))?;
    Ok((dir, file))
}

/// The cgroup2 hierarchy at or under `root`: `root` itself when it is a
/// cgroup2 mount (it has `cgroup.controllers`), else `root/unified` (hybrid
/// hosts mount cgroup2 there, and a DaemonSet mounts the host's
/// `/sys/fs/cgroup`). An error names what was looked at.
pub fn cgroup2_under(root: &Path) -> Result<PathBuf, CgroupError> {
    for candidate in [root.to_path_buf(), root.join("unified")] {
        if candidate.join("cgroup.controllers").is_file() {
            return Ok(candidate);
        }
    }
    Err(CgroupError::NoCgroup2(format!(
        "{} (neither it nor {}/unified is a cgroup2 mount)",
        root.display(),
        root.display()
    )))
}

/// The first cgroup2 mount point in mountinfo text.
pub fn parse_cgroup2_mount(text: &str) -> Option<PathBuf> {
    text.lines().find_map(|line| {
        // mount-id parent-id major:minor root mount-point options [optional...] - fstype source super-options
        let (left, right) = line.split_once(" - ")?;
        let fstype = right.split_whitespace().next()?;
        if fstype != "cgroup2" {
            return None;
        }
        let mount_point = left.split_whitespace().nth(4)?;
        Some(PathBuf::from(unescape_octal(mount_point)))
    })
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 4])
                .ok()
                .and_then(|o| u8::from_str_radix(o, 8).ok())
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The id BPF sees for a cgroup (`cgroup->kn->id`): its directory's inode.
pub fn cgroup_id(dir: &Path) -> Result<u64, CgroupError> {
    Ok(std::fs::metadata(dir).map_err(io(dir))?.ino())
}

/// How the kubelet spells a pod's cgroup directory name for `uid`, in both
/// drivers: cgroupfs `pod<uid>`, systemd `kubepods[-<qos>]-pod<uid_with_underscores>.slice`.
fn is_pod_dir(name: &str, uid: &str) -> bool {
    if name == format!("pod{uid}") {
        return true;
    }
    let systemd_uid = uid.replace('-', "_");
    name.ends_with(&format!("-pod{systemd_uid}.slice"))
}

/// Find the pod-level cgroup of `uid` under `root` (the cgroup2 mount, or a
/// kubelet root inside it). The top two levels are searched whole (a
/// kubelet `--cgroup-root`, kind's `kubelet.slice`); below them only the
/// kubelet's part of the tree: directories whose name contains `kubepods`
/// and everything inside one. That covers every QoS class of both drivers,
/// nested kubelets and custom roots, without walking the host's services.
pub fn find_pod_cgroup(root: &Path, uid: &str) -> Option<PathBuf> {
    fn walk(dir: &Path, uid: &str, depth: usize, inside: bool) -> Option<PathBuf> {
        if depth == 0 {
            return None;
        }
        let entries = std::fs::read_dir(dir).ok()?;
        let mut subdirs = Vec::new();
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = e.file_name();
            let name = name.to_string_lossy();
            if is_pod_dir(&name, uid) {
                return Some(e.path());
            }
            let kubelet = inside || is_kubelet_dir(&name);
            if kubelet || depth > MAX_DEPTH - 2 {
                subdirs.push((e.path(), kubelet));
            }
        }
        subdirs.into_iter().find_map(|(d, k)| walk(&d, uid, depth - 1, k))
    }
    const MAX_DEPTH: usize = 6;
    walk(root, uid, MAX_DEPTH, false)
}

/// The kubelet's pods cgroup under `root`: the one outermost directory of
/// the top two levels whose name contains `kubepods` (`kubepods.slice`,
/// `kubepods`, kind's `kubelet.slice/kubelet-kubepods.slice`, a kubelet's
/// `--cgroup-root`), every pod below it. Traffic's and Dns's `cgroup_skb`
/// programs attach there, so packets of the host's own processes (the
/// kubelet, the runtime pulling images) run no program at all: they are no
/// pod's. `Err` lists what was found when there is not exactly one (no
/// kubepods cgroup: `--cgroups-per-qos=false`; several kubelets).
pub fn pods_subtree(root: &Path) -> Result<PathBuf, Vec<PathBuf>> {
    let named = |d: &Path| d.file_name().is_some_and(|n| is_kubelet_dir(&n.to_string_lossy()));
    let mut found: Vec<PathBuf> = cgroups_to_depth(root, 2)
        .into_iter()
        .filter(|d| named(d) && !d.parent().is_some_and(named))
        .map(|d| root.join(d))
        .collect();
    match found.len() {
        1 => Ok(found.remove(0)),
        _ => Err(found),
    }
}

/// The kubelet's part of the tree: a directory whose name contains
/// `kubepods` (every QoS class and pod of both drivers is inside one).
fn is_kubelet_dir(name: &str) -> bool {
    name.contains("kubepods")
}

/// PIDs in a cgroup and its descendants.
pub fn member_pids(dir: &Path) -> Vec<u32> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(text) = std::fs::read_to_string(d.join("cgroup.procs")) {
            out.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
        if let Ok(entries) = std::fs::read_dir(&d) {
            stack.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    out
}

/// Network namespace inode of a process (`<proc>/<pid>/ns/net`).
pub fn netns_of_pid(proc_root: &Path, pid: u32) -> Option<u32> {
    let p = proc_root.join(pid.to_string()).join("ns/net");
    std::fs::metadata(p).ok().and_then(|m| u32::try_from(m.ino()).ok())
}

/// Network namespace of the first member process of a cgroup subtree.
pub fn netns_of_cgroup(proc_root: &Path, dir: &Path) -> Option<u32> {
    member_pids(dir)
        .into_iter()
        .find_map(|pid| netns_of_pid(proc_root, pid))
}

/// Every cgroup directory under `root` down to `depth` levels, as paths
/// relative to root (standalone mode's targets).
pub fn cgroups_to_depth(root: &Path, depth: usize) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![(PathBuf::new(), 0usize)];
    while let Some((rel, d)) = stack.pop() {
        if d >= depth {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(root.join(&rel)) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let child = rel.join(e.file_name());
                out.push(child.clone());
                stack.push((child, d + 1));
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cgroup_root_is_checked_and_hybrid_hosts_use_unified() {
        let v2 = tempfile::tempdir().unwrap();
        std::fs::write(v2.path().join("cgroup.controllers"), "cpu io memory\n").unwrap();
        assert_eq!(cgroup2_under(v2.path()).unwrap(), v2.path());
        let hybrid = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(hybrid.path().join("unified")).unwrap();
        std::fs::write(hybrid.path().join("unified/cgroup.controllers"), "").unwrap();
        assert_eq!(cgroup2_under(hybrid.path()).unwrap(), hybrid.path().join("unified"));
        let v1 = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(v1.path().join("memory")).unwrap();
        let e = cgroup2_under(v1.path()).unwrap_err().to_string();
        assert!(e.contains(&v1.path().display().to_string()), "{e}");
    }

    #[test]
    fn finds_cgroup2_in_hybrid_and_unified_layouts() {
        let hybrid = "25 1 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n\
            26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid shared:4 - cgroup2 cgroup2 rw\n\
            27 25 0:24 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n";
        assert_eq!(
            parse_cgroup2_mount(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let unified = "30 1 0:26 / /host/sys/fs/cgroup rw,nosuid,nodev shared:9 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(parse_cgroup2_mount(unified), Some(PathBuf::from("/host/sys/fs/cgroup")));
        let escaped = "30 1 0:26 / /mnt/with\\040space rw - cgroup2 none rw\n";
        assert_eq!(parse_cgroup2_mount(escaped), Some(PathBuf::from("/mnt/with space")));
        assert_eq!(parse_cgroup2_mount("27 25 0:24 / /x rw - cgroup cgroup rw\n"), None);
        assert_eq!(parse_cgroup2_mount("garbage\n\n"), None);
    }

    #[test]
    fn the_pods_subtree_is_the_one_outermost_kubepods_cgroup() {
        let systemd = tempfile::tempdir().unwrap();
        let pods = systemd.path().join("kubepods.slice");
        std::fs::create_dir_all(pods.join("kubepods-burstable.slice/kubepods-burstable-poda.slice")).unwrap();
        std::fs::create_dir_all(systemd.path().join("system.slice/containerd.service")).unwrap();
        assert_eq!(pods_subtree(systemd.path()), Ok(pods));
        let kind = tempfile::tempdir().unwrap();
        let pods = kind.path().join("kubelet.slice/kubelet-kubepods.slice");
        std::fs::create_dir_all(pods.join("kubelet-kubepods-besteffort.slice")).unwrap();
        assert_eq!(pods_subtree(kind.path()), Ok(pods));
        let cgroupfs = tempfile::tempdir().unwrap();
        let pods = cgroupfs.path().join("kubepods");
        std::fs::create_dir_all(pods.join("besteffort/podx")).unwrap();
        assert_eq!(pods_subtree(cgroupfs.path()), Ok(pods.clone()));
        // Two kubelets' trees: no single subtree holds every pod.
        std::fs::create_dir_all(cgroupfs.path().join("kubelet/kubepods")).unwrap();
        assert_eq!(
            pods_subtree(cgroupfs.path()),
            Err(vec![cgroupfs.path().join("kubelet/kubepods"), pods])
        );
        let none = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(none.path().join("system.slice")).unwrap();
        assert_eq!(pods_subtree(none.path()), Err(vec![]));
    }

    #[test]
    fn pod_dirs_of_both_drivers() {
        let uid = "0f1e2d3c-aaaa-bbbb-cccc-000000000001";
        assert!(is_pod_dir(&format!("pod{uid}"), uid));
        assert!(is_pod_dir(
            "kubepods-burstable-pod0f1e2d3c_aaaa_bbbb_cccc_000000000001.slice",
            uid
        ));
        assert!(is_pod_dir(
            "kubepods-pod0f1e2d3c_aaaa_bbbb_cccc_000000000001.slice",
            uid
        ));
        assert!(!is_pod_dir("kubepods-burstable.slice", uid));
        assert!(!is_pod_dir("pod0f1e2d3c-aaaa-bbbb-cccc-000000000002", uid));
    }

    #[test]
    fn finds_pod_cgroups_in_plain_directories() {
        let t = tempfile::tempdir().unwrap();
        let uid = "11111111-2222-3333-4444-555555555555";
        let sys = t.path().join("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod11111111_2222_3333_4444_555555555555.slice/cri-containerd-abc.scope");
        std::fs::create_dir_all(&sys).unwrap();
        assert_eq!(find_pod_cgroup(t.path(), uid), sys.parent().map(Path::to_path_buf));
        let uid2 = "99999999-2222-3333-4444-555555555555";
        // kind's nested kubelet and a cgroupfs kubelet under --cgroup-root.
        let uid3 = "33333333-2222-3333-4444-555555555555";
        let kind = t.path().join("kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod33333333_2222_3333_4444_555555555555.slice/cri-containerd-x.scope");
        std::fs::create_dir_all(&kind).unwrap();
        assert_eq!(find_pod_cgroup(t.path(), uid3), kind.parent().map(Path::to_path_buf));
        let uid4 = "44444444-2222-3333-4444-555555555555";
        let custom = t.path().join(format!("kubelet/kubepods/burstable/pod{uid4}/c"));
        std::fs::create_dir_all(&custom).unwrap();
        assert_eq!(find_pod_cgroup(t.path(), uid4), custom.parent().map(Path::to_path_buf));
        let fs = t.path().join(format!("kubepods/pod{uid2}/abc"));
        std::fs::create_dir_all(&fs).unwrap();
        assert_eq!(find_pod_cgroup(t.path(), uid2), fs.parent().map(Path::to_path_buf));
        assert_eq!(find_pod_cgroup(t.path(), "nope"), None);
        let all = cgroups_to_depth(t.path(), 2);
        assert!(all.contains(&PathBuf::from("kubepods.slice/kubepods-besteffort.slice")));
        assert!(!all.iter().any(|p| p.components().count() > 2));
    }
}
