//! The pure pipeline: [`selection`] decides which pods each plan selects on
//! this node, [`desired`] what that asks of the kernel, and [`collector`]
//! turns kernel counters back into each plan's series. No I/O.

pub mod collector;
pub mod desired;
pub mod selection;
