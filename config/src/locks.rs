//! Locks that outlive a panic elsewhere, for the gateway and control alike:
//! every lock in Sluice guards state updated in one step (counters, maps,
//! a current value), so after a panicking holder the data is still whole
//! and the lock is taken as usual rather than failing every later caller.

use std::sync::{LockResult, PoisonError};

pub trait Recover<G> {
    /// The guard, whether or not a holder panicked.
    fn recover(self) -> G;
}

impl<G> Recover<G> for LockResult<G> {
    fn recover(self) -> G {
        self.unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::Recover;

    #[test]
    fn a_poisoned_lock_is_taken_as_usual() {
        let m = std::sync::Arc::new(std::sync::Mutex::new(1));
        let held = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = held.lock().recover();
            panic!("poison it");
        })
        .join();
        assert!(m.is_poisoned());
        *m.lock().recover() += 1;
        assert_eq!(*m.lock().recover(), 2);
    }
}
