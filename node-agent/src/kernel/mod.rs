//! The kernel side: where a plan becomes kernel state. [`manager`] loads the
//! object and attaches the programs of the probe types in use, [`catalog`]
//! says what each probe type is in the kernel, [`slots`] and [`counters`]
//! hold and read each pod's counters, [`programs`] loads and reads users'
//! own objects (Program probes), [`stats`] is what any of them costs,
//! [`prog_run`] and [`bpf_sys`] are the syscalls aya does not wrap.

pub mod bpf_sys;
pub mod counters;
pub mod error;
pub mod manager;
pub mod prog_run;
pub mod programs;
pub mod slots;
pub mod stats;
