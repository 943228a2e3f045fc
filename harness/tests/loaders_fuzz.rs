//! Bad input, fuzzed: the compose and spec loaders take arbitrary bytes and mutated copies of the
//! bundled files (lines deleted, duplicated, swapped, tokens inserted) without panicking, and
//! every rejection names the file and says what is wrong. Case counts are modest so the suite
//! stays fast; raise PROPTEST_CASES to search longer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hydra::compose::file::{override_yaml, run_labels, ComposeFile};
use hydra::spec::{bundled_spec_file, Spec};
use hydra::stack::ComposeSet;
use hydra::workspace::bundled_compose_file;
use hydra::HarnessError;
use proptest::prelude::*;

const COMPOSE_PATH: &str = "/fuzz/compose/phoenix.yml";
const SPEC_PATH: &str = "/fuzz/spec.toml";

fn bundled(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Fragments that mean something to YAML, to compose or to TOML, to insert into valid files.
const TOKENS: &[&str] = &[
    "<<: *hardening",
    "<<: [*hardening, *python-healthcheck]",
    "<<: *nope",
    "<<: 3",
    "&dup",
    "*dup",
    "!reset",
    "!override []",
    "extends: db",
    "extends: {service: nginx}",
    "extends: {file: missing.yml, service: db}",
    "extends: {file: 3}",
    "profiles: [debug]",
    "profiles: debug",
    "depends_on: [nope]",
    "depends_on: 7",
    "include: [other.yml]",
    "network_mode: host",
    "ports: 8080",
    "ports: [\"0.0.0.0:8080:80\", 80, {target: 1, published: 2}, [x]]",
    "- \"${PHOENIX_BIND_IP:-127.0.0.1}:${:-}:}\"",
    "build: 3",
    "build: {args: 4}",
    "networks: 5",
    "services:",
    "services: [a]",
    "{",
    "[",
    "]",
    "}",
    ":",
    "- ",
    "  ",
    "\t",
    "\"",
    "'",
    "#",
    "---",
    "...",
    "?",
    "%YAML 1.1",
    "[services.db]",
    "[[transitive]]",
    "published = [\"x\"]",
    "health = [{ path = \"h\" }]",
    "via = \"nowhere\"",
    "compose = 3",
    "x = ",
    "é",
    "\u{0}",
    "\u{feff}",
];

/// One edit of a file's lines.
#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize),
    Duplicate(usize),
    Swap(usize, usize),
    Insert(usize, usize, String),
    Indent(usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Duplicate),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Swap(a, b)),
        (any::<usize>(), 0..TOKENS.len(), "[ -~]{0,12}").prop_map(|(at, t, s)| Mutation::Insert(at, t, s)),
        (any::<usize>(), 0usize..8).prop_map(|(at, n)| Mutation::Indent(at, n)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(text: &str, mutations: &[Mutation]) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    for m in mutations {
        if lines.is_empty() {
            lines.push(String::new());
        }
        let n = lines.len();
        match m {
            Mutation::Delete(i) => {
                lines.remove(i % n);
            }
            Mutation::Duplicate(i) => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            Mutation::Swap(a, b) => lines.swap(a % n, b % n),
            Mutation::Insert(i, t, s) => {
                // Into an existing line (keeping its indentation) or as a line of its own.
                let line = &mut lines[i % n];
                let indent: String = line.chars().take_while(|c| *c == ' ').collect();
                if i % 2 == 0 {
                    lines.insert(i % n, format!("{indent}{}{s}", TOKENS[*t]));
                } else {
                    let at = (i / 2) % (line.len() + 1);
                    let at = (0..=at).rev().find(|&k| line.is_char_boundary(k)).unwrap_or(0);
                    line.insert_str(at, TOKENS[*t]);
                }
            }
            Mutation::Indent(i, k) => {
                let line = &mut lines[i % n];
                if *k % 2 == 0 {
                    line.insert_str(0, &" ".repeat(*k));
                } else {
                    let strip = line.chars().take_while(|c| *c == ' ').count().min(*k);
                    line.replace_range(..strip, "");
                }
            }
            Mutation::Truncate(i) => lines.truncate(i % n + 1),
        }
    }
    lines.join("\n")
}

