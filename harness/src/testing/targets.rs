//! One test body, one case per target: whether a case runs, is skipped, or fails because its
//! target is required here.

use std::io::Write;

use crate::runtime::RuntimeKind;
use crate::session::{self, Availability};

/// The target if a stack can run under it here; else `None` after printing why, for a case of a
/// test parametrised by target (with rstest's `#[case]`). The rules are the harness's own suites':
///
/// - `HYDRA_RUNTIMES` limits the targets (default: all); the others are skipped;
/// - a target this host cannot run (doctor's diagnosis) is skipped with the reason;
/// - a target named in `HYDRA_REQUIRE` that cannot run, or is not selected, panics: a required
///   target never turns into a pass.
///
/// The skip line goes straight to stderr (`SKIP <target>: <reason>`), past the test harness's
/// output capture, so a skipped case is visible in a normal `cargo test` run.
///
/// ```no_run
/// use hydra::testing::target_or_skip;
/// use hydra::RuntimeKind;
///
/// #[rstest::rstest]
/// #[case::docker(RuntimeKind::Docker)]
/// #[case::podman_rootless(RuntimeKind::PodmanRootless)]
/// #[tokio::test]
/// async fn web_is_healthy(#[case] target: RuntimeKind) {
///     let Some(target) = target_or_skip(target) else { return };
///     // start a stack under `target` ...
/// #   let _ = target;
/// }
/// ```
#[track_caller]
pub fn target_or_skip(target: RuntimeKind) -> Option<RuntimeKind> {
    let availability = match session::availability_of(target) {
        Ok(a) => a,
        Err(e) => panic!("HYDRA_RUNTIMES / HYDRA_REQUIRE: {e}"),
    };
    match availability {
        Availability::Use => Some(target),
        Availability::Skip(reason) => {
            // Uncaptured on purpose: libtest captures print!/eprint!, not direct writes.
            let _ = writeln!(std::io::stderr(), "SKIP {target}: {reason}");
            None
        }
        Availability::Broken(reason) => panic!("required target {target} cannot run here: {reason}"),
    }
}
