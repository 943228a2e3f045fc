//! State a running stack keeps outside its named volumes, which a move between engines would not
//! carry: files its containers wrote in their own filesystems (`engine diff`).

use crate::error::Result;
use crate::stack::Stack;

/// Files every engine mounts into a container without listing them among its mounts (Podman's
/// `diff` then shows their directories as changed: `C /etc`).
const ENGINE_MOUNTS: [&str; 5] = [
    "/etc/hosts",
    "/etc/hostname",
    "/etc/resolv.conf",
    "/run/.containerenv",
    "/run/secrets",
];

/// Files the stack's containers wrote in their own filesystems, as `service: path`.
pub(super) fn container_writes(stack: &Stack) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (service, c) in stack.containers()? {
        let changed = stack.runtime().changed_paths(&c.id)?;
        let mounts: Vec<&str> = c
            .mounts
            .iter()
            .map(|m| m.destination.as_str())
            .chain(ENGINE_MOUNTS)
            .collect();
        for path in written_paths(&changed, &mounts) {
            out.push(format!("{service}: {path}"));
        }
    }
    Ok(out)
}

/// The paths of an `engine diff` that hold written state: not the mount points the engine made
/// for the container's mounts (nor the directories it made to hold them), and not directories
/// that only changed because a path under them did.
fn written_paths<'a>(changed: &'a [(char, String)], mounts: &[&str]) -> Vec<&'a str> {
    let under = |path: &str, other: &str| {
        other.len() > path.len() && other.starts_with(path) && other.as_bytes()[path.len()] == b'/'
    };
    changed
        .iter()
        .map(|(_, p)| p.as_str())
        .filter(|p| !mounts.iter().any(|m| m == p || under(p, m)))
        .filter(|p| !changed.iter().any(|(_, other)| under(p, other)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_and_their_directories_are_not_written_state() {
        let changed: Vec<(char, String)> = [
            ('C', "/etc"),
            ('A', "/etc/phoenix"),
            ('A', "/etc/phoenix/db"),
            ('A', "/etc/phoenix/db/schema.sql"),
            ('C', "/var"),
            ('C', "/var/tmp"),
            ('A', "/var/tmp/model-state"),
            ('A', "/etc/phoenixx"),
        ]
        .iter()
        .map(|(k, p)| (*k, p.to_string()))
        .collect();
        assert_eq!(
            written_paths(&changed, &["/etc/phoenix/db/schema.sql", "/var/lib/postgresql/data"]),
            ["/var/tmp/model-state", "/etc/phoenixx"]
        );
        // Podman: only the directory of the files it mounts itself shows as changed.
        let podman = [('C', "/etc".to_string())];
        let mounts: Vec<&str> = ENGINE_MOUNTS.to_vec();
        assert!(written_paths(&podman, &mounts).is_empty());
        let wrote = [('C', "/etc".to_string()), ('A', "/etc/state.db".to_string())];
        assert_eq!(written_paths(&wrote, &mounts), ["/etc/state.db"]);
    }
}
