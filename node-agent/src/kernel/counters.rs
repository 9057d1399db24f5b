//! Where kernel counters are read back and reset: the per-slot counter
//! array, the drop, histogram and peer hashes, and the error array. The
//! collector sees one flat `Snapshot` keyed like the kernel's drop counters,
//! whatever map each figure lives in.

use std::collections::BTreeMap;

use aya::Ebpf;
use aya::maps::{MapData, PerCpuArray, PerCpuHashMap, PerCpuValues};
use netprobe_ebpf::layout::{self, CounterKey, Hist, HistKey, PeerKey, PodCounters, Traffic, metric};
use netprobe_ebpf::maps;

use crate::kernel::error::{ManagerError, map, map_err, map_mut};

/// Counters read from the kernel, summed over CPUs. Zero counters are left
/// out: a pod has a series once something happened to it.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub counters: BTreeMap<CounterKey, u64>,
    pub peers: BTreeMap<PeerKey, u64>,
    /// Per `layout::ERROR_NAMES` index.
    pub errors: Vec<u64>,
    /// User programs' metric maps, by plan key.
    pub programs: BTreeMap<String, crate::catalog::program::ProgramCounters>,
}

impl Snapshot {
    /// Add a counter the agent keeps itself (the DNS sweep's unanswered
    /// queries), zero left out like the kernel's.
    pub fn add(&mut self, slot: u32, metric: u16, sub: u16, v: u64) {
        if v > 0 {
            *self.counters.entry(CounterKey { slot, metric, sub }).or_default() += v;
        }
    }

    fn add_pod(&mut self, slot: u32, c: &PodCounters) {
        self.add(slot, metric::RETRANS_SEGS, 0, c.retrans_segs);
        self.add(slot, metric::RST_SENT, 0, c.rst_sent);
        self.add(slot, metric::RST_RECV, 0, c.rst_recv);
        for (i, v) in c.connect_fail.iter().enumerate() {
            self.add(slot, metric::CONNECT_FAIL, i as u16, *v);
        }
    }

    fn add_traffic(&mut self, slot: u32, t: &Traffic) {
        for (i, (b, p)) in t.bytes.iter().zip(t.packets).enumerate() {
            self.add(slot, metric::TRAFFIC_BYTES, i as u16, *b);
            self.add(slot, metric::TRAFFIC_PACKETS, i as u16, p);
        }
    }

    /// A peer's connect latency histogram, flattened like the pods' (one
    /// entry per bucket, `sub` = the bucket index; the sum under
    /// CONNECT_SUM), so baselines and the collector treat it as counters.
    fn add_peer_hist(&mut self, k: PeerKey, h: &Hist) {
        for (i, n) in h.buckets.iter().enumerate() {
            if *n > 0 {
                let key = PeerKey {
                    metric: metric::CONNECT_BUCKET,
                    sub: i as u8,
                    ..k
                };
                *self.peers.entry(key).or_default() += n;
            }
        }
        if h.sum_ns > 0 {
            let key = PeerKey {
                metric: metric::CONNECT_SUM,
                sub: 0,
                ..k
            };
            *self.peers.entry(key).or_default() += h.sum_ns;
        }
    }

    /// A histogram's buckets under `sub` = its sub value (DNS query type)
    /// × 256 + the bucket index, its sum under the sub value.
    fn add_hist(&mut self, k: &HistKey, h: &Hist) {
        let part = (k.which >> layout::HIST_SUB_SHIFT) as u16;
        let (bucket, sum) = match k.which & ((1 << layout::HIST_SUB_SHIFT) - 1) {
            layout::BOUNDS_RTT => (metric::RTT_BUCKET, metric::RTT_SUM),
            layout::BOUNDS_DNS => (metric::DNS_BUCKET, metric::DNS_SUM),
            _ => (metric::CONNECT_BUCKET, metric::CONNECT_SUM),
        };
        if h.buckets.iter().all(|b| *b == 0) {
            return;
        }
        for (i, v) in h.buckets.iter().enumerate() {
            self.add(k.slot, bucket, (part << 8) | i as u16, *v);
        }
        // A histogram with observations always has a sum, even of zero.
        *self
            .counters
            .entry(CounterKey {
                slot: k.slot,
                metric: sum,
                sub: part,
            })
            .or_default() += h.sum_ns;
    }
}

