//! Kernel-tier fixtures live in `tests/pods` (shared with the system tests).
pub use netprobe_pods::*;
