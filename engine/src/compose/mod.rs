//! Compose tools (`docker compose` v2, `docker-compose` v1, `podman-compose`): detection, command
//! lines as data, and parsing of what they print. Their exit codes are not trusted for `ps`/`down`
//! (podman-compose exits 0 whatever happened): the stack verifies state through the engine.

pub mod file;
pub mod ps;
pub mod v2_on_podman;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{HarnessError, Result};
use crate::runtime::{exec, CommandSpec, Interrupt, Runtime, RuntimeKind};

/// A compose implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ComposeTool {
    /// `docker compose` (Go, v2).
    DockerComposeV2,
    /// `docker-compose` (Python, 1.x).
    DockerComposeV1,
    /// `podman-compose`.
    PodmanCompose,
    /// `podman kube play` of YAML the harness generates from the compose files (not a compose
    /// tool, but it takes the compose tool's place for the kube-play targets).
    PodmanKubePlay,
}

impl fmt::Display for ComposeTool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ComposeTool::DockerComposeV2 => "docker compose",
            ComposeTool::DockerComposeV1 => "docker-compose",
            ComposeTool::PodmanCompose => "podman-compose",
            ComposeTool::PodmanKubePlay => "podman kube play",
        })
    }
}

/// A detected tool with its version.
#[derive(Debug, Clone, Serialize)]
pub struct Provider {
    /// Which compose implementation it is.
    pub tool: ComposeTool,
    /// Its version as the tool reports it (`2.24.6`); empty for a stack reattached from its record.
    pub version: String,
}

/// Extracts a version number from `... version 1.29.2, build ...` or `v2.24.0` style output.
pub fn parse_version(text: &str) -> Option<String> {
    text.split(|c: char| c.is_whitespace() || c == ',')
        .map(|w| w.trim_start_matches('v'))
        .find(|w| {
            w.split('.').count() >= 2
                && w.split('.')
                    .all(|p| !p.is_empty() && p.chars().next().unwrap().is_ascii_digit())
        })
        .map(String::from)
}

/// The compose tool a target drives its engine with.
pub fn tool_for(kind: RuntimeKind) -> ComposeTool {
    match kind {
        RuntimeKind::Docker | RuntimeKind::PodmanV2 | RuntimeKind::PodmanRootlessV2 => ComposeTool::DockerComposeV2,
        RuntimeKind::DockerV1 => ComposeTool::DockerComposeV1,
        RuntimeKind::Podman | RuntimeKind::PodmanRootless => ComposeTool::PodmanCompose,
        RuntimeKind::PodmanKube | RuntimeKind::PodmanRootlessKube => ComposeTool::PodmanKubePlay,
    }
}

/// Finds the target's compose tool and its version (run as the engine's user).
pub fn detect(runtime: &Runtime) -> Result<Provider> {
    let tool = tool_for(runtime.kind());
    let spec = version_command(runtime, tool);
    let out = exec::run(&spec, Duration::from_secs(30), Interrupt::Allowed);
    // podman-compose prints its own version and then podman's: take the first line.
    if let Some(version) = out
        .as_ref()
        .ok()
        .filter(|o| o.success())
        .and_then(|o| o.stdout.lines().next().and_then(parse_version))
    {
        return Ok(Provider { tool, version });
    }
    let said = match &out {
        Ok(o) => exec::tail(o.stderr.trim(), 3),
        Err(e) => e.to_string(),
    };
    Err(HarnessError::RuntimeUnusable {
        runtime: runtime.kind().to_string(),
        reason: format!("{tool} not found: `{}` failed: {said}", spec.display()),
        hint: match tool {
            ComposeTool::DockerComposeV2 => {
                "run `sudo scripts/setup-host.sh` (installs Docker Compose v2 as the docker CLI plugin)".into()
            }
            ComposeTool::DockerComposeV1 => "install docker-compose 1.29 (apt-get install docker-compose)".into(),
            ComposeTool::PodmanCompose => {
                "run `sudo scripts/setup-host.sh` (installs podman-compose 1.6.0 in /opt/hydra/podman-compose)".into()
            }
            ComposeTool::PodmanKubePlay => "run `sudo scripts/setup-host.sh` (installs Podman 4.3)".into(),
        },
    })
}

fn version_command(runtime: &Runtime, tool: ComposeTool) -> CommandSpec {
    match tool {
        ComposeTool::DockerComposeV2 => runtime.command("docker").args(["compose", "version"]),
        ComposeTool::DockerComposeV1 => runtime.command("docker-compose").arg("version"),
        ComposeTool::PodmanCompose => runtime.command("podman-compose").arg("--version"),
        ComposeTool::PodmanKubePlay => runtime.command("podman").arg("--version"),
    }
}