/// Values and keys for structural edits: the YAML stays well formed, the compose model does not.
const VALUES: &[&str] = &[
    "null",
    "3",
    "-1",
    "true",
    "\"x\"",
    "[]",
    "{}",
    "[a, 3]",
    "{a: 1}",
    "[[x]]",
    "host",
    "\"0.0.0.0:8080:80\"",
    "\"${A:-1}:${B}:80\"",
    "{target: 80, published: 8080}",
    "{target: 80, published: \"${P:-1}\", host_ip: \"${B:-0.0.0.0}\"}",
    "{service: db}",
    "{file: x.yml, service: db}",
    "db",
    "nginx",
    "[debug]",
    "{db: {condition: service_healthy}}",
];
const KEYS: &[&str] = &[
    "<<",
    "extends",
    "profiles",
    "depends_on",
    "ports",
    "networks",
    "network_mode",
    "build",
    "image",
    "include",
    "services",
    "args",
    "context",
    "published",
    "host_ip",
    "external",
    "aliases",
];

/// One structural edit: the `node`th node of the tree (pre-order) gets a new value, or (for a
/// mapping) a new key.
#[derive(Debug, Clone)]
struct Edit {
    node: usize,
    key: Option<usize>,
    value: usize,
}

fn edit() -> impl Strategy<Value = Edit> {
    (any::<usize>(), proptest::option::of(0..KEYS.len()), 0..VALUES.len()).prop_map(|(node, key, value)| Edit {
        node,
        key,
        value,
    })
}

fn count(v: &serde_yaml::Value) -> usize {
    1 + match v {
        serde_yaml::Value::Mapping(m) => m.values().map(count).sum(),
        serde_yaml::Value::Sequence(s) => s.iter().map(count).sum(),
        _ => 0,
    }
}

fn nth(v: &mut serde_yaml::Value, n: usize) -> Option<&mut serde_yaml::Value> {
    if n == 0 {
        return Some(v);
    }
    let mut n = n - 1;
    let children: Vec<&mut serde_yaml::Value> = match v {
        serde_yaml::Value::Mapping(m) => m.values_mut().collect(),
        serde_yaml::Value::Sequence(s) => s.iter_mut().collect(),
        _ => return None,
    };
    for c in children {
        let size = count(c);
        if n < size {
            return nth(c, n);
        }
        n -= size;
    }
    None
}

fn edit_tree(text: &str, edits: &[Edit]) -> String {
    let mut root: serde_yaml::Value = serde_yaml::from_str(text).expect("seed is YAML");
    for e in edits {
        let total = count(&root);
        let node = nth(&mut root, e.node % total).expect("node in range");
        let value: serde_yaml::Value = serde_yaml::from_str(VALUES[e.value]).expect("value is YAML");
        match (e.key, node) {
            (Some(k), serde_yaml::Value::Mapping(m)) => {
                m.insert(KEYS[k].into(), value);
            }
            (_, node) => *node = value,
        }
    }
    serde_yaml::to_string(&root).expect("serialises")
}

/// The rejection names `path` and gives a non-empty reason after it.
fn assert_names_file_and_cause(err: &HarnessError, path: &str, input: &str) {
    let msg = err.to_string();
    let Some(at) = msg.find(path) else {
        panic!("error does not name {path}: {msg}\n--- input ---\n{input}");
    };
    let reason = msg[at + path.len()..].trim_start_matches(':').trim();
    assert!(
        !reason.is_empty(),
        "error names no cause: {msg}\n--- input ---\n{input}"
    );
    assert_eq!(err.exit_code(), hydra::error::exit::USAGE, "{msg}");
}

