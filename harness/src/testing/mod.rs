//! Use Hydra from your own tests: bring your own compose stack up under a target, reach its
//! services, run the spec's checks on demand, and tear everything down, the way testcontainers
//! does for single containers.
//!
//! - [`StackBuilder`] says what to start (compose files, spec, target, bind address, deadline,
//!   keep-on-failure). Nothing defaults to this repository's own stack: paths are yours.
//! - [`RunningStack`] is the blocking handle; [`AsyncStack`] the same handle for async tests. The
//!   harness's checks block (HTTP, PostgreSQL, engine commands), so the async handle runs every
//!   call on tokio's blocking pool: safe inside `#[tokio::test]`.
//! - [`target_or_skip`] gives one test body one case per target, with the same rules as the
//!   harness's own suites: an absent target is a visible skip, a required one (`HYDRA_REQUIRE`) a
//!   failure.
//!
//! ```no_run
//! use hydra::testing::{target_or_skip, StackBuilder};
//! use hydra::RuntimeKind;
//!
//! # async fn example() -> hydra::Result<()> {
//! let Some(target) = target_or_skip(RuntimeKind::PodmanRootless) else { return Ok(()) };
//! let stack = StackBuilder::new(target)
//!     .spec("tests/stack/spec.toml")
//!     .start_async()
//!     .await?;
//! let url = stack.url("web", 8000, "/health.json").await?;
//! let body = reqwest::get(&url).await.unwrap().text().await.unwrap();
//! assert!(body.contains("ok"));
//! stack.check(hydra::outcome::Area::Dns).await?.assert_passed();
//! stack.down().await?;
//! # Ok(())
//! # }
//! ```

mod asynchronous;
mod builder;
mod outcomes;
mod running;
mod targets;

pub use asynchronous::AsyncStack;
pub use builder::StackBuilder;
pub use outcomes::Outcomes;
pub use running::{ExecOutput, RunningStack, EXEC_TIMEOUT};
pub use targets::target_or_skip;

/// Runs `f` where it may block: inline outside any tokio runtime, else on a thread of its own (a
/// runtime's thread must not start another runtime, which the checks' HTTP and PostgreSQL clients
/// do, nor drop one).
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| s.spawn(f).join()).unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// Runs `f` on tokio's blocking pool and waits for it without blocking the runtime; a panic in
/// `f` continues in the caller.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("a blocking task of the stack was cancelled: {e}"),
    }
}
