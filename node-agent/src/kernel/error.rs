//! Errors of the kernel side, and the map lookups every kernel module shares.

use aya::Ebpf;
use aya::maps::Map;

#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("kernel BTF: {0}")]
    Btf(String),
    #[error("eBPF map {0} is missing from the object")]
    MissingMap(&'static str),
    #[error("eBPF map {name}: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
    #[error("eBPF map {name}: per-CPU values: {source}")]
    Values { name: &'static str, source: std::io::Error },
    #[error("running eBPF program {program}: {source}")]
    Run {
        program: &'static str,
        source: std::io::Error,
    },
}

/// Turns a map error into one naming the map.
pub fn map_err(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> ManagerError {
    move |source| ManagerError::Map { name, source }
}

/// Map `name` of the object, or the error naming it.
pub fn map<'a>(ebpf: &'a Ebpf, name: &'static str) -> Result<&'a Map, ManagerError> {
    ebpf.map(name).ok_or(ManagerError::MissingMap(name))
}

/// Map `name` of the object, writable.
pub fn map_mut<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut Map, ManagerError> {
    ebpf.map_mut(name).ok_or(ManagerError::MissingMap(name))
}

/// Delete every entry of hash map `name` (kernel state a probe type keeps
/// besides counters, when the type is detached).
pub fn clear_hash<K: aya::Pod, V: aya::Pod>(ebpf: &mut aya::Ebpf, name: &'static str) -> Result<(), ManagerError> {
    remove_from_hash::<K, V>(ebpf, name, |_, _| true)
}

/// Zero the count of pending connects of `slot` (every slot when None):
/// after its entries of `connecting` were removed from userspace, which
/// cannot decrement the count the programs keep atomically.
pub fn reset_connecting_slots(ebpf: &mut aya::Ebpf, slot: Option<u32>) -> Result<(), ManagerError> {
    let name = netprobe_ebpf::maps::CONNECTING_SLOTS;
    let mut arr: aya::maps::Array<_, i64> = aya::maps::Array::try_from(map_mut(ebpf, name)?).map_err(map_err(name))?;
    match slot {
        Some(s) => arr.set(s, 0, 0).map_err(map_err(name)),
        None => {
            for s in 0..arr.len() {
                arr.set(s, 0, 0).map_err(map_err(name))?;
            }
            Ok(())
        }
    }
}

/// Delete the entries of hash map `name` that `drop` picks.
pub fn remove_from_hash<K: aya::Pod, V: aya::Pod>(
    ebpf: &mut aya::Ebpf,
    name: &'static str,
    drop: impl Fn(&K, &V) -> bool,
) -> Result<(), ManagerError> {
    let mut m: aya::maps::HashMap<_, K, V> =
        aya::maps::HashMap::try_from(map_mut(ebpf, name)?).map_err(map_err(name))?;
    let keys: Vec<K> = m
        .iter()
        .filter_map(Result::ok)
        .filter(|(k, v)| drop(k, v))
        .map(|(k, _)| k)
        .collect();
    for k in keys {
        let _ = m.remove(&k);
    }
    Ok(())
}

/// A short reason from a load error: the verifier's last lines name what the
/// kernel refused (a helper, a context access).
pub fn verifier_reason(name: &str, e: &aya::programs::ProgramError) -> String {
    let text = match e {
        aya::programs::ProgramError::LoadError { verifier_log, .. } => {
            // The error is the last line before the verifier's summary
            // ("processed N insns …", "stack depth …", "verification time").
            let log = verifier_log.to_string();
            let summary = |l: &str| {
                l.starts_with("processed ") || l.starts_with("stack depth") || l.starts_with("verification time")
            };
            let mut lines: Vec<&str> = log
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !summary(l))
                .rev()
                .take(2)
                .collect();
            lines.reverse();
            lines.join(" / ")
        }
        other => other.to_string(),
    };
    format!("kernel refused program {name}: {text}")
}
