//! Concurrency caps: a count of calls in flight per key, and a permit that
//! gives its slot back when dropped — on every path out of a request
//! (answered, refused later, client gone, upstream reset), because the
//! request context that owns it is dropped on all of them.

use std::sync::Arc;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;

pub struct Caps {
    max: u32,
    /// Only keys with calls in flight are present: memory follows load.
    in_flight: DashMap<u64, u32>,
}

#[must_use = "the slot is released when the permit is dropped"]
pub struct Permit {
    caps: Arc<Caps>,
    key: u64,
}

impl Caps {
    pub fn new(max: u32) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            in_flight: DashMap::new(),
        })
    }

    /// A slot for `key`, or `None` when `max` calls are already in flight.
    pub fn try_acquire(self: &Arc<Self>, key: u64) -> Option<Permit> {
        let mut n = self.in_flight.entry(key).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Permit {
            caps: Arc::clone(self),
            key,
        })
    }

    pub fn in_flight(&self, key: u64) -> u32 {
        self.in_flight.get(&key).map_or(0, |n| *n)
    }

    /// Keys with at least one call in flight.
    pub fn keys(&self) -> usize {
        self.in_flight.len()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Entry::Occupied(mut e) = self.caps.in_flight.entry(self.key) {
            let n = e.get_mut();
            *n = n.saturating_sub(1);
            if *n == 0 {
                e.remove();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_come_back_when_dropped() {
        let caps = Caps::new(2);
        let a = caps.try_acquire(1).unwrap();
        let b = caps.try_acquire(1).unwrap();
        assert!(caps.try_acquire(1).is_none());
        assert!(caps.try_acquire(2).is_some(), "other keys are independent");
        drop(a);
        assert_eq!(caps.in_flight(1), 1);
        let c = caps.try_acquire(1).unwrap();
        drop((b, c));
        assert_eq!(caps.keys(), 0, "idle keys leave the map");
    }

    #[test]
    fn permits_dropped_on_other_threads_balance() {
        let caps = Caps::new(1_000_000);
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let caps = caps.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        let p = caps.try_acquire(i % 7).unwrap();
                        if (i + t) % 3 == 0 {
                            std::thread::yield_now();
                        }
                        drop(p);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(caps.keys(), 0);
    }
}
