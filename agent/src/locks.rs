//! The agent's one way to take a mutex.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, tolerating poisoning: the agent's mutexes guard plain data (counters, maps with
/// single inserts and removes, health records) that a panic elsewhere cannot leave in a
/// harmful half-updated state, and one panicked request must not take every later one down.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
