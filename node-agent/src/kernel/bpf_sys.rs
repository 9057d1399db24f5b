//! The few bpf(2) commands aya 0.14 does not expose: running a program
//! (`prog_run`), a program's recursion misses
//! (runs the kernel skipped because the program was already running on that
//! CPU — events netprobe did not see, which users must be able to see); and
//! the map element commands on byte keys, for user programs' maps, whose
//! key layout is known only at run time.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

/// `offsetof(struct bpf_prog_info, recursion_misses)` (uapi, Linux >= 5.12).
const PROG_INFO_RECURSION_MISSES: usize = 208;

pub fn sys_bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> std::io::Result<libc::c_long> {
    // SAFETY: attr is a zeroed, correctly laid out `union bpf_attr` prefix of
    // 128 bytes that outlives the call; the kernel reads at most `size` bytes.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len() as libc::c_uint) };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(ret)
}

/// A bpf(2) command that returns a new file descriptor.
pub fn bpf_fd(cmd: libc::c_long, attr: &mut [u8; 128]) -> std::io::Result<OwnedFd> {
    let fd = sys_bpf(cmd, attr)?;
    // SAFETY: on success the command returned a new file descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Runs of program `prog` the kernel skipped since it was loaded. Kernels
/// before 5.12 do not report them (0).
pub fn recursion_misses(prog: BorrowedFd<'_>) -> std::io::Result<u64> {
    let mut info = [0u8; PROG_INFO_RECURSION_MISSES + 8];
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&(prog.as_raw_fd() as u32).to_ne_bytes()); // info.bpf_fd
    attr[4..8].copy_from_slice(&(info.len() as u32).to_ne_bytes()); // info.info_len
    attr[8..16].copy_from_slice(&(info.as_mut_ptr() as u64).to_ne_bytes()); // info.info
    sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    // The kernel writes back how much of the struct it filled.
    let filled = u32::from_ne_bytes([attr[4], attr[5], attr[6], attr[7]]) as usize;
    if filled < info.len() {
        return Ok(0);
    }
    let mut v = [0u8; 8];
    v.copy_from_slice(&info[PROG_INFO_RECURSION_MISSES..]);
    Ok(u64::from_ne_bytes(v))
}

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;

/// `union bpf_attr` for the map element commands: the map, a key and a
/// value (or next key) buffer.
fn elem_attr(map: BorrowedFd<'_>, key: Option<&[u8]>, out: Option<&mut [u8]>) -> [u8; 128] {
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&(map.as_raw_fd() as u32).to_ne_bytes());
    let k = key.map_or(0, |k| k.as_ptr() as u64);
    attr[8..16].copy_from_slice(&k.to_ne_bytes());
    let v = out.map_or(0, |v| v.as_mut_ptr() as u64);
    attr[16..24].copy_from_slice(&v.to_ne_bytes());
    attr
}

/// Every key of a map whose keys are `key_size` bytes (a user program's
/// map: its key layout is known only from the spec, at run time). Keys the
/// program adds or deletes during the walk may be missed or repeated, as
/// with any bpf(2) walk; at most `max` keys are returned.
pub fn map_keys(map: BorrowedFd<'_>, key_size: usize, max: usize) -> std::io::Result<Vec<Vec<u8>>> {
    let mut keys = Vec::new();
    let mut next = vec![0u8; key_size];
    let mut cur: Option<Vec<u8>> = None;
    while keys.len() < max {
        let mut attr = elem_attr(map, cur.as_deref(), Some(&mut next));
        match sys_bpf(BPF_MAP_GET_NEXT_KEY, &mut attr) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => break,
            Err(e) => return Err(e),
        }
        keys.push(next.clone());
        cur = Some(next.clone());
    }
    Ok(keys)
}

/// The value at `key` (`out` holds it: `value_size` bytes, or one 8-byte
/// aligned slot per possible CPU for a per-CPU map); false when absent.
pub fn map_lookup(map: BorrowedFd<'_>, key: &[u8], out: &mut [u8]) -> std::io::Result<bool> {
    let mut attr = elem_attr(map, Some(key), Some(out));
    match sys_bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;

/// Write `value` at an existing `key` (BPF_EXIST): zeroing an array entry.
pub fn map_update(map: BorrowedFd<'_>, key: &[u8], value: &[u8]) -> std::io::Result<()> {
    let mut v = value.to_vec();
    let mut attr = elem_attr(map, Some(key), Some(&mut v));
    attr[24..32].copy_from_slice(&2u64.to_ne_bytes()); // flags: BPF_EXIST
    sys_bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(|_| ())
}

/// Delete `key` (absent is not an error).
pub fn map_delete(map: BorrowedFd<'_>, key: &[u8]) -> std::io::Result<()> {
    let mut attr = elem_attr(map, Some(key), None);
    match sys_bpf(BPF_MAP_DELETE_ELEM, &mut attr) {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(e) => Err(e),
    }
}