fn sum_pod(values: &PerCpuValues<PodCounters>) -> PodCounters {
    let mut out = PodCounters::default();
    for v in values.iter() {
        out.retrans_segs = out.retrans_segs.wrapping_add(v.retrans_segs);
        out.rst_sent = out.rst_sent.wrapping_add(v.rst_sent);
        out.rst_recv = out.rst_recv.wrapping_add(v.rst_recv);
        for (o, x) in out.connect_fail.iter_mut().zip(v.connect_fail) {
            *o = o.wrapping_add(x);
        }
    }
    out
}

fn sum_traffic(values: &PerCpuValues<Traffic>) -> Traffic {
    let mut out = Traffic::default();
    for v in values.iter() {
        for (o, x) in out.bytes.iter_mut().zip(v.bytes) {
            *o = o.wrapping_add(x);
        }
        for (o, x) in out.packets.iter_mut().zip(v.packets) {
            *o = o.wrapping_add(x);
        }
    }
    out
}

fn sum_hist(values: &PerCpuValues<Hist>) -> Hist {
    let mut out = Hist::default();
    for v in values.iter() {
        out.sum_ns = out.sum_ns.wrapping_add(v.sum_ns);
        for (o, x) in out.buckets.iter_mut().zip(v.buckets) {
            *o = o.wrapping_add(x);
        }
    }
    out
}

/// Read every counter of `slots`, summed over CPUs.
pub fn snapshot(ebpf: &Ebpf, slots: impl IntoIterator<Item = u32>) -> Result<Snapshot, ManagerError> {
    let mut snap = Snapshot::default();
    let pods: PerCpuArray<&MapData, PodCounters> =
        PerCpuArray::try_from(map(ebpf, maps::POD_COUNTERS)?).map_err(map_err(maps::POD_COUNTERS))?;
    let traffic: PerCpuArray<&MapData, Traffic> =
        PerCpuArray::try_from(map(ebpf, maps::TRAFFIC)?).map_err(map_err(maps::TRAFFIC))?;
    for slot in slots {
        if let Ok(v) = pods.get(&slot, 0) {
            snap.add_pod(slot, &sum_pod(&v));
        }
        if let Ok(v) = traffic.get(&slot, 0) {
            snap.add_traffic(slot, &sum_traffic(&v));
        }
    }
    let hists: PerCpuHashMap<&MapData, HistKey, Hist> =
        PerCpuHashMap::try_from(map(ebpf, maps::HISTS)?).map_err(map_err(maps::HISTS))?;
    for (k, v) in hists.iter().filter_map(Result::ok) {
        snap.add_hist(&k, &sum_hist(&v));
    }
    let drops: PerCpuHashMap<&MapData, CounterKey, u64> =
        PerCpuHashMap::try_from(map(ebpf, maps::COUNTERS)?).map_err(map_err(maps::COUNTERS))?;
    for (k, v) in drops.iter().filter_map(Result::ok) {
        snap.add(k.slot, k.metric, k.sub, v.iter().copied().fold(0u64, u64::wrapping_add));
    }
    let peers: PerCpuHashMap<&MapData, PeerKey, u64> =
        PerCpuHashMap::try_from(map(ebpf, maps::PEERS)?).map_err(map_err(maps::PEERS))?;
    for (k, v) in peers.iter().filter_map(Result::ok) {
        snap.peers.insert(k, v.iter().copied().fold(0u64, u64::wrapping_add));
    }
    let peer_hists: PerCpuHashMap<&MapData, PeerKey, Hist> =
        PerCpuHashMap::try_from(map(ebpf, maps::PEER_HISTS)?).map_err(map_err(maps::PEER_HISTS))?;
    for (k, v) in peer_hists.iter().filter_map(Result::ok) {
        snap.add_peer_hist(k, &sum_hist(&v));
    }
    let errors: PerCpuArray<&MapData, u64> =
        PerCpuArray::try_from(map(ebpf, maps::ERRORS)?).map_err(map_err(maps::ERRORS))?;
    for i in 0..layout::ERROR_NAMES.len() as u32 {
        let v = errors
            .get(&i, 0)
            .map(|v| v.iter().copied().fold(0u64, u64::wrapping_add))
            .unwrap_or(0);
        snap.errors.push(v);
    }
    Ok(snap)
}

/// Delete the entries of per-CPU hash `name` whose key matches `drop`.
fn remove_where<K: aya::Pod, V: aya::Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
    drop: impl Fn(&K) -> bool,
) -> Result<(), ManagerError> {
    let mut m: PerCpuHashMap<_, K, V> = PerCpuHashMap::try_from(map_mut(ebpf, name)?).map_err(map_err(name))?;
    let keys: Vec<K> = m.keys().filter_map(Result::ok).filter(|k| drop(k)).collect();
    for k in keys {
        let _ = m.remove(&k);
    }
    Ok(())
}

