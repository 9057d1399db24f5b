//! Peer classes, shared by the TCP probe types that count per connection
//! (TcpRetransmits, TcpResets, TcpConnectLatency): which labels say where
//! the other end is, in bounded classes rather than raw addresses, and the
//! user's CIDR classes for external peers.

use std::collections::BTreeSet;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::FieldError;

/// Classes a probe may declare, and CIDRs per class: each class is at most
/// one value of `peer_class`, so these bound its series.
pub const MAX_CLASSES: usize = 32;
pub const MAX_CIDRS_PER_CLASS: usize = 16;

/// A label that says where a connection's other end is. Every one is
/// bounded by the cluster's size or the spec, never by the traffic.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerLabel {
    /// pod, node, service, external or host.
    #[serde(rename = "peer_kind")]
    PeerKind,
    /// The node a pod or node peer is on (from the Nodes' addresses and
    /// pod CIDRs).
    #[serde(rename = "peer_node")]
    PeerNode,
    /// The zone (`topology.kubernetes.io/zone`) of a pod or node peer.
    #[serde(rename = "peer_zone")]
    PeerZone,
    /// The user's class of an external peer (`classes`), else `external`.
    #[serde(rename = "peer_class")]
    PeerClass,
    /// `client` when the pod opened the connection, `server` when it accepted it.
    #[serde(rename = "role")]
    Role,
    /// The server's port in both roles, never an ephemeral port.
    #[serde(rename = "port")]
    Port,
    /// This node's zone, so a zone-to-zone matrix is one query.
    #[serde(rename = "zone")]
    Zone,
}

impl PeerLabel {
    pub fn as_str(self) -> &'static str {
        match self {
            PeerLabel::PeerKind => "peer_kind",
            PeerLabel::PeerNode => "peer_node",
            PeerLabel::PeerZone => "peer_zone",
            PeerLabel::PeerClass => "peer_class",
            PeerLabel::Role => "role",
            PeerLabel::Port => "port",
            PeerLabel::Zone => "zone",
        }
    }
}

/// A named set of CIDRs, for peers outside the cluster.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PeerClass {
    /// The `peer_class` label value: lowercase letters, digits and `-`,
    /// at most 63 characters.
    pub name: String,
    /// IPv4 or IPv6 prefixes, for example `10.20.0.0/16` or `fd20::/48`.
    /// A peer in several classes takes the one with the longest prefix.
    #[schemars(length(min = 1, max = 16))]
    pub cidrs: Vec<String>,
}

/// Peer labels of a probe's series.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PeersOptions {
    /// Which peer labels the series carry: peer_kind, peer_node, peer_zone,
    /// peer_class, role, port, zone. Each multiplies the probe's series by
    /// the number of its values (docs/probes.md gives the bound). Defaults
    /// to peer_kind, role and port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<PeerLabel>>,

    /// Named CIDR classes for peers outside the cluster (at most 32, each
    /// with at most 16 CIDRs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub classes: Vec<PeerClass>,
}

/// The planned form: labels in canonical order, classes with normalized
/// CIDRs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PeersPlan {
    pub labels: Vec<PeerLabel>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<PeerClassPlan>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PeerClassPlan {
    pub name: String,
    pub cidrs: Vec<IpNet>,
}

impl PeersPlan {
    pub fn has(&self, l: PeerLabel) -> bool {
        self.labels.contains(&l)
    }

    /// The user's class of `addr`: the class with the longest matching
    /// prefix (the first declared on a tie), if any.
    pub fn class_of(&self, addr: std::net::IpAddr) -> Option<&str> {
        let mut best: Option<(u8, &str)> = None;
        for c in &self.classes {
            for n in &c.cidrs {
                if n.contains(&addr) && best.is_none_or(|(len, _)| n.prefix_len() > len) {
                    best = Some((n.prefix_len(), &c.name));
                }
            }
        }
        best.map(|(_, n)| n)
    }
}

fn valid_class_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Names the kinds use for peers outside any class; a class may not take them.
const RESERVED: [&str; 6] = ["pod", "node", "service", "external", "host", "unknown"];

