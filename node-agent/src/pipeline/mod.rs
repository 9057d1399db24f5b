//! The pure pipeline: [`selection`] decides which pods each plan selects on
//! this node, [`desired`] what that asks of the kernel, [`collector`]
//! turns kernel counters back into each plan's series, and [`peers`] says
//! where a connection's other end is. No I/O.

pub mod collector;
pub mod desired;
pub mod peers;
pub mod selection;
