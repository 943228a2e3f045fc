//! A volume's file tree as a container sees it: every path with its type, mode, numeric owner,
//! size and content digest, read from a tar stream made inside a container (numeric owners, no
//! name lookups). Two fingerprints of the same data are equal whatever engine, user namespace or
//! storage driver holds it; when they differ, [`Fingerprint::first_difference`] names the first
//! path that does, which is what a migration drill must report.

use std::collections::BTreeMap;
use std::io::Read;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{HarnessError, Result};

/// The kind of a tree entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A hard link to an earlier path of the stream.
    HardLink,
    /// A named pipe.
    Fifo,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// Any other tar entry type.
    Other,
}

/// One path of the tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// What it is.
    pub kind: EntryKind,
    /// Permission bits (with setuid/setgid/sticky).
    pub mode: u32,
    /// Numeric owner.
    pub uid: u64,
    /// Numeric group.
    pub gid: u64,
    /// Bytes of content (0 for anything but a file).
    pub size: u64,
    /// sha256 of a file's content, the target of a link, `major:minor` of a device.
    pub content: Option<String>,
}

/// A whole tree, keyed by path relative to the volume's root (`.` is the root itself).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Fingerprint {
    /// Every entry by its normalised path.
    pub entries: BTreeMap<String, Entry>,
    /// Bytes of file content in the tree.
    pub bytes: u64,
}

/// The first path at which two trees differ, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// The path, relative to the volume's root.
    pub path: String,
    /// What differs: `missing on target`, `only on target`, or the fields that differ.
    pub what: String,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.what)
    }
}

impl Fingerprint {
    /// Reads a tar stream (as `tar -C <root> --numeric-owner -cf - .` writes it) to the end.
    pub fn from_tar(stream: impl Read) -> Result<Fingerprint> {
        let mut archive = tar::Archive::new(stream);
        let mut fp = Fingerprint::default();
        let bad = |reason: String| HarnessError::Parse {
            what: "a volume's tar stream".into(),
            reason,
        };
        for entry in archive.entries().map_err(|e| bad(e.to_string()))? {
            let mut entry = entry.map_err(|e| bad(e.to_string()))?;
            let path = normalize(&String::from_utf8_lossy(&entry.path_bytes()));
            let header = entry.header();
            let kind = match header.entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File,
                tar::EntryType::Directory => EntryKind::Dir,
                tar::EntryType::Symlink => EntryKind::Symlink,
                tar::EntryType::Link => EntryKind::HardLink,
                tar::EntryType::Fifo => EntryKind::Fifo,
                tar::EntryType::Char => EntryKind::CharDevice,
                tar::EntryType::Block => EntryKind::BlockDevice,
                _ => EntryKind::Other,
            };
            let mode = header.mode().map_err(|e| bad(format!("{path}: {e}")))? & 0o7777;
            let uid = header.uid().map_err(|e| bad(format!("{path}: {e}")))?;
            let gid = header.gid().map_err(|e| bad(format!("{path}: {e}")))?;
            let (size, content) = match kind {
                EntryKind::File => {
                    let mut hasher = Sha256::new();
                    let size = std::io::copy(&mut entry, &mut hasher).map_err(|e| bad(format!("{path}: {e}")))?;
                    fp.bytes += size;
                    (size, Some(hex::encode(hasher.finalize())))
                }
                EntryKind::Symlink | EntryKind::HardLink => {
                    let target = entry
                        .link_name_bytes()
                        .map(|t| String::from_utf8_lossy(&t).into_owned())
                        .unwrap_or_default();
                    let target = if kind == EntryKind::HardLink {
                        normalize(&target)
                    } else {
                        target
                    };
                    (0, Some(target))
                }
                EntryKind::CharDevice | EntryKind::BlockDevice => {
                    let major = header.device_major().ok().flatten().unwrap_or(0);
                    let minor = header.device_minor().ok().flatten().unwrap_or(0);
                    (0, Some(format!("{major}:{minor}")))
                }
                _ => (0, None),
            };
            fp.entries.insert(
                path,
                Entry {
                    kind,
                    mode,
                    uid,
                    gid,
                    size,
                    content,
                },
            );
        }
        Ok(fp)
    }

    /// One digest of the whole tree (sha256 over every entry in path order).
    pub fn digest(&self) -> String {
        let mut hasher = Sha256::new();
        for (path, e) in &self.entries {
            hasher.update(
                format!(
                    "{path}\0{:?}\0{:o}\0{}\0{}\0{}\0{}\n",
                    e.kind,
                    e.mode,
                    e.uid,
                    e.gid,
                    e.size,
                    e.content.as_deref().unwrap_or("")
                )
                .as_bytes(),
            );
        }
        hex::encode(hasher.finalize())
    }

    /// The first path, in path order, where `target` differs from `self` (the source).
    pub fn first_difference(&self, target: &Fingerprint) -> Option<Difference> {
        let mut paths: Vec<&String> = self.entries.keys().chain(target.entries.keys()).collect();
        paths.sort();
        paths.dedup();
        paths.into_iter().find_map(|path| {
            let what = match (self.entries.get(path), target.entries.get(path)) {
                (Some(_), None) => "missing on target".to_string(),
                (None, Some(_)) => "only on target".to_string(),
                (Some(a), Some(b)) if a != b => fields_that_differ(a, b),
                _ => return None,
            };
            Some(Difference {
                path: path.clone(),
                what,
            })
        })
    }
}