/// Everything that identifies one compose project invocation.
#[derive(Debug, Clone)]
pub struct Project {
    /// The compose project name (`-p`), unique per run.
    pub name: String,
    /// Compose files, passed as `-f` in this order.
    pub files: Vec<PathBuf>,
    /// Directory the tool runs in: the first compose file's directory.
    pub workdir: PathBuf,
    /// Environment for the tool on top of the runtime's own: the run's port and bind-address
    /// variables, the caller's variables the files use, `DOCKER_HOST` of the run's API service.
    pub env: Vec<(String, String)>,
    /// For the kube-play targets: the played YAML and the names the actions need.
    pub kube: Option<crate::kube::play::Played>,
}

/// Compose subcommands the harness uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start detached without building (images are built and tagged beforehand).
    Up,
    /// Remove containers, networks and named volumes.
    Down {
        /// Seconds each container gets to stop before it is killed (`-t`).
        timeout_secs: u32,
    },
    /// List containers (all states).
    Ps,
    /// Remove containers and networks, keep volumes.
    DownKeepVolumes {
        /// Seconds each container gets to stop before it is killed (`-t`).
        timeout_secs: u32,
    },
    /// Stop one service's containers, keeping them.
    Stop {
        /// The compose service to stop.
        service: String,
    },
    /// Stop every service, keeping containers, networks and volumes.
    StopAll,

    /// Start one service's stopped containers again.
    Start {
        /// The compose service to start.
        service: String,
    },
    /// Recreate one service's container without touching its dependencies.
    Recreate {
        /// The compose service to recreate.
        service: String,
    },
    /// The resolved model of the files as JSON (Compose v2 only).
    Config,
}

/// The argv for `action` on `project` with `tool`, run as the runtime's user. Pure.
pub fn command(runtime: &Runtime, tool: ComposeTool, project: &Project, action: &Action) -> CommandSpec {
    if tool == ComposeTool::PodmanKubePlay {
        return kube_command(runtime, project, action);
    }
    let mut spec = match tool {
        ComposeTool::DockerComposeV2 => runtime.command("docker").arg("compose"),
        ComposeTool::DockerComposeV1 => runtime.command("docker-compose"),
        ComposeTool::PodmanCompose => runtime.command("podman-compose"),
        ComposeTool::PodmanKubePlay => unreachable!("handled above"),
    };
    spec = spec.args(["-p", &project.name]);
    for f in &project.files {
        spec = spec.arg("-f").arg(f.display().to_string());
    }
    spec = spec.args(action_args(tool, action));
    for (k, v) in runtime.compose_env().into_iter().chain(project.env.iter().cloned()) {
        spec = spec.env(k, v);
    }
    // For a user switch the working directory must be one that user can enter: the project's own.
    spec.cwd(&project.workdir)
}

/// The command for `action` on a played stack: `podman kube play` / `kube down` / `pod stop`...
fn kube_command(runtime: &Runtime, project: &Project, action: &Action) -> CommandSpec {
    let spec = match &project.kube {
        Some(played) => runtime
            .engine()
            .args(crate::kube::play::action_args(played, &project.name, action)),
        // A record of a kube-play run always has its played files; one without is not ours to drive.
        None => CommandSpec::new("sh").args([
            "-c",
            "echo 'this kube-play run has no played YAML in its record: run `harness gc` to sweep it by label' >&2; exit 2",
        ]),
    };
    spec.cwd(&project.workdir)
}

fn action_args(tool: ComposeTool, action: &Action) -> Vec<String> {
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    match action {
        // Compose v2 can wait for health itself: the harness times it against its own loop.
        Action::Up if tool == ComposeTool::DockerComposeV2 => v(&["up", "-d", "--no-build", "--wait"]),
        Action::Up => v(&["up", "-d", "--no-build"]),
        Action::Config => v(&["config", "--format", "json"]),
        Action::Down { timeout_secs } => {
            let t = timeout_secs.to_string();
            v(&["down", "-v", "--remove-orphans", "-t", &t])
        }
        Action::Ps => match tool {
            ComposeTool::DockerComposeV2 => v(&["ps", "-a", "--format", "json"]),
            ComposeTool::DockerComposeV1 => v(&["ps", "-a", "-q"]),
            ComposeTool::PodmanCompose => v(&["ps", "-a", "--format", "json"]),
            ComposeTool::PodmanKubePlay => unreachable!("kube_command"),
        },
        Action::DownKeepVolumes { timeout_secs } => {
            let t = timeout_secs.to_string();
            v(&["down", "-t", &t])
        }
        Action::Recreate { service } => v(&["up", "-d", "--no-build", "--no-deps", "--force-recreate", service]),
        Action::Stop { service } => v(&["stop", service]),
        Action::StopAll => v(&["stop"]),
        Action::Start { service } => v(&["start", service]),
    }
}