pub(crate) fn plan(opts: &PeersOptions, field: &str) -> Result<PeersPlan, Vec<FieldError>> {
    let mut errors = Vec::new();
    let labels: BTreeSet<PeerLabel> = match &opts.labels {
        None => [PeerLabel::PeerKind, PeerLabel::Role, PeerLabel::Port].into(),
        Some(l) if l.is_empty() => {
            errors.push(FieldError::new(
                format!("{field}.labels"),
                "must name at least one label (omit peers to export none)",
            ));
            BTreeSet::new()
        }
        Some(l) => l.iter().copied().collect(),
    };
    if opts.classes.len() > MAX_CLASSES {
        errors.push(FieldError::new(
            format!("{field}.classes"),
            format!("at most {MAX_CLASSES} classes (has {})", opts.classes.len()),
        ));
    }
    let mut names = BTreeSet::new();
    let mut classes = Vec::new();
    for (i, c) in opts.classes.iter().enumerate() {
        let f = format!("{field}.classes[{i}]");
        if !valid_class_name(&c.name) {
            errors.push(FieldError::new(
                format!("{f}.name"),
                format!(
                    "{:?} is not a class name (lowercase letters, digits and '-', at most 63)",
                    c.name
                ),
            ));
        } else if RESERVED.contains(&c.name.as_str()) {
            errors.push(FieldError::new(
                format!("{f}.name"),
                format!("{:?} is a peer kind, not a class name", c.name),
            ));
        } else if !names.insert(c.name.as_str()) {
            errors.push(FieldError::new(
                format!("{f}.name"),
                format!("{:?} is declared twice", c.name),
            ));
        }
        if c.cidrs.is_empty() || c.cidrs.len() > MAX_CIDRS_PER_CLASS {
            errors.push(FieldError::new(
                format!("{f}.cidrs"),
                format!("needs 1 to {MAX_CIDRS_PER_CLASS} CIDRs (has {})", c.cidrs.len()),
            ));
        }
        let mut cidrs = Vec::new();
        for (j, s) in c.cidrs.iter().enumerate() {
            match s.parse::<IpNet>() {
                Ok(n) => cidrs.push(n.trunc()),
                Err(_) => errors.push(FieldError::new(
                    format!("{f}.cidrs[{j}]"),
                    format!("{s:?} is not an IPv4 or IPv6 CIDR (like 10.20.0.0/16 or fd20::/48)"),
                )),
            }
        }
        classes.push(PeerClassPlan {
            name: c.name.clone(),
            cidrs,
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(PeersPlan {
        labels: labels.into_iter().collect(),
        classes,
    })
}

/// A type's optional peers, planned.
pub(crate) fn plan_opt(opts: Option<&PeersOptions>, field: &str) -> Result<Option<PeersPlan>, Vec<FieldError>> {
    opts.map(|o| plan(o, &format!("{field}.peers"))).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(yaml: &str) -> PeersOptions {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn defaults_to_kind_role_and_port() {
        let p = plan(&PeersOptions::default(), "f").unwrap();
        assert_eq!(p.labels, vec![PeerLabel::PeerKind, PeerLabel::Role, PeerLabel::Port]);
    }

    #[test]
    fn classes_take_the_longest_prefix_and_normalize() {
        let p = plan(
            &opts("{labels: [peer_class], classes: [{name: wide, cidrs: [10.0.0.0/8]}, {name: narrow, cidrs: [10.20.1.7/16, 'fd20::/48']}]}"),
            "f",
        )
        .unwrap();
        assert_eq!(p.classes[1].cidrs[0].to_string(), "10.20.0.0/16");
        assert_eq!(p.class_of("10.20.3.4".parse().unwrap()), Some("narrow"));
        assert_eq!(p.class_of("10.21.3.4".parse().unwrap()), Some("wide"));
        assert_eq!(p.class_of("fd20::1".parse().unwrap()), Some("narrow"));
        assert_eq!(p.class_of("192.0.2.1".parse().unwrap()), None);
    }

    #[test]
    fn bad_classes_name_their_field() {
        let e = plan(
            &opts("{classes: [{name: Payments, cidrs: [10.0.0.0/33]}, {name: external, cidrs: []}, {name: a, cidrs: [x]}, {name: a, cidrs: ['::/0']}]}"),
            "spec.probes[0].tcpRetransmits.peers",
        )
        .unwrap_err();
        let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "spec.probes[0].tcpRetransmits.peers.classes[0].name",
                "spec.probes[0].tcpRetransmits.peers.classes[0].cidrs[0]",
                "spec.probes[0].tcpRetransmits.peers.classes[1].name",
                "spec.probes[0].tcpRetransmits.peers.classes[1].cidrs",
                "spec.probes[0].tcpRetransmits.peers.classes[2].cidrs[0]",
                "spec.probes[0].tcpRetransmits.peers.classes[3].name",
            ]
        );
        assert!(plan(&opts("{labels: []}"), "f").is_err());
    }
}