/// Rewrite the elements `slots` of per-CPU array `name` (every CPU) with
/// `f` applied.
fn update_slots<V: aya::Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
    slots: impl IntoIterator<Item = u32>,
    f: impl Fn(&mut V),
) -> Result<(), ManagerError> {
    let mut array: PerCpuArray<_, V> = PerCpuArray::try_from(map_mut(ebpf, name)?).map_err(map_err(name))?;
    for slot in slots {
        let Ok(values) = array.get(&slot, 0) else { continue };
        let mut v: Vec<V> = values.iter().copied().collect();
        v.iter_mut().for_each(&f);
        let values = PerCpuValues::try_from(v).map_err(|source| ManagerError::Values { name, source })?;
        array.set(slot, values, 0).map_err(map_err(name))?;
    }
    Ok(())
}

fn update_pods(
    ebpf: &mut Ebpf,
    slots: impl IntoIterator<Item = u32>,
    f: impl Fn(&mut PodCounters),
) -> Result<(), ManagerError> {
    update_slots(ebpf, maps::POD_COUNTERS, slots, f)
}

/// Every counter of `slot` goes: its fixed counters are zeroed, its hash
/// entries deleted (a pod that left, or a slot handed to another pod).
pub fn clear_slot(ebpf: &mut Ebpf, slot: u32) -> Result<(), ManagerError> {
    update_pods(ebpf, [slot], |c| *c = PodCounters::default())?;
    update_slots(ebpf, maps::TRAFFIC, [slot], |t: &mut Traffic| *t = Traffic::default())?;
    remove_where::<CounterKey, u64>(ebpf, maps::COUNTERS, |k| k.slot == slot)?;
    remove_where::<PeerKey, u64>(ebpf, maps::PEERS, |k| k.slot == slot)?;
    remove_where::<PeerKey, Hist>(ebpf, maps::PEER_HISTS, |k| k.slot == slot)?;
    remove_where::<HistKey, Hist>(ebpf, maps::HISTS, |k| k.slot == slot)
}

/// Reset `metrics` of every slot in `slots` (a probe type detached, or
/// histogram bounds changed).
pub fn forget_metrics(ebpf: &mut Ebpf, slots: &[u32], metrics: &[u16]) -> Result<(), ManagerError> {
    let has = |m: u16| metrics.contains(&m);
    if has(metric::RETRANS_SEGS) || has(metric::RST_SENT) || has(metric::RST_RECV) || has(metric::CONNECT_FAIL) {
        update_pods(ebpf, slots.iter().copied(), |c| {
            if has(metric::RETRANS_SEGS) {
                c.retrans_segs = 0;
            }
            if has(metric::RST_SENT) {
                c.rst_sent = 0;
            }
            if has(metric::RST_RECV) {
                c.rst_recv = 0;
            }
            if has(metric::CONNECT_FAIL) {
                c.connect_fail = Default::default();
            }
        })?;
    }
    if has(metric::TRAFFIC_BYTES) || has(metric::TRAFFIC_PACKETS) {
        update_slots(ebpf, maps::TRAFFIC, slots.iter().copied(), |t: &mut Traffic| {
            *t = Traffic::default()
        })?;
    }
    remove_where::<PeerKey, u64>(ebpf, maps::PEERS, |k| has(k.metric))?;
    if has(metric::CONNECT_BUCKET) {
        remove_where::<PeerKey, Hist>(ebpf, maps::PEER_HISTS, |_| true)?;
    }
    // Counters keyed by value (drop reasons, DNS response codes, …).
    remove_where::<CounterKey, u64>(ebpf, maps::COUNTERS, |k| has(k.metric))?;
    let connect = has(metric::CONNECT_BUCKET) || has(metric::CONNECT_SUM);
    let rtt = has(metric::RTT_BUCKET) || has(metric::RTT_SUM);
    let dns = has(metric::DNS_BUCKET) || has(metric::DNS_SUM);
    if connect || rtt || dns {
        remove_where::<HistKey, Hist>(ebpf, maps::HISTS, |k| {
            let index = k.which & ((1 << layout::HIST_SUB_SHIFT) - 1);
            (connect && index == layout::BOUNDS_CONNECT)
                || (rtt && index == layout::BOUNDS_RTT)
                || (dns && index == layout::BOUNDS_DNS)
        })?;
    }
    Ok(())
}
