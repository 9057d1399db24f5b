//! netprobe-agent: turns probe plans into eBPF programs on one node and
//! kernel counters into Prometheus series.
//!
//! Where things happen: [`desired`] is what the plans ask for (pure),
//! [`manager`] makes it kernel state ([`slots`] and [`counters`] hold each
//! pod's counters), [`collector`] turns kernel state into metrics, [`cgroups`] finds pods and cgroups, [`standalone`] runs it all
//! from manifests on disk without Kubernetes.

pub mod agent;
pub mod bpf_sys;
pub mod cgroups;
pub mod cluster;
pub mod collector;
pub mod counters;
pub mod desired;
pub mod iter;
pub mod manager;
pub mod podindex;
pub mod selection;
pub mod slots;
pub mod standalone;
pub mod status;