/// Parses compose text and, when it is accepted, runs what the harness derives from it.
fn check_compose(text: &str) {
    let path = Path::new(COMPOSE_PATH);
    match ComposeFile::parse(path, text) {
        Ok(file) => {
            let _ = (file.port_vars(), file.bind_vars(), file.dir());
            for s in file.services.values() {
                let _ = s.fixed_address_ports();
            }
            let labels = run_labels("fuzz0000", "docker", 1, 1);
            let _ = override_yaml(&file, &labels, &BTreeMap::new());
            if let Err(e) = file.activate(&[]) {
                assert_names_file_and_cause(&e, COMPOSE_PATH, text);
            }
        }
        Err(e) => assert_names_file_and_cause(&e, COMPOSE_PATH, text),
    }
}

fn phoenix_services() -> Vec<String> {
    ComposeFile::parse(Path::new(COMPOSE_PATH), &bundled(bundled_compose_file()))
        .expect("the bundled compose file parses")
        .services
        .into_keys()
        .collect()
}

fn check_spec(text: &str, known: &[String]) {
    if let Err(e) = Spec::parse(Path::new(SPEC_PATH), text, vec![COMPOSE_PATH.into()], known) {
        assert_names_file_and_cause(&e, SPEC_PATH, text);
    }
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(cases),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn compose_parser_survives_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        check_compose(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn compose_parser_survives_arbitrary_yaml_like_text(text in "[ -~\n]{0,300}") {
        check_compose(&text);
    }

    #[test]
    fn compose_parser_survives_mutated_bundled_file(mutations in proptest::collection::vec(mutation(), 1..5)) {
        check_compose(&mutate(&bundled(bundled_compose_file()), &mutations));
    }

    #[test]
    fn spec_parser_survives_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        check_spec(&String::from_utf8_lossy(&bytes), &phoenix_services());
    }

    #[test]
    fn spec_parser_survives_mutated_bundled_spec(mutations in proptest::collection::vec(mutation(), 1..5)) {
        check_spec(&mutate(&bundled(bundled_spec_file()), &mutations), &phoenix_services());
    }
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn compose_parser_survives_structural_edits_of_bundled_file(edits in proptest::collection::vec(edit(), 1..4)) {
        check_compose(&edit_tree(&bundled(bundled_compose_file()), &edits));
    }
}

proptest! {
    #![proptest_config(config(48))]

    /// Through the loaders a run uses: the files on disk, resolved against each other.
    #[test]
    fn loaders_from_disk_survive_mutated_files(
        compose_mutations in proptest::collection::vec(mutation(), 0..4),
        spec_mutations in proptest::collection::vec(mutation(), 0..4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let compose = dir.path().join("compose.yml");
        let spec = dir.path().join("spec.toml");
        let compose_text = mutate(&bundled(bundled_compose_file()), &compose_mutations);
        std::fs::write(&compose, &compose_text).unwrap();
        std::fs::write(&spec, mutate(&bundled(bundled_spec_file()), &spec_mutations)).unwrap();
        if let Err(e) = ComposeSet::load_with_profiles(std::slice::from_ref(&compose), vec![]) {
            assert_names_file_and_cause(&e, &compose.display().to_string(), &compose_text);
        }
        if let Err(e) = Spec::load(&spec, std::slice::from_ref(&compose)) {
            let msg = e.to_string();
            let names = [&spec, &compose].iter().any(|p| msg.contains(&p.display().to_string()));
            prop_assert!(names, "error names neither file: {}", msg);
            prop_assert_eq!(e.exit_code(), hydra::error::exit::USAGE, "{}", msg);
        }
    }
}

/// The seeds themselves are accepted: the mutations start from valid files.
#[test]
fn the_seeds_are_valid() {
    let file = ComposeFile::parse(Path::new(COMPOSE_PATH), &bundled(bundled_compose_file())).unwrap();
    assert!(file.services.len() >= 7);
    check_spec(&bundled(bundled_spec_file()), &phoenix_services());
    assert!(Spec::parse(
        Path::new(SPEC_PATH),
        &bundled(bundled_spec_file()),
        vec![],
        &phoenix_services()
    )
    .is_ok());
}
