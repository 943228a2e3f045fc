//! A stack of your own, tested from async tests with one case per target.
//!
//! Each case starts the second stack under its target (absent targets print `SKIP <target>:
//! <reason>` and return; `HYDRA_REQUIRE` makes them fail instead), talks to it the way a user's
//! test would, runs the spec's checks, and takes it down. Run with
//! `cargo test -p hydra-examples`; `HYDRA_RUNTIMES=docker` narrows the targets.

use std::path::PathBuf;

use hydra::outcome::Area;
use hydra::testing::{target_or_skip, StackBuilder};
use hydra::RuntimeKind;
use rstest::rstest;

/// The stack's spec; it names the compose file next to it.
fn spec() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/second-stack/spec.toml")
}

#[rstest]
#[case::docker(RuntimeKind::Docker)]
#[case::docker_v1(RuntimeKind::DockerV1)]
#[case::podman(RuntimeKind::Podman)]
#[case::podman_v2(RuntimeKind::PodmanV2)]
#[case::podman_rootless(RuntimeKind::PodmanRootless)]
#[case::podman_rootless_v2(RuntimeKind::PodmanRootlessV2)]
#[tokio::test]
async fn web_serves_its_page_and_the_worker_stays_out_of_reach(#[case] target: RuntimeKind) {
    let Some(target) = target_or_skip(target) else { return };
    let stack = StackBuilder::new(target)
        .spec(spec())
        .start_async()
        .await
        .unwrap_or_else(|e| panic!("second stack under {target}: {e}"));

    // The published port, reached over loopback with the test's own async HTTP client.
    let url = stack.url("web", 8000, "/health.json").await.unwrap();
    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    let body = response.text().await.unwrap();
    assert!(body.contains("\"status\": \"ok\""), "{url} answered {body}");

    // The worker publishes nothing: asking for its port is an error that says what it publishes.
    let err = stack.host_port("worker", 9000).await.unwrap_err().to_string();
    assert!(
        err.contains("does not publish port 9000/tcp (it publishes: nothing)"),
        "{err}"
    );

    // Inside the containers: the worker, on its own network, cannot resolve web.
    let lookup = stack.exec("worker", &["getent", "hosts", "web"]).await.unwrap();
    assert_eq!(lookup.status, Some(2), "worker resolved web: {}", lookup.stdout);

    // web's log shows the request this test made.
    let logs = stack.logs("web").await.unwrap();
    assert!(logs.contains("GET /health.json"), "web's logs:\n{logs}");

    // Typed inspect, the same for both engines.
    let web = stack.container("web").await.unwrap();
    assert!(web.state.running, "web is {}", web.state.status);
    assert!(
        web.published().iter().all(|p| p.host_ip == "127.0.0.1"),
        "{:?}",
        web.published()
    );

    // The spec's checks, one area at a time.
    for area in [Area::Dns, Area::Ports, Area::Health] {
        stack.check(area).await.unwrap().assert_passed();
    }

    // down() verifies that nothing carrying the run's labels is left, and fails if something is.
    stack.down().await.unwrap();
}

/// The blocking handle is safe inside a tokio runtime too, even a single-threaded one: its calls
/// (including the health checks' blocking HTTP client, which panics on a runtime thread) run on
/// a thread of their own.
#[tokio::test(flavor = "current_thread")]
async fn the_blocking_handle_does_not_panic_inside_a_tokio_test() {
    let Some(target) = target_or_skip(RuntimeKind::Docker) else {
        return;
    };
    let stack = StackBuilder::new(target).spec(spec()).start().unwrap();
    assert!(stack.host_port("web", 8000).unwrap() > 0);
    stack.check(Area::Health).unwrap().assert_passed();
    stack.down().unwrap();
}
