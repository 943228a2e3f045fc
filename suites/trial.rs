//! One rule for turning a runtime's availability into a trial, shared by every engine suite (the
//! `suites/` tests and the CLI-driving ones in `harness/tests/` include this same file): usable
//! runs the check; absent and not required is an ignored trial whose reason is printed; required
//! but unusable is a failing trial that says why.

use hydra::runtime::RuntimeKind;
use hydra::session::Availability;
use libtest_mimic::{Failed, Trial};

/// `HYDRA_RUNTIMES` (default: all) diagnosed by doctor; `HYDRA_REQUIRE` turns a skip into a failure.
pub fn runtimes() -> Vec<(RuntimeKind, Availability)> {
    hydra::session::availability(&[], &[]).expect("HYDRA_RUNTIMES / HYDRA_REQUIRE")
}

/// The targets the negative-fixture suites (`posture`, `overlays`) run under: one per engine,
/// each with the compose tool their expected findings were recorded with (docker-compose 1.29 on
/// Docker: its `security_opt` merge decides which planted seccomp option wins). The Compose v2
/// targets run the whole spec in the `migration` suite.
pub const FIXTURE_TARGETS: [RuntimeKind; 3] = [RuntimeKind::DockerV1, RuntimeKind::Podman, RuntimeKind::PodmanRootless];

/// [`runtimes`], only those of [`FIXTURE_TARGETS`].
pub fn fixture_runtimes() -> Vec<(RuntimeKind, Availability)> {
    runtimes()
        .into_iter()
        .filter(|(k, _)| FIXTURE_TARGETS.contains(k))
        .collect()
}

/// The trial `name` for a runtime in the state `availability`, running `check` when usable.
pub fn trial<F>(name: String, availability: &Availability, check: F) -> Trial
where
    F: FnOnce() -> Result<(), Failed> + Send + 'static,
{
    match availability {
        Availability::Use => Trial::test(name, check),
        Availability::Skip(reason) => {
            eprintln!("SKIP {name}: {reason}");
            Trial::test(name, || Ok(())).with_ignored_flag(true)
        }
        Availability::Broken(reason) => {
            let reason = reason.clone();
            Trial::test(name, move || Err(format!("required runtime unusable: {reason}").into()))
        }
    }
}