/// Compose project names: lowercase letters, digits, `-` and `_`, starting with a letter or digit.
pub fn valid_project_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn project() -> Project {
        Project {
            name: "hydra-docker-1a2b3c4d".into(),
            files: vec!["/p/compose/phoenix.yml".into(), "/s/override.yml".into()],
            workdir: "/p/compose".into(),
            env: vec![("PHOENIX_NGINX_PORT".into(), "41000".into())],
            kube: None,
        }
    }

    fn rt(kind: RuntimeKind) -> Runtime {
        Runtime::for_tests(kind)
    }

    #[rstest]
    #[case::v2(RuntimeKind::Docker, ComposeTool::DockerComposeV2, "docker", &["compose", "-p"])]
    #[case::v1(RuntimeKind::Docker, ComposeTool::DockerComposeV1, "docker-compose", &["-p"])]
    #[case::podman(RuntimeKind::Podman, ComposeTool::PodmanCompose, "podman-compose", &["-p"])]
    fn up_command_lines(
        #[case] kind: RuntimeKind,
        #[case] tool: ComposeTool,
        #[case] program: &str,
        #[case] prefix: &[&str],
    ) {
        let spec = command(&rt(kind), tool, &project(), &Action::Up);
        assert_eq!(spec.program, program);
        assert_eq!(&spec.args[..prefix.len()], prefix);
        let line = spec.display();
        assert!(
            line.contains("-p hydra-docker-1a2b3c4d -f /p/compose/phoenix.yml -f /s/override.yml up -d --no-build"),
            "{line}"
        );
        assert_eq!(spec.cwd.as_deref(), Some(std::path::Path::new("/p/compose")));
        assert!(spec.env.contains(&("PHOENIX_NGINX_PORT".into(), "41000".into())));
    }

    #[rstest]
    #[case(ComposeTool::DockerComposeV1)]
    #[case(ComposeTool::PodmanCompose)]
    fn down_removes_volumes_and_orphans(#[case] tool: ComposeTool) {
        let kind = if tool == ComposeTool::PodmanCompose {
            RuntimeKind::Podman
        } else {
            RuntimeKind::Docker
        };
        let line = command(&rt(kind), tool, &project(), &Action::Down { timeout_secs: 10 }).display();
        assert!(line.ends_with("down -v --remove-orphans -t 10"), "{line}");
    }

    #[test]
    fn every_target_has_its_tool_and_v2_waits_for_health() {
        use RuntimeKind::*;
        let tools: Vec<ComposeTool> = RuntimeKind::ALL.iter().map(|&k| tool_for(k)).collect();
        assert_eq!(
            tools,
            [
                ComposeTool::DockerComposeV2,
                ComposeTool::DockerComposeV1,
                ComposeTool::PodmanCompose,
                ComposeTool::DockerComposeV2,
                ComposeTool::PodmanCompose,
                ComposeTool::DockerComposeV2
            ]
        );
        for kind in [Docker, PodmanV2, PodmanRootlessV2] {
            let line = command(&rt(kind), tool_for(kind), &project(), &Action::Up).display();
            assert!(line.ends_with("up -d --no-build --wait"), "{line}");
        }
        let line = command(&rt(Podman), ComposeTool::PodmanCompose, &project(), &Action::Up).display();
        assert!(line.ends_with("up -d --no-build"), "{line}");
    }

    #[test]
    fn podman_compose_builds_keep_docker_format() {
        let spec = command(
            &rt(RuntimeKind::Podman),
            ComposeTool::PodmanCompose,
            &project(),
            &Action::Up,
        );
        assert!(spec.env.contains(&("BUILDAH_FORMAT".into(), "docker".into())));
    }

    #[test]
    fn v2_ps_asks_for_json() {
        let line = command(
            &rt(RuntimeKind::Docker),
            ComposeTool::DockerComposeV2,
            &project(),
            &Action::Ps,
        )
        .display();
        assert!(line.ends_with("ps -a --format json"), "{line}");
    }

    #[rstest]
    #[case("docker-compose version 1.29.2, build unknown", Some("1.29.2"))]
    #[case("Docker Compose version v2.24.6", Some("2.24.6"))]
    #[case("podman-compose version 1.6.0", Some("1.6.0"))]
    #[case("2.29.1", Some("2.29.1"))]
    #[case("no version here", None)]
    fn parses_tool_versions(#[case] text: &str, #[case] expected: Option<&str>) {
        assert_eq!(parse_version(text).as_deref(), expected);
    }

    #[rstest]
    #[case("hydra-docker-1a2b3c4d", true)]
    #[case("hydra_podman", true)]
    #[case("Hydra", false)]
    #[case("-x", false)]
    #[case("", false)]
    #[case("a.b", false)]
    fn project_names(#[case] name: &str, #[case] ok: bool) {
        assert_eq!(valid_project_name(name), ok);
    }
}
