//! Podman's DNS server state after a killed start, for real, once per Podman engine: the DNS
//! file a killed `podman start` leaves for a network that is then removed answers a container that
//! gets the dead address on a later network with the same subnet; `harness gc` removes it when the
//! network was the harness's, and leaves another network's alone. On the way, what the DNS checks
//! read to explain a name that does not resolve (the engine's entries for the network) is checked.
//!
//! A binary of its own: `harness gc`, and every Podman `up` of other tests, sweep these files and
//! orphaned runs, so this must not run beside them. Trials are named
//! `<runtime>::lifecycle::gc_sweeps_stale_dns_entries`.

mod common;

use std::time::Duration;

use hydra::runtime::{exec, Interrupt, Runtime, RuntimeKind};
use libtest_mimic::{Arguments, Failed};

fn main() {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    for (kind, availability) in common::runtimes() {
        // The DNS server's state belongs to the engine: once per Podman engine.
        if kind.is_podman() && !kind.via_podman_api() {
            let trial_name = format!("{}::lifecycle::gc_sweeps_stale_dns_entries", kind.ident());
            trials.push(common::trial(trial_name, &availability, move || {
                gc_sweeps_stale_dns_entries(kind)
            }));
        }
    }
    libtest_mimic::run(&args, trials).exit();
}

/// What the DNS test created: its containers and network (by label), and the stale files it wrote.
struct DnsScratch {
    rt: Runtime,
    network: String,
    files: Vec<String>,
}

const DNS_TEST_LABEL: &str = "io.hydra.test=dns-leftovers";

impl Drop for DnsScratch {
    fn drop(&mut self) {
        let ids = self
            .rt
            .list_by_label(hydra::runtime::ObjectKind::Container, DNS_TEST_LABEL)
            .unwrap_or_default();
        let _ = self.rt.remove(hydra::runtime::ObjectKind::Container, &ids);
        let _ = self
            .rt
            .remove(hydra::runtime::ObjectKind::Network, std::slice::from_ref(&self.network));
        if !self.files.is_empty() {
            let rm = self
                .rt
                .command("rm")
                .args(["-f", "--"])
                .args(self.files.clone())
                .cwd("/");
            let _ = exec::run(&rm, Duration::from_secs(30), Interrupt::Ignored);
        }
    }
}

