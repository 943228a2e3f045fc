//! Security posture as a check area: planned and evaluated by [`crate::posture`], which knows the
//! rules; this only fits it into the session.

use std::time::Instant;

use super::{Announce, CheckArea, CheckId, Recorder, Selected};
use crate::compose::file::ComposeFile;
use crate::outcome::Verdict;
use crate::spec::Spec;
use crate::stack::Stack;

/// Every posture rule for every service (read-only).
pub struct Posture {
    /// Every rule for every compose service, as [`crate::posture::plan`] names them.
    pub ids: Vec<CheckId>,
}

impl CheckArea for Posture {
    fn plan(_spec: &Spec, compose: &ComposeFile) -> Self {
        Self {
            ids: crate::posture::plan(compose.services.keys()),
        }
    }

    fn announce(&self) -> Announce {
        Announce::WhenSelected("posture")
    }

    fn ids(&self) -> Vec<CheckId> {
        self.ids.clone()
    }

    /// One evaluation covers every service; it runs only when some posture check is selected.
    fn run(&self, stack: &Stack, spec: &Spec, selected: Selected<'_>, rec: &mut Recorder) {
        if !self.ids.iter().any(selected) {
            return;
        }
        let t = Instant::now();
        match crate::posture::evaluate(stack, &spec.posture_config()) {
            Ok(outcomes) => rec.outcomes.extend(outcomes.into_iter().filter(|o| selected(&o.id))),
            Err(e) => {
                for id in self.ids.iter().filter(|i| selected(i)) {
                    rec.push(
                        id,
                        None,
                        Verdict::Fail,
                        format!("posture evaluation failed: {e}"),
                        t.elapsed().as_secs_f64(),
                    );
                }
            }
        }
    }
}
