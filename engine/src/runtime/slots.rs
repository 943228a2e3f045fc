//! One stack per Podman engine at a time in this process. Under Podman 4.3 (netavark 1.4),
//! tearing down any network with the `isolate` option removes the isolation rules of every other
//! network of that engine, which would break a concurrent stack's isolation checks. So the
//! targets that share a Podman engine (`podman` and `podman-v2`; `podman-rootless` and
//! `podman-rootless-v2`) take turns; Docker stacks and different engines still run in parallel.

use std::sync::{Condvar, Mutex};

use super::{EngineKind, RuntimeKind};

static BUSY: Mutex<[bool; 3]> = Mutex::new([false; 3]);
static FREED: Condvar = Condvar::new();

/// Held while a stack of a Podman engine exists; released on drop. Unlike a `MutexGuard` it may
/// move between threads with the stack that holds it.
#[derive(Debug)]
pub struct EngineSlot(Option<usize>);

impl EngineSlot {
    /// Gives the slot up before the stack goes (a stopped stack that creates and removes nothing
    /// until its teardown, while another stack of the engine runs: the migration drill's source).
    pub fn release(&mut self) {
        if let Some(idx) = self.0.take() {
            BUSY.lock().unwrap_or_else(|p| p.into_inner())[idx] = false;
            FREED.notify_all();
        }
    }
}

/// Waits until no other stack of `kind`'s engine exists in this process (a no-op for Docker).
/// A thread that already holds the slot of the same engine must not ask again.
pub fn acquire(kind: RuntimeKind) -> EngineSlot {
    let idx = match kind.engine() {
        EngineKind::Docker => return EngineSlot(None),
        EngineKind::Podman => 1,
        EngineKind::PodmanRootless => 2,
    };
    let mut busy = BUSY.lock().unwrap_or_else(|p| p.into_inner());
    while busy[idx] {
        busy = FREED.wait(busy).unwrap_or_else(|p| p.into_inner());
    }
    busy[idx] = true;
    EngineSlot(Some(idx))
}

impl Drop for EngineSlot {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn targets_of_one_podman_engine_take_turns() {
        let first = acquire(RuntimeKind::PodmanRootless);
        let t = std::thread::spawn(|| {
            let start = Instant::now();
            let _second = acquire(RuntimeKind::PodmanRootlessV2);
            start.elapsed()
        });
        // Docker never waits.
        drop(acquire(RuntimeKind::Docker));
        std::thread::sleep(Duration::from_millis(200));
        drop(first);
        assert!(t.join().unwrap() >= Duration::from_millis(150));
    }
}
