//! netprobe-operator: turns NetworkProbe and ClusterNetworkProbe resources
//! into plan ConfigMaps for the agents and aggregates the agents' per-node
//! reports into conditions.
//!
//! Where things happen: [`reconcile`] is the one path both kinds share,
//! [`aggregate`] turns node reports into status, [`cleanup`] removes plans
//! whose source is gone, [`controller`] wires the watches, [`leader`] keeps
//! one replica active.

pub mod aggregate;
pub mod cleanup;
pub mod controller;
pub mod crdgen;
pub mod leader;
pub mod reconcile;
pub mod source;
pub mod telemetry;
