//! Podman 4.3's rootless network namespace without the runtime directory Podman mounts into it,
//! for real: with that directory gone while a container holds the namespace (what a Podman process
//! killed while it set the namespace up leaves), every later start on a network fails with
//! "failed to mount runtime directory for rootless netns" (which podman-compose reports with exit
//! 0). The harness's check before each rootless stack replaces it, and leaves a sound namespace
//! that a running container uses alone.
//!
//! A binary of its own: it breaks the rootless engine's network on purpose, so nothing may run
//! beside it. Trial: `podman_rootless::lifecycle::broken_rootless_netns_is_replaced`.

mod common;

use std::time::Duration;

use hydra::runtime::rootless_netns::repair_stale;
use hydra::runtime::{exec, Interrupt, ObjectKind, Runtime, RuntimeKind};
use libtest_mimic::{Arguments, Failed};

const LABEL: &str = "io.hydra.test=rootless-netns";

fn main() {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    for (kind, availability) in common::runtimes() {
        // The namespace belongs to the rootless engine: once, not per compose tool.
        if kind == RuntimeKind::PodmanRootless {
            let name = format!("{}::lifecycle::broken_rootless_netns_is_replaced", kind.ident());
            trials.push(common::trial(name, &availability, move || {
                broken_netns_is_replaced(kind)
            }));
        }
    }
    libtest_mimic::run(&args, trials).exit();
}

/// Removes what the trial made (by label), whatever happened.
struct Scratch {
    rt: Runtime,
    network: String,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let ids = self.rt.list_by_label(ObjectKind::Container, LABEL).unwrap_or_default();
        let _ = self.rt.remove(ObjectKind::Container, &ids);
        let _ = self.rt.remove(ObjectKind::Network, std::slice::from_ref(&self.network));
    }
}

fn broken_netns_is_replaced(kind: RuntimeKind) -> Result<(), Failed> {
    let rt = Runtime::resolve(kind)?;
    let user = rt
        .rootless_user()
        .ok_or("podman-rootless has no rootless user")?
        .clone();
    let rtdir = user.runtime_dir.display().to_string();
    let scratch = Scratch {
        rt: rt.clone(),
        network: format!("netnstest-{:06x}", std::process::id() & 0xffffff),
    };
    let engine = |args: &[&str]| -> Result<exec::Output, Failed> {
        let spec = rt.engine().args(args.iter().copied());
        Ok(exec::run(&spec, Duration::from_secs(120), Interrupt::Ignored)?)
    };
    let ok = |args: &[&str]| -> Result<String, Failed> {
        let out = engine(args)?;
        if !out.success() {
            return Err(format!("podman {}: {}", args.join(" "), out.stderr).into());
        }
        Ok(out.stdout.trim().to_string())
    };
    let base = hydra::images::base::BASE_IMAGE;
    let on_network = |extra: &[&str]| -> Result<exec::Output, Failed> {
        let mut args = vec![
            "run",
            "--pull",
            "never",
            "--label",
            LABEL,
            "--network",
            &scratch.network,
        ];
        args.extend_from_slice(extra);
        engine(&args)
    };
    ok(&["network", "create", "--label", LABEL, &scratch.network])?;
    // A healthy namespace, in use: the check must leave it alone.
    let holder = on_network(&["-d", base, "sleep", "600"])?;
    if !holder.success() {
        return Err(format!("could not start a container on {}: {}", scratch.network, holder.stderr).into());
    }
    if let Some(removed) = repair_stale(&rt)? {
        return Err(format!("the check removed a namespace a running container uses: {removed}").into());
    }
    // The namespace stays (the container holds it), the state Podman made with it goes.
    ok(&["unshare", "rm", "-rf", &format!("{rtdir}/libpod/tmp/rootless-netns")])?;
    let broken = on_network(&["--rm", base, "true"])?;
    if broken.success() || !broken.stderr.contains("rootless netns") {
        return Err(format!(
            "the planted state did not break container starts (exit {:?}: {}): the test proves nothing",
            broken.status, broken.stderr
        )
        .into());
    }
    let removed = repair_stale(&rt)?.ok_or("the check found nothing broken")?;
    if !removed.contains("rootless-netns-") {
        return Err(format!("the check's report does not name the namespace: {removed}").into());
    }
    let repaired = on_network(&["--rm", base, "true"])?;
    if !repaired.success() {
        return Err(format!("a container still cannot start after the repair: {}", repaired.stderr).into());
    }
    if let Some(again) = repair_stale(&rt)? {
        return Err(format!("a second check removed something again: {again}").into());
    }
    drop(scratch);
    Ok(())
}
