//! One stack per Podman engine at a time in this process. Under Podman 4.3 (netavark 1.4),
//! tearing down any network with the `isolate` option removes the isolation rules of every other
//! network of that engine, which would break a concurrent stack's isolation checks. So the
//! targets that share a Podman engine (`podman` and `podman-v2`; `podman-rootless` and
//! `podman-rootless-v2`) take turns; Docker stacks and different engines still run in parallel.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{EngineKind, RuntimeKind};
use crate::error::{HarnessError, Result};

/// How long a stack waits for the other stack of its Podman engine: a whole validate of another
/// target (up, every check, down) fits in it many times over.
pub const SLOT_WAIT: Duration = Duration::from_secs(45 * 60);

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

/// Waits until no other stack of `kind`'s engine exists in this process (a no-op for Docker),
/// for at most `deadline`, and no longer once Ctrl-C was pressed. A thread that already holds the
/// slot of the same engine must not ask again.
pub fn acquire(kind: RuntimeKind, deadline: Duration) -> Result<EngineSlot> {
    acquire_unless(kind, deadline, &super::exec::is_cancelled)
}

fn acquire_unless(kind: RuntimeKind, deadline: Duration, cancelled: &dyn Fn() -> bool) -> Result<EngineSlot> {
    let idx = match kind.engine() {
        EngineKind::Docker => return Ok(EngineSlot(None)),
        EngineKind::Podman => 1,
        EngineKind::PodmanRootless => 2,
    };
    let start = Instant::now();
    let mut busy = BUSY.lock().unwrap_or_else(|p| p.into_inner());
    while busy[idx] {
        if cancelled() {
            return Err(HarnessError::Interrupted);
        }
        if start.elapsed() >= deadline {
            return Err(HarnessError::usage(format!(
                "{kind}: waited {} s for this process's other stack on the same Podman engine to end",
                deadline.as_secs()
            ))
            .with_hint("one stack per Podman engine runs at a time (netavark 1.4 `isolate` teardown); run fewer targets of one engine together"));
        }
        busy = FREED
            .wait_timeout(busy, super::exec::POLL)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
    busy[idx] = true;
    Ok(EngineSlot(Some(idx)))
}

impl Drop for EngineSlot {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_of_one_podman_engine_take_turns() {
        let first = acquire(RuntimeKind::PodmanRootless, SLOT_WAIT).unwrap();
        let t = std::thread::spawn(|| {
            let start = Instant::now();
            let _second = acquire(RuntimeKind::PodmanRootlessV2, SLOT_WAIT).unwrap();
            start.elapsed()
        });
        // Docker never waits.
        drop(acquire(RuntimeKind::Docker, Duration::ZERO).unwrap());
        std::thread::sleep(Duration::from_millis(200));
        drop(first);
        assert!(t.join().unwrap() >= Duration::from_millis(150));
    }

    #[test]
    fn a_wait_for_the_slot_ends_at_its_deadline_or_on_ctrl_c() {
        // The rootful engine's slot: the other test of this module takes the rootless one.
        let _held = acquire(RuntimeKind::Podman, SLOT_WAIT).unwrap();
        let t = std::thread::spawn(|| {
            let start = Instant::now();
            let late = acquire_unless(RuntimeKind::PodmanV2, Duration::from_millis(300), &|| false);
            let cancelled = acquire_unless(RuntimeKind::PodmanV2, SLOT_WAIT, &|| true);
            (start.elapsed(), late.map(|_| ()), cancelled.map(|_| ()))
        });
        let (took, late, cancelled) = t.join().unwrap();
        assert!(late.unwrap_err().to_string().contains("waited 0 s"));
        assert!(matches!(cancelled, Err(HarnessError::Interrupted)));
        assert!(took < Duration::from_secs(3), "{took:?}");
    }
}
