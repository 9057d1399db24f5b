//! Program, API side: a user's own eBPF object and how its maps become
//! metrics (ebpf_exporter-style decoders, netprobe's pod filter). Allowed
//! only in a ClusterNetworkProbe: loading code into every node's kernel is
//! a cluster-admin power, checked by the operator, by every agent and at
//! admission (a CEL rule on the NetworkProbe CRD).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::FieldError;

/// Most metrics one program may export.
pub const MAX_METRICS: usize = 16;
/// Most labels (map key fields) one metric may have.
pub const MAX_LABELS: usize = 8;
/// Most bytes one key field may have (an IPv6 address).
pub const MAX_FIELD_SIZE: u32 = 16;
/// Most entries of a `static_map` decoder and most fixed histogram bounds.
pub const MAX_STATIC_VALUES: usize = 256;
/// Most log2 buckets (2^63 is the largest u64 power of two).
pub const MAX_LOG2_BUCKETS: u32 = 64;

/// Options of a Program probe.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProgramOptions {
    /// Where the compiled object (an ELF file from `clang -target bpf`) is.
    pub object: ProgramObject,
    /// The metrics the program's maps hold: each names a map and how its key
    /// decodes into labels.
    #[schemars(length(min = 1, max = 16))]
    pub metrics: Vec<ProgramMetric>,
}

/// Where a program's object is, and which bytes it must be.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProgramObject {
    /// A key of a ConfigMap's binaryData in the operator's namespace (for
    /// example from `kubectl create configmap --from-file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapKey>,
    /// The object's SHA-256 digest in hex. Required with configMap: the agent
    /// loads only these bytes, so a changed ConfigMap without a new digest
    /// is refused, not loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// An absolute path to the object on the node (standalone mode only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// One key of a ConfigMap.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKey {
    pub name: String,
    pub key: String,
}

/// One metric of a program.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProgramMetric {
    /// The exported name (Prometheus syntax; `netprobe_` is reserved). A
    /// counter's name ends in `_total`.
    pub name: String,
    /// Its HELP text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// `counter` (default): the map's u64 values, summed over CPUs for a
    /// per-CPU map; `histogram`: the last key field is the bucket.
    #[serde(rename = "type", default)]
    pub kind: ProgramMetricKind,
    /// The map in the object that holds it (a hash or array map, per-CPU or
    /// not, with u64 values).
    pub map: String,
    /// The map key, field by field in order: exactly one field uses the
    /// `pod` decoder; a histogram's last field is its bucket (decoder `uint`).
    #[schemars(length(min = 1, max = 8))]
    pub labels: Vec<ProgramLabel>,
    /// A histogram's buckets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buckets: Option<ProgramBuckets>,
}

/// Counter or histogram.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ProgramMetricKind {
    #[default]
    Counter,
    Histogram,
}

/// One field of a map key and how it becomes a label value.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProgramLabel {
    /// The label name (ignored for the `pod` field, which becomes the
    /// probe's granularity labels, and for a histogram's bucket field).
    pub name: String,
    /// The field's size in bytes (1, 2, 4, 8 or 16; padding is a field with
    /// decoder `skip`). Fields are read in the host's byte order.
    #[schemars(range(min = 1, max = 16))]
    pub size: u32,
    pub decoder: Decoder,
    /// `kernel_enum`: the enum type in the node's BTF (for example
    /// `skb_drop_reason`); its value names become the label values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_enum: Option<String>,
    /// `static_map`: value (decimal) → label value; other values read
    /// `unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub static_map: Option<BTreeMap<String, String>>,
}

impl ProgramLabel {
    /// A field without a kernel enum or static map.
    pub fn new(name: &str, size: u32, decoder: Decoder) -> Self {
        ProgramLabel {
            name: name.into(),
            size,
            decoder,
            kernel_enum: None,
            static_map: None,
        }
    }
}

/// How a key field becomes a label value.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decoder {
    /// The pod slot from `np_sock_pod`/`np_current_pod`/`np_skb_pod` (4
    /// bytes): the probe's granularity labels.
    Pod,
    /// An unsigned integer in decimal.
    #[default]
    Uint,
    /// An IPv4 (4 bytes) or IPv6 (16 bytes) address.
    InetIp,
    /// A port in network byte order (2 bytes).
    Port,
    /// A value of a kernel enum, named through the node's BTF.
    KernelEnum,
    /// A value named by the spec's staticMap.
    StaticMap,
    /// Padding: read, not exported.
    Skip,
}

