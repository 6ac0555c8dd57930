//! Mutex access for state whose critical sections never leave it half-written.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Every critical section in this crate is a few field updates that cannot
/// panic midway, so a lock poisoned by a panic elsewhere still guards
/// consistent data and is used as is.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
