//! A program the agent runs itself, never attached: the RTT sampler and the
//! pending-connect sweep, `raw_tp` programs that walk a map with
//! `bpf_for_each_map_elem` (Linux 5.13+), run by BPF_PROG_TEST_RUN
//! (raw_tp: Linux 5.10+). Not a `bpf_map_elem` iterator: some kernels
//! refuse to load those (Linux 6.18 here answers EPERM before verifying a
//! program that returns 0), while a raw_tp program walking the same map
//! loads everywhere netprobe runs. aya 0.14 does not wrap the command.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use crate::kernel::bpf_sys::sys_bpf;

const BPF_PROG_TEST_RUN: libc::c_long = 10;

/// A loaded program the agent runs on demand.
pub struct ProgRun {
    prog: OwnedFd,
}

impl ProgRun {
    /// Keep `prog` (a loaded raw_tp program) to run it.
    pub fn new(prog: impl AsFd) -> std::io::Result<Self> {
        Ok(ProgRun {
            prog: prog.as_fd().try_clone_to_owned()?,
        })
    }

    /// Run the program once, on the calling CPU, for its periodic work;
    /// its return value.
    pub fn run(&self) -> std::io::Result<u32> {
        self.run_with(0)
    }

    /// Run the program once with `arg` as its first context argument (the
    /// walks read it: 0 for the periodic work, slot + 1 to forget a slot).
    pub fn run_with(&self, arg: u64) -> std::io::Result<u32> {
        // The program reads one argument, so the kernel wants at least that
        // much context on every run (ctx_size_in >= the largest offset read).
        let ctx = [arg];
        // union bpf_attr.test: prog_fd (0), retval (4), then data sizes and
        // buffers a raw_tp run leaves zero, ctx_size_in (40), ctx_in (48).
        let mut attr = [0u8; 128];
        attr[0..4].copy_from_slice(&(self.prog.as_raw_fd() as u32).to_ne_bytes());
        attr[40..44].copy_from_slice(&(std::mem::size_of_val(&ctx) as u32).to_ne_bytes());
        attr[48..56].copy_from_slice(&(ctx.as_ptr() as u64).to_ne_bytes());
        sys_bpf(BPF_PROG_TEST_RUN, &mut attr)?;
        Ok(u32::from_ne_bytes([attr[4], attr[5], attr[6], attr[7]]))
    }
}
