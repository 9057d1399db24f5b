//! netprobe-operator: turns NetworkProbe and ClusterNetworkProbe resources
//! into plan ConfigMaps for the agents and aggregates the agents' per-node
//! reports into conditions.
//!
//! Where things happen: [`reconcile`] is the one path both kinds share,
//! [`reports`] follows the nodes' reports, [`aggregate`] turns them into
//! status, [`cleanup`] removes plans
//! whose source is gone, [`peerindex`] publishes the nodes agents need for
//! peer classes, [`controller`] wires the watches, [`leader`] keeps one
//! replica active.

pub mod aggregate;
pub mod cleanup;
pub mod controller;
pub mod crdgen;
pub mod leader;
pub mod peerindex;
pub mod reconcile;
pub mod reports;
pub mod source;
pub mod telemetry;
