//! Engine suites over the Hydra harness, as test targets (`migration`, `overlays`, `posture`). The
//! library holds what they share: how a runtime's availability becomes a trial.

mod trial;

pub use trial::{
    engine_to_itself, engines_in_turn, engines_side_by_side, fixture_runtimes, runtimes, trial, FIXTURE_TARGETS,
};
