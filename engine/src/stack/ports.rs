//! What a run publishes and passes to its compose tool: a free host port on the bind address for
//! every port variable, the bind address for every bind variable, and the variables the compose
//! files interpolate that the caller set.

use std::collections::BTreeMap;
use std::net::{IpAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::compose::file::ComposeFile;
use crate::error::Result;

/// Environment for compose: bind variables get the bind address, port variables a free port on
/// it unless the caller set them. Returns the env and the chosen ports.
/// Compose environment and the host port chosen for each port variable.
pub(super) type PublishEnv = (Vec<(String, String)>, BTreeMap<String, u16>);

pub(super) fn publish_env(file: &ComposeFile, bind_ip: IpAddr) -> Result<PublishEnv> {
    let mut env = Vec::new();
    let mut ports = BTreeMap::new();
    for var in file.bind_vars() {
        env.push((var, bind_ip.to_string()));
    }
    let mut held = Vec::new();
    for var in file.port_vars() {
        let port = match std::env::var(&var).ok().and_then(|v| v.parse::<u16>().ok()) {
            Some(p) => p,
            None => {
                // Keep each listener open until all are chosen so two variables never get one port.
                let (l, p) = free_port(bind_ip)?;
                held.push(l);
                p
            }
        };
        env.push((var.clone(), port.to_string()));
        ports.insert(var, port);
    }
    drop(held);
    Ok((env, ports))
}

/// Where host ports are drawn: below the kernel's ephemeral range (32768 and up), so a port this
/// run releases before its engine binds it is not handed to another run's `bind(0)` meanwhile
/// (concurrent runs collided that way: "port is already allocated").
const PORT_RANGE: std::ops::Range<u16> = 20000..32768;

/// Ports this process handed out, and when. A port is free again here between its release (just
/// before `compose up`) and the moment the engine binds it, which can be many seconds later (the
/// last service's turn): another stack of this process must not draw it meanwhile (two overlays
/// on different engines collided that way: "bind: address already in use").
static HANDED_OUT: Mutex<BTreeMap<u16, Instant>> = Mutex::new(BTreeMap::new());
/// How long a handed-out port is not drawn again: longer than `compose up` may take to bind it.
const HANDED_OUT_FOR: Duration = Duration::from_secs(15 * 60);

/// A port of [`PORT_RANGE`] free on `bind_ip` and not handed out by this process lately, drawn at
/// random, with its listener held.
fn free_port(bind_ip: IpAddr) -> Result<(TcpListener, u16)> {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    handed_out.retain(|_, at| at.elapsed() < HANDED_OUT_FOR);
    for _ in 0..200 {
        let id = uuid::Uuid::new_v4();
        let r = id.as_bytes();
        let p = PORT_RANGE.start + u16::from_le_bytes([r[0], r[1]]) % (PORT_RANGE.end - PORT_RANGE.start);
        if handed_out.contains_key(&p) {
            continue;
        }
        if let Ok(l) = TcpListener::bind((bind_ip, p)) {
            handed_out.insert(p, Instant::now());
            return Ok((l, p));
        }
    }
    let l = TcpListener::bind((bind_ip, 0))?;
    let p = l.local_addr()?.port();
    handed_out.insert(p, Instant::now());
    Ok((l, p))
}

/// The variables the compose files interpolate that the caller's environment sets (and the
/// harness does not): passed explicitly, since the rootless user's tools get no other environment.
/// When the tools run as another, less trusted user (`crosses_to_user`), secret-looking names are
/// not passed: a compose file must not be able to ask root's environment for `${CI_TOKEN}` and
/// hand it to that user's containers. Such values belong in an env file the run names.
pub(super) fn caller_env(files: &[PathBuf], set: &[(String, String)], crosses_to_user: bool) -> Vec<(String, String)> {
    caller_env_with(files, set, crosses_to_user, &|v| std::env::var(v).ok())
}

fn caller_env_with(
    files: &[PathBuf],
    set: &[(String, String)],
    crosses_to_user: bool,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        for (var, _) in crate::compose::file::variable_references(&text) {
            if set.iter().chain(out.iter()).any(|(k, _)| *k == var) {
                continue;
            }
            let Some(value) = lookup(&var) else {
                continue;
            };
            if crosses_to_user && crate::secrets::is_secret_name(&var) {
                tracing::warn!(
                    "{}: ${{{var}}} is set in the harness's environment but looks like a secret; not passed to the rootless user's compose tool (put it in an env file)",
                    f.display()
                );
                continue;
            }
            out.push((var, value));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_port_released_before_its_bind_is_not_drawn_again() {
        // Draw ports and release them at once, as `publish_env` does before `compose up`: none may
        // come back while this process's engines may still be about to bind it.
        let ip: IpAddr = [127, 0, 0, 1].into();
        let drawn: Vec<u16> = (0..300).map(|_| free_port(ip).unwrap().1).collect();
        let distinct: std::collections::BTreeSet<u16> = drawn.iter().copied().collect();
        assert_eq!(distinct.len(), drawn.len(), "a released port was drawn again");
    }

    #[test]
    fn publish_env_picks_distinct_free_ports_on_the_bind_ip() {
        let text = "services:\n  a:\n    image: x\n    ports: ['${BIND_T:-127.0.0.1}:${A_PORT_T:-1}:80', '${BIND_T:-127.0.0.1}:${B_PORT_T:-2}:81']\n";
        let f = ComposeFile::parse(Path::new("/x/c.yml"), text).unwrap();
        let (env, ports) = publish_env(&f, IpAddr::from([127, 0, 0, 1])).unwrap();
        assert!(env.contains(&("BIND_T".into(), "127.0.0.1".into())));
        assert_eq!(ports.len(), 2);
        assert_ne!(ports["A_PORT_T"], ports["B_PORT_T"]);
        assert!(ports.values().all(|p| PORT_RANGE.contains(p)), "{ports:?}");
    }

    #[test]
    fn secret_looking_variables_never_cross_to_the_rootless_user() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.yml");
        std::fs::write(
            &f,
            "services:\n  a:\n    image: ${IMG}\n    environment:\n      T: ${CI_TOKEN}\n      S: ${HYDRA_PROBE_SESSION_VALUE}\n",
        )
        .unwrap();
        let env = |v: &str| Some(format!("value-of-{v}"));
        let names = |cross| -> Vec<String> {
            caller_env_with(std::slice::from_ref(&f), &[], cross, &env)
                .into_iter()
                .map(|(k, _)| k)
                .collect()
        };
        assert_eq!(names(true), ["IMG", "HYDRA_PROBE_SESSION_VALUE"]);
        assert_eq!(names(false), ["IMG", "CI_TOKEN", "HYDRA_PROBE_SESSION_VALUE"]);
    }
}
