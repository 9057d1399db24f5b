//! Pod slots: the index of a pod's counters in the kernel's per-slot maps.
//!
//! The fixed counters live in a per-CPU array (an event costs an inlined
//! array access instead of a hash lookup), so slots are bounded and must be
//! reused. A freed slot is reused only after a quarantine: a program that
//! resolved the slot just before the pod was removed may still be counting
//! into it (programs run under RCU for microseconds; every later event sees
//! the new configuration generation and resolves again), and that count must
//! not land on the next pod. The manager zeroes a reused slot's counters when
//! it hands it out. Never-used slots are handed out first, so reuse starts
//! only after `capacity` pods have come and gone.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// How long a freed slot rests before it is reused: orders of magnitude
/// above the longest a program holds a resolved slot.
pub const QUARANTINE: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct Slots {
    by_key: BTreeMap<String, u32>,
    /// Freed slots, oldest first, with when they were freed.
    free: VecDeque<(u32, Instant)>,
    next: u32,
    capacity: u32,
    quarantine: Duration,
}

/// A slot handed out; `reused` means its counters must be zeroed first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Assigned {
    pub slot: u32,
    pub reused: bool,
}

impl Slots {
    pub fn new(capacity: u32, quarantine: Duration) -> Self {
        Slots {
            by_key: BTreeMap::new(),
            free: VecDeque::new(),
            next: 0,
            capacity,
            quarantine,
        }
    }

    /// Slot of every target that has one.
    pub fn by_key(&self) -> &BTreeMap<String, u32> {
        &self.by_key
    }

    /// The slot of `key`, or a new one for it; `None` when every slot is in
    /// use or still in quarantine.
    pub fn assign(&mut self, key: &str, now: Instant) -> Option<Assigned> {
        if let Some(slot) = self.by_key.get(key) {
            return Some(Assigned {
                slot: *slot,
                reused: false,
            });
        }
        let assigned = if self.next < self.capacity {
            self.next += 1;
            Assigned {
                slot: self.next - 1,
                reused: false,
            }
        } else {
            match self.free.front() {
                Some((slot, freed)) if now.saturating_duration_since(*freed) >= self.quarantine => {
                    let slot = *slot;
                    self.free.pop_front();
                    Assigned { slot, reused: true }
                }
                _ => return None,
            }
        };
        self.by_key.insert(key.to_string(), assigned.slot);
        Some(assigned)
    }

    /// Give `key`'s slot back; it rests in quarantine before reuse.
    pub fn release(&mut self, key: &str, now: Instant) -> Option<u32> {
        let slot = self.by_key.remove(key)?;
        self.free.push_back((slot, now));
        Some(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_slots_first_then_the_oldest_freed_after_quarantine() {
        let t0 = Instant::now();
        let q = Duration::from_secs(5);
        let mut s = Slots::new(2, q);
        assert_eq!(s.assign("a", t0), Some(Assigned { slot: 0, reused: false }));
        assert_eq!(s.assign("b", t0), Some(Assigned { slot: 1, reused: false }));
        // Same key: same slot, nothing to zero.
        assert_eq!(s.assign("a", t0), Some(Assigned { slot: 0, reused: false }));
        assert_eq!(s.assign("c", t0), None, "all slots in use");
        assert_eq!(s.release("b", t0), Some(1));
        assert_eq!(s.release("a", t0 + Duration::from_secs(1)), Some(0));
        assert_eq!(s.release("a", t0), None, "already released");
        assert_eq!(
            s.assign("c", t0 + Duration::from_secs(4)),
            None,
            "slot 1 still in quarantine"
        );
        assert_eq!(
            s.assign("c", t0 + q),
            Some(Assigned { slot: 1, reused: true }),
            "oldest freed slot once its quarantine is over"
        );
        assert_eq!(s.assign("d", t0 + q), None, "slot 0 freed a second later");
        assert_eq!(
            s.assign("d", t0 + q + Duration::from_secs(1)),
            Some(Assigned { slot: 0, reused: true })
        );
        assert_eq!(s.by_key().get("c"), Some(&1));
        assert_eq!(s.by_key().get("d"), Some(&0));
        assert_eq!(s.by_key().len(), 2);
    }
}