/// `kind file -> dir, uid 999 -> 100998`: each differing field with both values.
fn fields_that_differ(a: &Entry, b: &Entry) -> String {
    let mut out = Vec::new();
    if a.kind != b.kind {
        out.push(format!("kind {:?} -> {:?}", a.kind, b.kind));
    }
    if a.mode != b.mode {
        out.push(format!("mode {:o} -> {:o}", a.mode, b.mode));
    }
    if a.uid != b.uid {
        out.push(format!("uid {} -> {}", a.uid, b.uid));
    }
    if a.gid != b.gid {
        out.push(format!("gid {} -> {}", a.gid, b.gid));
    }
    if a.size != b.size {
        out.push(format!("size {} -> {}", a.size, b.size));
    }
    if a.content != b.content {
        out.push("content differs".to_string());
    }
    out.join(", ")
}

/// `./a/b/` -> `a/b`; the root (`./`, `.`, empty) -> `.`.
fn normalize(path: &str) -> String {
    let trimmed = path.trim_start_matches("./").trim_end_matches('/');
    match trimmed {
        "" | "." => ".".to_string(),
        p => p.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    struct Item<'a> {
        path: &'a str,
        kind: tar::EntryType,
        mode: u32,
        uid: u64,
        data: &'a [u8],
        link: Option<&'a str>,
    }

    fn item(path: &'static str, data: &'static [u8]) -> Item<'static> {
        Item {
            path,
            kind: if path.ends_with('/') {
                tar::EntryType::Directory
            } else {
                tar::EntryType::Regular
            },
            mode: if path.ends_with('/') { 0o700 } else { 0o600 },
            uid: 999,
            data,
            link: None,
        }
    }

    fn tar_of(items: &[Item]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for it in items {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(it.kind);
            h.set_mode(it.mode);
            h.set_uid(it.uid);
            h.set_gid(it.uid);
            h.set_size(it.data.len() as u64);
            if let Some(link) = it.link {
                h.set_link_name(link).unwrap();
            }
            b.append_data(&mut h, it.path, it.data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn pgdata() -> Vec<Item<'static>> {
        vec![
            item("./", b""),
            item("./base/", b""),
            item("./base/1/16384", b"rows"),
            item("./PG_VERSION", b"15\n"),
            Item {
                path: "./pg_wal_link",
                kind: tar::EntryType::Symlink,
                mode: 0o777,
                uid: 999,
                data: b"",
                link: Some("pg_wal"),
            },
        ]
    }

    #[test]
    fn reads_paths_types_owners_and_content() {
        let fp = Fingerprint::from_tar(&tar_of(&pgdata())[..]).unwrap();
        let keys: Vec<&str> = fp.entries.keys().map(String::as_str).collect();
        assert_eq!(keys, [".", "PG_VERSION", "base", "base/1/16384", "pg_wal_link"]);
        let root = &fp.entries["."];
        assert_eq!((root.kind, root.mode, root.uid), (EntryKind::Dir, 0o700, 999));
        let file = &fp.entries["base/1/16384"];
        assert_eq!(file.kind, EntryKind::File);
        assert_eq!(file.size, 4);
        // sha256 of "rows"
        assert_eq!(
            file.content.as_deref(),
            Some("bc51e9e65d79e1c90ba544ab2eae1044ccdf8c1af7a559ba375cba4276f7d99e")
        );
        assert_eq!(fp.entries["pg_wal_link"].content.as_deref(), Some("pg_wal"));
        assert_eq!(fp.bytes, 4 + 3);
    }

    #[test]
    fn the_same_tree_gives_the_same_digest_and_no_difference() {
        let a = Fingerprint::from_tar(&tar_of(&pgdata())[..]).unwrap();
        let mut reordered = pgdata();
        reordered.reverse();
        let b = Fingerprint::from_tar(&tar_of(&reordered)[..]).unwrap();
        assert_eq!(a.digest(), b.digest());
        assert_eq!(a.first_difference(&b), None);
    }

    #[rstest]
    #[case::content(|t: &mut Vec<Item<'static>>| t[2].data = b"ROWS", "base/1/16384", "content differs")]
    #[case::owner_through_a_user_namespace(|t: &mut Vec<Item<'static>>| t[0].uid = 100998, ".", "uid 999 -> 100998, gid 999 -> 100998")]
    #[case::mode(|t: &mut Vec<Item<'static>>| t[0].mode = 0o755, ".", "mode 700 -> 755")]
    #[case::lost_file(|t: &mut Vec<Item<'static>>| { t.remove(3); }, "PG_VERSION", "missing on target")]
    #[case::extra_file(|t: &mut Vec<Item<'static>>| t.push(item("./postmaster.pid", b"1")), "postmaster.pid", "only on target")]
    #[case::size(|t: &mut Vec<Item<'static>>| t[3].data = b"15\n\n", "PG_VERSION", "size 3 -> 4, content differs")]
    fn a_change_is_named_at_its_path(
        #[case] change: fn(&mut Vec<Item<'static>>),
        #[case] path: &str,
        #[case] what: &str,
    ) {
        let source = Fingerprint::from_tar(&tar_of(&pgdata())[..]).unwrap();
        let mut changed = pgdata();
        change(&mut changed);
        let target = Fingerprint::from_tar(&tar_of(&changed)[..]).unwrap();
        assert_ne!(source.digest(), target.digest());
        let diff = source.first_difference(&target).expect("a difference");
        assert_eq!((diff.path.as_str(), diff.what.as_str()), (path, what));
    }

    #[test]
    fn a_truncated_stream_is_an_error_not_a_smaller_tree() {
        let full = tar_of(&pgdata());
        let err = Fingerprint::from_tar(&full[..700]).unwrap_err().to_string();
        assert!(err.contains("tar stream"), "{err}");
    }

    #[rstest]
    #[case("./", ".")]
    #[case(".", ".")]
    #[case("", ".")]
    #[case("./base/", "base")]
    #[case("base/1", "base/1")]
    fn paths_are_relative_to_the_root(#[case] raw: &str, #[case] want: &str) {
        assert_eq!(normalize(raw), want);
    }
}
