//! netprobe-agent: turns probe plans into eBPF programs on one node and
//! kernel counters into Prometheus series.
//!
//! Where things happen: [`pipeline`] is pure (which pods each plan selects,
//! what that asks of the kernel, how counters become series); [`kernel`]
//! makes it kernel state and reads it back; [`cluster`] is the Kubernetes
//! I/O (watches, the pod index, status); [`standalone`] runs it all from
//! manifests on disk without Kubernetes; [`agent`] holds the kernel and the
//! pipeline together for both modes; [`catalog`] is what each probe type is
//! on a node, one module per type; [`cgroups`] finds cgroups and network
//! namespaces on the host.

pub mod agent;
pub mod catalog;
pub mod cgroups;
pub mod cluster;
pub mod kernel;
pub mod pipeline;
pub mod standalone;