/// A histogram's buckets: the bucket field's value `i` is bucket `i`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProgramBuckets {
    /// `log2`: bucket i counts values ≤ 2^i (and above 2^(i-1)), as
    /// netprobe.h's `np_log2_bucket` computes; `fixed`: bucket i counts
    /// values ≤ bounds[i] (and above bounds[i-1]), i = len(bounds) the rest.
    #[serde(rename = "type")]
    pub kind: BucketKind,
    /// log2: the largest bucket index (the program clamps to it). Default 32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 63))]
    pub max: Option<u32>,
    /// fixed: the upper bounds, increasing, in the program's unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounds: Option<Vec<f64>>,
    /// Multiplies every bound on export (for example 1e-9 to turn
    /// nanoseconds into seconds). Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiplier: Option<f64>,
}

/// log2 or fixed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum BucketKind {
    #[default]
    Log2,
    Fixed,
}

/// Where the planned object comes from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", tag = "from")]
pub enum ObjectSource {
    #[serde(rename_all = "camelCase")]
    ConfigMap {
        name: String,
        key: String,
    },
    Path {
        path: String,
    },
}

/// A planned Program probe: the object's source and digest, and each
/// metric with its bucket bounds computed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProgramPlan {
    pub object: ObjectSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    pub metrics: Vec<ProgramMetricPlan>,
}

/// A planned metric.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProgramMetricPlan {
    pub name: String,
    pub help: String,
    pub kind: ProgramMetricKind,
    pub map: String,
    pub labels: Vec<ProgramLabel>,
    /// Histograms: the exported upper bound of each bucket index (the last
    /// index, past them, is +Inf).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bounds: Vec<f64>,
    /// Histograms: what the program's sum is multiplied by on export.
    #[serde(default = "one")]
    pub multiplier: f64,
}

fn one() -> f64 {
    1.0
}

impl ProgramMetricPlan {
    /// Bytes of the key.
    pub fn key_size(&self) -> usize {
        self.labels.iter().map(|l| l.size as usize).sum()
    }

    /// Byte offset of the `pod` field.
    pub fn pod_offset(&self) -> Option<usize> {
        let mut off = 0;
        for l in &self.labels {
            if l.decoder == Decoder::Pod {
                return Some(off);
            }
            off += l.size as usize;
        }
        None
    }

    /// Names of the exported labels, after the owner labels (histograms:
    /// without the bucket field).
    pub fn label_names(&self) -> Vec<String> {
        let n = match self.kind {
            ProgramMetricKind::Histogram => self.labels.len().saturating_sub(1),
            ProgramMetricKind::Counter => self.labels.len(),
        };
        self.labels[..n]
            .iter()
            .filter(|l| !matches!(l.decoder, Decoder::Pod | Decoder::Skip))
            .map(|l| l.name.clone())
            .collect()
    }
}

/// Label names a program's label may not take: the owner labels, the probe
/// label and Prometheus' histogram label.
const RESERVED_LABELS: [&str; 7] = ["probe", "namespace", "pod", "workload", "cgroup", "le", "quantile"];

fn is_metric_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        && !s.starts_with("__")
}

fn is_c_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars().next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && s.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

