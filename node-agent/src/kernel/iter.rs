//! A BPF map-element iterator link. aya's `Iter::attach` cannot name the map
//! an iterator walks, so this small piece makes the two bpf(2) calls itself:
//! BPF_LINK_CREATE with the map in `iter_info`, then BPF_ITER_CREATE each time
//! the iterator is run. The link is an owned fd: closing it (drop, or the
//! process dying) detaches the iterator.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use crate::kernel::bpf_sys::bpf_fd as bpf;

const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_ITER_CREATE: libc::c_long = 33;
const BPF_TRACE_ITER: u32 = 28;

/// An attached map iterator.
pub struct MapIterLink {
    link: OwnedFd,
}

impl MapIterLink {
    /// Attach the loaded iterator program `prog` to walk `map`.
    pub fn attach(prog: impl AsFd, map: impl AsFd) -> std::io::Result<Self> {
        // union bpf_iter_link_info { struct { __u32 map_fd; } map; ... }
        let mut info = [0u8; 16];
        info[..4].copy_from_slice(&(map.as_fd().as_raw_fd() as u32).to_ne_bytes());
        let mut attr = [0u8; 128];
        attr[0..4].copy_from_slice(&(prog.as_fd().as_raw_fd() as u32).to_ne_bytes()); // prog_fd
        attr[8..12].copy_from_slice(&BPF_TRACE_ITER.to_ne_bytes()); // attach_type
        attr[16..24].copy_from_slice(&(info.as_ptr() as u64).to_ne_bytes()); // iter_info
        attr[24..28].copy_from_slice(&(info.len() as u32).to_ne_bytes()); // iter_info_len
        let link = bpf(BPF_LINK_CREATE, &mut attr)?;
        Ok(MapIterLink { link })
    }

    /// Run the iterator once over every element (the program does the work;
    /// its output, if any, is discarded). Returns bytes the program printed.
    pub fn run(&self) -> std::io::Result<usize> {
        let mut attr = [0u8; 128];
        attr[0..4].copy_from_slice(&(self.link.as_raw_fd() as u32).to_ne_bytes());
        let fd = bpf(BPF_ITER_CREATE, &mut attr)?;
        let mut f = File::from(fd);
        let mut buf = [0u8; 4096];
        let mut total = 0;
        loop {
            match f.read(&mut buf) {
                Ok(0) => return Ok(total),
                Ok(n) => total += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}