/// The state a `podman start` killed mid-way leaves (its entry in the DNS file of a network that
/// is then removed), written by hand because the kill's timing cannot be hit on demand: first
/// shown to poison name resolution on a live network with the same gateway, then swept by gc.
fn gc_sweeps_stale_dns_entries(kind: RuntimeKind) -> Result<(), Failed> {
    use hydra::runtime::dns_leftovers;
    let rt = Runtime::resolve(kind)?;
    let dir = dns_leftovers::dns_dir(&rt).ok_or("no aardvark-dns directory for a Podman runtime")?;
    let tag = format!("{:06x}", std::process::id() & 0xffffff);
    let mut scratch = DnsScratch {
        rt: rt.clone(),
        network: format!("dnstest-live-{tag}"),
        files: Vec::new(),
    };
    let quick = |args: &[&str]| -> Result<String, Failed> {
        let spec = rt.engine().args(args.iter().copied());
        Ok(exec::run_ok(&spec, Duration::from_secs(120), Interrupt::Ignored)?.stdout)
    };
    quick(&["network", "create", "--label", DNS_TEST_LABEL, &scratch.network])?;
    let gateway = quick(&[
        "network",
        "inspect",
        &scratch.network,
        "--format",
        "{{range .Subnets}}{{.Gateway}}{{end}}",
    ])?
    .trim()
    .to_string();
    let run = |extra: &[&str]| -> Result<exec::Output, Failed> {
        let spec = rt
            .engine()
            .args(["run", "--pull", "never", "--label", DNS_TEST_LABEL, "--network"])
            .arg(scratch.network.clone())
            .args(extra.iter().copied());
        Ok(exec::run(&spec, Duration::from_secs(120), Interrupt::Ignored)?)
    };
    // A live container: aardvark-dns serves this network from now on.
    let live = run(&[
        "-d",
        "--network-alias",
        "dnsprobe",
        hydra::images::base::BASE_IMAGE,
        "sleep",
        "600",
    ])?;
    if !live.success() {
        return Err(format!("could not start a container on {}: {}", scratch.network, live.stderr).into());
    }
    // What the DNS checks say when a name does not resolve: registered or not, read from the file.
    let networks = [scratch.network.clone()];
    let registered = hydra::runtime::dns_server::describe_registration(&rt, &networks, "dnsprobe").unwrap_or_default();
    let prefix = gateway.rsplit_once('.').map(|(p, _)| p).unwrap_or_default();
    if !registered.contains(&format!("list dnsprobe at {prefix}.")) {
        return Err(format!("the live container's alias is not described as registered: {registered:?}").into());
    }
    let missing = hydra::runtime::dns_server::describe_registration(&rt, &networks, "nosuch").unwrap_or_default();
    if !missing.contains("have no nosuch: the engine did not register it") {
        return Err(format!("a name nobody registered is not described as such: {missing:?}").into());
    }
    // Two removed networks' files with this gateway: one named like the harness's, one not.
    let ours = format!("hydra-{}-tz{tag}-net", kind.name());
    let foreign = format!("dnstest-gone-{tag}");
    let ghost_ip = |last: u8| {
        let mut octets: Vec<&str> = gateway.split('.').collect();
        let last = last.to_string();
        if let Some(o) = octets.last_mut() {
            *o = &last;
        }
        octets.join(".")
    };
    for (network, name, ip) in [
        (&ours, "ghost-ours", ghost_ip(240)),
        (&foreign, "ghost-foreign", ghost_ip(241)),
    ] {
        let path = dir.join(network).display().to_string();
        let entry = format!("{} {ip}  {name},{}", "ab".repeat(32), &"ab".repeat(6));
        let write = rt
            .command("sh")
            .args(["-c", "printf '%s\\n' \"$2\" \"$3\" > \"$1\"", "sh"])
            .args([path.clone(), gateway.clone(), entry])
            .cwd("/");
        exec::run_ok(&write, Duration::from_secs(30), Interrupt::Ignored)?;
        scratch.files.push(path);
    }
    // A container that gets a dead entry's address sees that dead network's names (aardvark-dns
    // maps a client to networks by its address). Each container start makes it read its files.
    let resolve = |name: &str, from: &str| -> Result<Option<String>, Failed> {
        let out = run(&[
            "--rm",
            "--ip",
            from,
            hydra::images::base::BASE_IMAGE,
            "getent",
            "hosts",
            name,
        ])?;
        Ok(out
            .success()
            .then(|| out.stdout.split_whitespace().next().unwrap_or_default().to_string()))
    };
    // aardvark-dns rereads its files on a signal, which may land after the probe's lookup: the
    // answer counts once it is the expected one, or as it stands after a few probes.
    let settled = |name: &str, from: &str, expect: Option<String>| -> Result<Option<String>, Failed> {
        let mut last = None;
        for _ in 0..5 {
            last = resolve(name, from)?;
            if last == expect {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        Ok(last)
    };
    if settled("ghost-ours", &ghost_ip(240), Some(ghost_ip(240)))? != Some(ghost_ip(240)) {
        return Err(format!(
            "a removed network's entry did not answer a container at its address on {} (gateway {gateway}): the test proves nothing",
            scratch.network
        )
        .into());
    }
    let stdout = common::run_gc(kind)?;
    if !stdout.contains(&format!("removed network {ours} removed")) {
        return Err(format!("gc did not report removing the DNS entries of {ours}:\n{stdout}").into());
    }
    if !stdout.contains(&format!("removed network {foreign} left alone")) {
        return Err(format!("gc did not report the other network's stale DNS entries:\n{stdout}").into());
    }
    let stale: Vec<String> = dns_leftovers::stale(&rt)?.into_iter().map(|f| f.network).collect();
    if stale.contains(&ours) {
        return Err(format!("{ours}'s DNS file is still there after gc").into());
    }
    if !stale.contains(&foreign) {
        return Err(format!("gc removed {foreign}'s DNS file, which is not the harness's").into());
    }
    if let Some(ip) = settled("ghost-ours", &ghost_ip(240), None)? {
        return Err(format!("ghost-ours still resolves to {ip} after gc").into());
    }
    if settled("ghost-foreign", &ghost_ip(241), Some(ghost_ip(241)))? != Some(ghost_ip(241)) {
        return Err("the other network's entry stopped answering: gc touched it".into());
    }
    drop(scratch);
    Ok(())
}
