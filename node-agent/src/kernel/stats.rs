//! What a program costs in the kernel, for netprobe's own programs and
//! users' alike (the agent exports it as `netprobe_agent_program_*`).

use netprobe_api::ProbeType;

/// Kernel-side cost of one program, when `kernel.bpf_stats_enabled=1`.
#[derive(Clone, Debug)]
pub struct ProgramStats {
    /// The function's name (a user program's: `<probe>/<function>`).
    pub program: String,
    pub probe: ProbeType,
    pub run_time_ns: u64,
    pub run_count: u64,
    /// Runs the kernel skipped: the program was already running on that CPU
    /// (an event in a softirq that interrupted the same program). Always
    /// counted, also without bpf_stats.
    pub recursion_misses: u64,
}