pub(crate) fn plan(opts: Option<&ProgramOptions>, field: &str) -> Result<ProgramPlan, Vec<FieldError>> {
    let Some(o) = opts else {
        return Err(vec![FieldError::new(
            field,
            "a Program probe needs its options: object and metrics",
        )]);
    };
    let mut errors = Vec::new();
    let obj = &o.object;
    let object = match (&obj.config_map, &obj.path) {
        (Some(c), None) => {
            if c.name.is_empty() || c.key.is_empty() {
                errors.push(FieldError::new(
                    format!("{field}.object.configMap"),
                    "name and key must both be set",
                ));
            }
            if obj.sha256.is_none() {
                errors.push(FieldError::new(
                    format!("{field}.object.sha256"),
                    "required with configMap: the agents load only the object with this digest",
                ));
            }
            ObjectSource::ConfigMap {
                name: c.name.clone(),
                key: c.key.clone(),
            }
        }
        (None, Some(p)) => {
            if !p.starts_with('/') {
                errors.push(FieldError::new(
                    format!("{field}.object.path"),
                    "must be an absolute path",
                ));
            }
            ObjectSource::Path { path: p.clone() }
        }
        _ => {
            errors.push(FieldError::new(
                format!("{field}.object"),
                "set exactly one of configMap and path",
            ));
            ObjectSource::Path { path: String::new() }
        }
    };
    let sha256 = obj.sha256.as_ref().map(|s| s.to_ascii_lowercase());
    if let Some(s) = &sha256
        && (s.len() != 64 || !s.chars().all(|c| c.is_ascii_hexdigit()))
    {
        errors.push(FieldError::new(
            format!("{field}.object.sha256"),
            "must be 64 hex digits (`sha256sum prog.bpf.o`)",
        ));
    }
    if o.metrics.is_empty() || o.metrics.len() > MAX_METRICS {
        errors.push(FieldError::new(
            format!("{field}.metrics"),
            format!("must list 1 to {MAX_METRICS} metrics"),
        ));
    }
    let mut names = BTreeSet::new();
    let mut metrics = Vec::new();
    for (i, m) in o.metrics.iter().enumerate() {
        let f = format!("{field}.metrics[{i}]");
        match plan_metric(m, &f) {
            Ok(mp) => {
                if !names.insert(mp.name.clone()) {
                    errors.push(FieldError::new(
                        format!("{f}.name"),
                        format!("{} appears more than once", mp.name),
                    ));
                }
                metrics.push(mp);
            }
            Err(e) => errors.extend(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(ProgramPlan {
        object,
        sha256,
        metrics,
    })
}

fn plan_metric(m: &ProgramMetric, f: &str) -> Result<ProgramMetricPlan, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut err = |field: String, msg: String| errors.push(FieldError::new(field, msg));
    if !is_metric_name(&m.name) {
        err(
            format!("{f}.name"),
            format!("{:?} is not a Prometheus metric name", m.name),
        );
    } else if m.name.starts_with("netprobe_") {
        err(
            format!("{f}.name"),
            "the netprobe_ prefix is reserved for built-in metrics".into(),
        );
    }
    if m.kind == ProgramMetricKind::Counter && !m.name.ends_with("_total") {
        err(format!("{f}.name"), "a counter's name ends in _total".into());
    }
    if !is_c_identifier(&m.map) {
        err(format!("{f}.map"), format!("{:?} is not a map name", m.map));
    }
    if m.labels.is_empty() || m.labels.len() > MAX_LABELS {
        err(format!("{f}.labels"), format!("must list 1 to {MAX_LABELS} key fields"));
    }
    let pods = m.labels.iter().filter(|l| l.decoder == Decoder::Pod).count();
    if pods != 1 {
        err(
            format!("{f}.labels"),
            format!(
                "exactly one field must use the pod decoder (found {pods}): series are per pod, and a pod's series \
                 are only its own"
            ),
        );
    }
    let mut seen = BTreeSet::new();
    let last = m.labels.len().saturating_sub(1);
    for (j, l) in m.labels.iter().enumerate() {
        let lf = format!("{f}.labels[{j}]");
        if ![1, 2, 4, 8, 16].contains(&l.size) {
            err(format!("{lf}.size"), format!("{} is not 1, 2, 4, 8 or 16", l.size));
        }
        let is_bucket = m.kind == ProgramMetricKind::Histogram && j == last;
        let exported = !is_bucket && !matches!(l.decoder, Decoder::Pod | Decoder::Skip);
        if exported {
            if !is_label_name(&l.name) {
                err(format!("{lf}.name"), format!("{:?} is not a label name", l.name));
            } else if RESERVED_LABELS.contains(&l.name.as_str()) {
                err(
                    format!("{lf}.name"),
                    format!("{} is reserved (owner, probe and histogram labels)", l.name),
                );
            } else if !seen.insert(l.name.clone()) {
                err(format!("{lf}.name"), format!("{} appears more than once", l.name));
            }
        }
        let size_ok = match l.decoder {
            Decoder::Pod => l.size == 4,
            Decoder::InetIp => l.size == 4 || l.size == 16,
            Decoder::Port => l.size == 2,
            Decoder::Uint | Decoder::KernelEnum | Decoder::StaticMap => l.size <= 8,
            Decoder::Skip => true,
        };
        if !size_ok {
            err(
                format!("{lf}.size"),
                format!("{} bytes do not fit decoder {:?}", l.size, l.decoder),
            );
        }
        if is_bucket && l.decoder != Decoder::Uint {
            err(
                format!("{lf}.decoder"),
                "a histogram's last field is its bucket index: decoder uint".into(),
            );
        }
        match (l.decoder, &l.kernel_enum) {
            (Decoder::KernelEnum, None) => err(
                format!("{lf}.kernelEnum"),
                "the kernel_enum decoder needs the enum's name".into(),
            ),
            (Decoder::KernelEnum, Some(e)) if !is_c_identifier(e) => {
                err(format!("{lf}.kernelEnum"), format!("{e:?} is not a C identifier"))
            }
            (Decoder::KernelEnum, Some(_)) => {}
            (_, Some(_)) => err(format!("{lf}.kernelEnum"), "only for the kernel_enum decoder".into()),
            (_, None) => {}
        }
        match (l.decoder, &l.static_map) {
            (Decoder::StaticMap, None) => err(
                format!("{lf}.staticMap"),
                "the static_map decoder needs its values".into(),
            ),
            (Decoder::StaticMap, Some(vals)) => {
                if vals.len() > MAX_STATIC_VALUES {
                    err(format!("{lf}.staticMap"), format!("at most {MAX_STATIC_VALUES} values"));
                }
                for k in vals.keys() {
                    if k.parse::<u64>().is_err() {
                        err(
                            format!("{lf}.staticMap"),
                            format!("key {k:?} is not an unsigned decimal number"),
                        );
                    }
                }
            }
            (_, Some(_)) => err(format!("{lf}.staticMap"), "only for the static_map decoder".into()),
            (_, None) => {}
        }
    }
    let multiplier = m.buckets.as_ref().and_then(|b| b.multiplier).unwrap_or(1.0);
    let bounds = match (m.kind, &m.buckets) {
        (ProgramMetricKind::Counter, None) => Vec::new(),
        (ProgramMetricKind::Counter, Some(_)) => {
            err(format!("{f}.buckets"), "only for a histogram".into());
            Vec::new()
        }
        (ProgramMetricKind::Histogram, None) => {
            err(format!("{f}.buckets"), "a histogram needs its buckets".into());
            Vec::new()
        }
        (ProgramMetricKind::Histogram, Some(b)) => {
            if m.labels.len() < 2 {
                err(
                    format!("{f}.labels"),
                    "a histogram's key has the pod and, last, the bucket".into(),
                );
            }
            let mult = b.multiplier.unwrap_or(1.0);
            if !(mult.is_finite() && mult > 0.0) {
                err(format!("{f}.buckets.multiplier"), "must be a positive number".into());
            }
            match b.kind {
                BucketKind::Log2 => {
                    if b.bounds.is_some() {
                        err(format!("{f}.buckets.bounds"), "only for fixed buckets".into());
                    }
                    let max = b.max.unwrap_or(32);
                    if max >= MAX_LOG2_BUCKETS {
                        err(format!("{f}.buckets.max"), format!("{max} is above 63"));
                    }
                    (0..=max.min(63)).map(|i| (1u64 << i) as f64 * mult).collect()
                }
                BucketKind::Fixed => {
                    if b.max.is_some() {
                        err(format!("{f}.buckets.max"), "only for log2 buckets".into());
                    }
                    let bs = b.bounds.clone().unwrap_or_default();
                    if bs.is_empty() || bs.len() > MAX_STATIC_VALUES {
                        err(
                            format!("{f}.buckets.bounds"),
                            format!("fixed buckets need 1 to {MAX_STATIC_VALUES} bounds"),
                        );
                    }
                    if !bs.windows(2).all(|w| w[0] < w[1]) || bs.iter().any(|b| !b.is_finite()) {
                        err(
                            format!("{f}.buckets.bounds"),
                            "bounds must be finite and increasing".into(),
                        );
                    }
                    bs.iter().map(|b| b * mult).collect()
                }
            }
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(ProgramMetricPlan {
        name: m.name.clone(),
        help: m
            .help
            .clone()
            .unwrap_or_else(|| format!("{} (a user program's map {})", m.name, m.map)),
        kind: m.kind,
        map: m.map.clone(),
        labels: m.labels.clone(),
        bounds,
        multiplier,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(name: &str, size: u32, decoder: Decoder) -> ProgramLabel {
        ProgramLabel::new(name, size, decoder)
    }

    fn opts() -> ProgramOptions {
        ProgramOptions {
            object: ProgramObject {
                config_map: Some(ConfigMapKey {
                    name: "aborts".into(),
                    key: "prog.bpf.o".into(),
                }),
                sha256: Some("AB".repeat(32)),
                path: None,
            },
            metrics: vec![ProgramMetric {
                name: "app_tcp_aborts_total".into(),
                help: None,
                kind: ProgramMetricKind::Counter,
                map: "aborts_by_pod".into(),
                labels: vec![label("pod", 4, Decoder::Pod), label("state", 4, Decoder::Uint)],
                buckets: None,
            }],
        }
    }

    #[test]
    fn a_valid_program_plans_with_its_digest_lower_cased() {
        let p = plan(Some(&opts()), "p").expect("valid");
        assert_eq!(p.sha256.as_deref(), Some("ab".repeat(32).as_str()));
        assert_eq!(p.metrics[0].pod_offset(), Some(0));
        assert_eq!(p.metrics[0].key_size(), 8);
        assert_eq!(p.metrics[0].label_names(), vec!["state".to_string()]);
    }

    fn fields(o: &ProgramOptions) -> Vec<String> {
        plan(Some(o), "p")
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn every_mistake_names_its_field() {
        let mut o = opts();
        o.object.sha256 = None;
        assert_eq!(fields(&o), vec!["p.object.sha256"]);
        o.object.sha256 = Some("xyz".into());
        assert_eq!(fields(&o), vec!["p.object.sha256"]);
        let mut o = opts();
        o.object.path = Some("/x.o".into());
        assert_eq!(fields(&o), vec!["p.object"]);
        let mut o = opts();
        o.metrics[0].name = "netprobe_mine_total".into();
        assert_eq!(fields(&o), vec!["p.metrics[0].name"]);
        let mut o = opts();
        o.metrics[0].name = "app_aborts".into();
        assert_eq!(fields(&o), vec!["p.metrics[0].name"]);
        let mut o = opts();
        o.metrics[0].labels[1].name = "namespace".into();
        assert_eq!(fields(&o), vec!["p.metrics[0].labels[1].name"]);
        let mut o = opts();
        o.metrics[0].labels[0].decoder = Decoder::Uint;
        o.metrics[0].labels[0].name = "slot".into();
        assert_eq!(fields(&o), vec!["p.metrics[0].labels"]);
        let mut o = opts();
        o.metrics[0].labels[1].decoder = Decoder::Port;
        assert_eq!(fields(&o), vec!["p.metrics[0].labels[1].size"]);
        let mut o = opts();
        o.metrics[0].labels[1].decoder = Decoder::KernelEnum;
        assert_eq!(fields(&o), vec!["p.metrics[0].labels[1].kernelEnum"]);
        let mut o = opts();
        o.metrics[0].labels[1].decoder = Decoder::StaticMap;
        o.metrics[0].labels[1].static_map = Some(BTreeMap::from([("one".into(), "x".into())]));
        assert_eq!(fields(&o), vec!["p.metrics[0].labels[1].staticMap"]);
        let mut o = opts();
        o.metrics.push(o.metrics[0].clone());
        assert_eq!(fields(&o), vec!["p.metrics[1].name"]);
        assert_eq!(plan(None, "p").err().map(|e| e[0].field.clone()).as_deref(), Some("p"));
    }

    #[test]
    fn histogram_bounds_are_computed_once_in_the_plan() {
        let mut o = opts();
        o.metrics[0].name = "app_latency_seconds".into();
        o.metrics[0].kind = ProgramMetricKind::Histogram;
        o.metrics[0].labels[1].name = "bucket".into();
        o.metrics[0].buckets = Some(ProgramBuckets {
            kind: BucketKind::Log2,
            max: Some(3),
            bounds: None,
            multiplier: Some(0.5),
        });
        let p = plan(Some(&o), "p").expect("valid");
        assert_eq!(p.metrics[0].bounds, vec![0.5, 1.0, 2.0, 4.0]);
        assert!(p.metrics[0].label_names().is_empty());
        o.metrics[0].buckets = Some(ProgramBuckets {
            kind: BucketKind::Fixed,
            max: None,
            bounds: Some(vec![2.0, 1.0]),
            multiplier: None,
        });
        assert_eq!(fields(&o), vec!["p.metrics[0].buckets.bounds"]);
        o.metrics[0].buckets = None;
        assert_eq!(fields(&o), vec!["p.metrics[0].buckets"]);
    }
}
