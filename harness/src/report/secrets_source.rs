//! Where the secrets of a run are, so that the run's one [`Redactor`] knows every value a report,
//! the terminal or an error message could echo: a service that logs its token and dies, a build
//! whose command line carries `--build-arg TOKEN=...`, podman-compose printing its `podman run -e`
//! lines into a failure message.
//!
//! Read from every compose file of the run (overlays included), a secret is the value of a
//! secret-looking name ([`is_secret_name`], the one rule) in
//!
//! - a service's `environment:`, mapping or list form (a bare `- NAME` or an empty `NAME:` takes
//!   the value from the run's environment, as compose does), and `build.args`, both forms;
//! - each file named by a service's `env_file:` (resolved against the project directory, as the
//!   compose tools do, and against the declaring file's directory) and the project's `.env`;
//! - the run's environment, for every `${NAME}` a compose file refers to;
//! - anywhere else in a compose file where a secret-looking key has a value (extension blocks,
//!   labels), plus the password of any URL with credentials and the content of top-level
//!   `secrets:` (`file:` or `environment:`).
//!
//! Values are interpolated the way compose does (`${VAR:-default}`, `$$`), against the process
//! environment first, then the project `.env`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml::Value;

use super::redact::{url_password, Redactor};
use crate::compose::file::{interpolate, scalar};
use crate::error::{HarnessError, Result};
use crate::secrets::is_secret_name;
use crate::spec::Spec;

/// The redactor of a run: the secrets of `compose_files` (in `-f` order, the first one decides the
/// project directory) resolved against the process environment, plus the spec's database
/// password when it has a `[persistence]` section.
pub fn for_run(compose_files: &[PathBuf], spec: Option<&Spec>) -> Result<Redactor> {
    let mut r = from_compose(compose_files, &|name| std::env::var(name).ok())?;
    if let Some(p) = spec.and_then(|s| s.persistence.as_ref()) {
        if let Some(text) = read_optional(&p.password_env_file)? {
            for (name, value) in crate::envfile::readings(&text) {
                r.add(name, &value);
            }
        }
    }
    Ok(r)
}

/// The secrets of `compose_files`, with `env` standing for the environment the compose tool
/// runs in. A file named by `env_file:` that does not exist is skipped (the compose tool refuses
/// it and says so; nothing secret is printed); any other read error is returned.
pub fn from_compose(compose_files: &[PathBuf], env: &dyn Fn(&str) -> Option<String>) -> Result<Redactor> {
    let mut r = Redactor::new();
    let Some(first) = compose_files.first() else {
        return Ok(r);
    };
    let project_dir = dir_of(first);
    let mut dotenv: BTreeMap<String, String> = BTreeMap::new();
    if let Some(text) = read_optional(&project_dir.join(".env"))? {
        for (name, value) in crate::envfile::readings(&text) {
            r.add(name, &value);
            dotenv.insert(name.to_string(), value);
        }
    }
    let lookup = |name: &str| env(name).or_else(|| dotenv.get(name).cloned());
    for path in compose_files {
        let text = std::fs::read_to_string(path).map_err(|e| {
            HarnessError::compose(path, format!("cannot read it: {e}")).with_hint(crate::workspace::missing_file_hint(
                path,
                "pass an existing file with --compose",
            ))
        })?;
        let root: Value = serde_yaml::from_str(&text).map_err(|e| HarnessError::compose(path, e.to_string()))?;
        let mut walker = Walker {
            r: &mut r,
            lookup: &lookup,
            dirs: [project_dir.clone(), dir_of(path)],
        };
        walker.references(&root);
        walker.walk(&root, "");
        walker.top_level_secrets(&root)?;
    }
    Ok(r)
}

struct Walker<'a> {
    r: &'a mut Redactor,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    /// Where relative paths are looked up: the project directory, then the declaring file's.
    dirs: [PathBuf; 2],
}

impl Walker<'_> {
    fn interp(&self, s: &str) -> String {
        interpolate(s, self.lookup)
    }

    /// Every `${NAME}` / `$NAME` with a secret-looking name, with the value it resolves to.
    fn references(&mut self, v: &Value) {
        match v {
            Value::String(s) => {
                for (name, default) in crate::compose::file::variable_references(s) {
                    if !is_secret_name(&name) {
                        continue;
                    }
                    let value = (self.lookup)(&name).filter(|v| !v.is_empty()).or(default);
                    if let Some(value) = value {
                        self.r.add(&name, &value);
                    }
                }
            }
            Value::Sequence(items) => items.iter().for_each(|i| self.references(i)),
            Value::Mapping(m) => m.iter().for_each(|(k, v)| {
                self.references(k);
                self.references(v);
            }),
            Value::Tagged(t) => self.references(&t.value),
            _ => {}
        }
    }

    /// Values of secret-looking keys anywhere, `NAME=value` list items, bare names in
    /// `environment:`/`args:` lists, and `env_file:` files. `key` is the key `v` is the value of.
    fn walk(&mut self, v: &Value, key: &str) {
        match v {
            Value::Mapping(m) => {
                for (k, child) in m {
                    let Some(k) = scalar(k) else { continue };
                    if k == "env_file" {
                        self.env_files(child);
                    }
                    match child {
                        Value::Null if is_secret_name(&k) => {
                            if let Some(value) = (self.lookup)(&k) {
                                self.r.add(&k, &value);
                            }
                        }
                        Value::Mapping(_) | Value::Sequence(_) | Value::Tagged(_) => self.walk(child, &k),
                        // A YAML boolean is a switch, never a secret; redacting `true` would mangle reports.
                        Value::Bool(_) => {}
                        other => {
                            if let Some(s) = scalar(other) {
                                let value = self.interp(&s);
                                self.r.add(&k, &value);
                            }
                        }
                    }
                }
            }
            Value::Sequence(items) => {
                for item in items {
                    let Value::String(s) = item else {
                        self.walk(item, key);
                        continue;
                    };
                    match s.split_once('=') {
                        Some((name, value)) if is_variable_name(name) => {
                            let value = self.interp(value);
                            self.r.add(name, &value);
                        }
                        None if is_variable_name(s) && matches!(key, "environment" | "args") => {
                            if let Some(value) = (self.lookup)(s) {
                                self.r.add(s, &value);
                            }
                        }
                        _ => {
                            // Not an assignment: only a URL password counts, whatever the key.
                            let value = self.interp(s);
                            if let Some(pw) = url_password(&value) {
                                self.r.add_secret(key, pw);
                            }
                        }
                    }
                }
            }
            Value::Tagged(t) => self.walk(&t.value, key),
            _ => {}
        }
    }

    /// `env_file: a.env`, `[a.env, b.env]` or `[{path: a.env, required: false}]`.
    fn env_files(&mut self, v: &Value) {
        let entries: Vec<&Value> = match v {
            Value::Sequence(items) => items.iter().collect(),
            other => vec![other],
        };
        for entry in entries {
            let path = match entry {
                Value::String(p) => p.clone(),
                Value::Mapping(m) => match m.get("path").and_then(Value::as_str) {
                    Some(p) => p.to_string(),
                    None => continue,
                },
                _ => continue,
            };
            let path = self.interp(&path);
            for candidate in self.candidates(&path) {
                match std::fs::read_to_string(&candidate) {
                    Ok(text) => {
                        for (name, value) in crate::envfile::readings(&text) {
                            // Compose v2 interpolates env files, docker-compose 1.x does not.
                            let interpolated = self.interp(&value);
                            self.r.add(name, &value);
                            self.r.add(name, &interpolated);
                        }
                    }
                    Err(e) => tracing::debug!(path = %candidate.display(), "env file not read: {e}"),
                }
            }
        }
    }

    /// Top-level `secrets:` (`file:` content, or the variable named by `environment:`).
    fn top_level_secrets(&mut self, root: &Value) -> Result<()> {
        let Some(secrets) = root.get("secrets").and_then(Value::as_mapping) else {
            return Ok(());
        };
        for (name, def) in secrets {
            let Some(name) = scalar(name) else { continue };
            if let Some(var) = def.get("environment").and_then(Value::as_str) {
                if let Some(value) = (self.lookup)(var) {
                    self.r.add_secret(&name, &value);
                }
            }
            if let Some(file) = def.get("file").and_then(Value::as_str) {
                let file = self.interp(file);
                for candidate in self.candidates(&file) {
                    if let Some(text) = read_optional(&candidate)? {
                        self.r.add_secret(&name, text.trim_end_matches(['\n', '\r']));
                        self.r.add_secret(&name, text.trim());
                    }
                }
            }
        }
        Ok(())
    }

    /// `path` itself when absolute, else joined to each lookup directory (without duplicates).
    fn candidates(&self, path: &str) -> Vec<PathBuf> {
        let p = Path::new(path);
        if p.is_absolute() {
            return vec![p.to_path_buf()];
        }
        let mut out: Vec<PathBuf> = Vec::new();
        for dir in &self.dirs {
            let c = dir.join(p);
            if !out.contains(&c) {
                out.push(c);
            }
        }
        out
    }
}

/// The directory a compose file's relative paths start from.
fn dir_of(file: &Path) -> PathBuf {
    let file = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    file.parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A file's text, `None` when it does not exist; other errors name the file.
fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(HarnessError::Io(std::io::Error::new(
            e.kind(),
            format!(
                "reading {} to learn which secrets to redact: {e} (make it readable by the harness)",
                path.display()
            ),
        ))),
    }
}

/// An environment variable name as compose accepts it in `NAME=value`.
fn is_variable_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    /// Writes `files` (name, text) into a fresh directory and returns it with their paths.
    fn project(files: &[(&str, &str)]) -> (tempfile::TempDir, Vec<PathBuf>) {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = Vec::new();
        for (name, text) in files {
            let p = dir.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, text).unwrap();
            if name.ends_with(".yml") {
                paths.push(p);
            }
        }
        (dir, paths)
    }

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    fn redacted(r: &Redactor, text: &str) -> String {
        r.redact(text).into_owned()
    }

    #[test]
    fn environment_in_both_forms_and_from_the_run_environment() {
        let (_d, files) = project(&[(
            "c.yml",
            "services:\n  a:\n    image: x\n    environment:\n      API_TOKEN: tok-map-1234\n      POSTGRES_USER: phoenix\n      TOKEN_AUTH_ENABLED: true\n      PASSED_TOKEN:\n      SERVICE_PASSWORD: ${PROBE_VALUE}\n  b:\n    image: x\n    environment:\n      - JWT_SECRET=jwt-list-5678\n      - LIST_PASSWORD\n      - PLAIN=not-secret\n",
        )]);
        let env = env_of(&[
            ("PASSED_TOKEN", "passed-through-91"),
            ("PROBE_VALUE", "interp-from-env-42"),
            ("LIST_PASSWORD", "bare-name-list-77"),
        ]);
        let r = from_compose(&files, &env).unwrap();
        assert!(!r.names().any(|n| n == "POSTGRES_USER" || n == "PLAIN"), "{r:?}");
        for (value, name) in [
            ("tok-map-1234", "API_TOKEN"),
            ("jwt-list-5678", "JWT_SECRET"),
            ("passed-through-91", "PASSED_TOKEN"),
            ("interp-from-env-42", "SERVICE_PASSWORD"),
            ("bare-name-list-77", "LIST_PASSWORD"),
        ] {
            assert_eq!(redacted(&r, value), format!("<redacted:{name}>"), "{r:?}");
        }
        assert_eq!(redacted(&r, "phoenix not-secret true"), "phoenix not-secret true");
    }

    #[test]
    fn build_args_in_both_forms() {
        let (_d, files) = project(&[(
            "c.yml",
            "services:\n  a:\n    build:\n      context: .\n      args:\n        DEPLOY_TOKEN: build-map-1111\n        SERVICE: api\n  b:\n    build:\n      context: .\n      args: [NPM_TOKEN=build-list-2222, GIT_PASSWORD, 'PIP_INDEX_URL=https://u:url-pw-3333@pypi.local/simple']\n",
        )]);
        let r = from_compose(&files, &env_of(&[("GIT_PASSWORD", "build-bare-4444")])).unwrap();
        assert_eq!(
            redacted(
                &r,
                "--build-arg DEPLOY_TOKEN=build-map-1111 --build-arg NPM_TOKEN=build-list-2222"
            ),
            "--build-arg DEPLOY_TOKEN=<redacted:DEPLOY_TOKEN> --build-arg NPM_TOKEN=<redacted:NPM_TOKEN>"
        );
        assert_eq!(redacted(&r, "build-bare-4444"), "<redacted:GIT_PASSWORD>");
        assert_eq!(redacted(&r, "url-pw-3333"), "<redacted:PIP_INDEX_URL>");
        assert_eq!(redacted(&r, "SERVICE=api"), "SERVICE=api");
    }

    #[test]
    fn env_files_of_services_relative_to_the_project_and_to_the_overlay() {
        let (d, files) = project(&[
            ("stack/base.yml", "services:\n  a:\n    image: x\n    env_file: ${A_ENV:-a.env}\n"),
            (
                "overlays/over.yml",
                "services:\n  a:\n    env_file:\n      - path: b.env\n        required: false\n      - missing.env\n      - own.env\n",
            ),
            ("stack/a.env", "DB_PASSWORD=env-file-a-1\nUSER=x\n"),
            ("stack/b.env", "export API_KEY='env-file-b-2' # quoted\n"),
            ("overlays/own.env", "OTHER_SECRET=env-file-own-3 # trailing comment\n"),
        ]);
        let r = from_compose(&files, &|_| None).unwrap();
        assert_eq!(
            redacted(&r, "env-file-a-1 env-file-b-2 env-file-own-3"),
            "<redacted:DB_PASSWORD> <redacted:API_KEY> <redacted:OTHER_SECRET>"
        );
        // The interpolated env_file path is followed too.
        std::fs::write(d.path().join("stack/alt.env"), "ALT_TOKEN=alt-env-file-4\n").unwrap();
        let r = from_compose(&files, &env_of(&[("A_ENV", "alt.env")])).unwrap();
        assert_eq!(redacted(&r, "alt-env-file-4"), "<redacted:ALT_TOKEN>");
    }

    #[test]
    fn the_project_dotenv_is_a_source_of_secrets_and_of_values() {
        let (_d, files) = project(&[
            ("c.yml", "services:\n  a:\n    image: x\n    environment:\n      AUTH: ${UPSTREAM_TOKEN}\n      WEBHOOK_SECRET: ${HOOK}\n"),
            (".env", "UPSTREAM_TOKEN=dotenv-token-1\nHOOK=dotenv-hook-2\n"),
        ]);
        let r = from_compose(&files, &|_| None).unwrap();
        assert_eq!(redacted(&r, "dotenv-token-1"), "<redacted:UPSTREAM_TOKEN>");
        assert_eq!(redacted(&r, "dotenv-hook-2"), "<redacted:WEBHOOK_SECRET>");
        // The process environment wins over .env, as in compose.
        let r = from_compose(&files, &env_of(&[("HOOK", "from-process-3")])).unwrap();
        assert_eq!(redacted(&r, "from-process-3"), "<redacted:WEBHOOK_SECRET>");
    }

    #[test]
    fn referenced_secret_variables_are_redacted_whatever_key_uses_them() {
        let (_d, files) = project(&[(
            "c.yml",
            "services:\n  a:\n    image: x\n    command: [\"sh\", \"-c\", \"login --with ${REGISTRY_PASSWORD} && echo $${NOT_A_REF}\"]\n    labels: {probe: \"${DEFAULTED_TOKEN:-default-token-9}\"}\n",
        )]);
        let r = from_compose(
            &files,
            &env_of(&[("REGISTRY_PASSWORD", "registry-pw-8"), ("NOT_A_REF", "zzzz-zzzz")]),
        )
        .unwrap();
        assert_eq!(redacted(&r, "registry-pw-8"), "<redacted:REGISTRY_PASSWORD>");
        assert_eq!(redacted(&r, "default-token-9"), "<redacted:DEFAULTED_TOKEN>");
        assert_eq!(redacted(&r, "zzzz-zzzz"), "zzzz-zzzz");
    }

    #[test]
    fn merge_keys_extension_blocks_and_top_level_secrets() {
        let (_d, files) = project(&[
            (
                "c.yml",
                "x-env: &env\n  SHARED_SECRET: shared-anchor-1\nservices:\n  a:\n    image: x\n    environment:\n      <<: *env\n      OWN: y\nsecrets:\n  db_pw: {file: ./db_pw.txt}\n  api: {environment: PLAIN_NAME}\n",
            ),
            ("db_pw.txt", "file-secret-2\n"),
        ]);
        let r = from_compose(&files, &env_of(&[("PLAIN_NAME", "env-secret-3")])).unwrap();
        assert_eq!(
            redacted(&r, "shared-anchor-1 file-secret-2 env-secret-3"),
            "<redacted:SHARED_SECRET> <redacted:db_pw> <redacted:api>"
        );
    }

    #[test]
    fn every_compose_file_of_the_run_counts() {
        let (_d, files) = project(&[
            ("a.yml", "services:\n  web: {image: x}\n"),
            (
                "b.yml",
                "services:\n  web:\n    environment: {API_TOKEN: overlay-only-1}\n",
            ),
        ]);
        let r = from_compose(&files, &|_| None).unwrap();
        assert_eq!(redacted(&r, "overlay-only-1"), "<redacted:API_TOKEN>");
        let base_only = from_compose(&files[..1], &|_| None).unwrap();
        assert!(base_only.is_empty(), "{base_only:?}");
    }

    #[test]
    fn an_unreadable_compose_file_is_an_error_naming_it() {
        let err = from_compose(&[PathBuf::from("/nonexistent/c.yml")], &|_| None).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/c.yml"), "{err}");
    }

    #[test]
    fn the_bundled_stack_redacts_its_password_and_nothing_ordinary() {
        let spec = Spec::load(&crate::spec::bundled_spec_file(), &[]).unwrap();
        let r = for_run(&spec.compose, Some(&spec)).unwrap();
        assert_eq!(r.names().collect::<Vec<_>>(), ["POSTGRES_PASSWORD"], "{r:?}");
        assert_eq!(redacted(&r, "phoenix-dev-password"), "<redacted:POSTGRES_PASSWORD>");
    }

    #[test]
    fn the_second_stack_overlays_plant_secrets_the_run_knows() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let spec = Spec::load(&root.join("fixtures/second-stack/spec.toml"), &[]).unwrap();
        assert!(
            spec.persistence.is_none(),
            "the regression needs a stack without [persistence]"
        );
        let plain = for_run(&spec.compose, Some(&spec)).unwrap();
        assert!(plain.is_empty(), "{plain:?}");
        for (overlay, names) in [
            (
                "secret-env-logged-then-crash.yml",
                &["API_TOKEN", "WORKER_SECRET", "SESSION_PASSWORD"][..],
            ),
            ("secret-build-arg-build-fails.yml", &["DEPLOY_TOKEN"][..]),
        ] {
            let files = [
                root.join("fixtures/second-stack/compose.yml"),
                root.join("fixtures/second-stack/overlays").join(overlay),
            ];
            let r = from_compose(&files, &env_of(&[("HYDRA_PROBE_SESSION_VALUE", "probe-from-env-1")])).unwrap();
            let mut got: Vec<&str> = r.names().collect();
            got.sort_unstable();
            let mut want = names.to_vec();
            want.sort_unstable();
            assert_eq!(got, want, "{overlay}");
        }
    }

    #[rstest]
    #[case("${A}", &[("A", None)])]
    #[case("x $B y ${C:-d} ${E-f} $$G ${H:?err}", &[("B", None), ("C", Some("d")), ("E", Some("f")), ("H", None)])]
    #[case("no refs $ here", &[])]
    fn finds_variable_references(#[case] s: &str, #[case] want: &[(&str, Option<&str>)]) {
        let got = crate::compose::file::variable_references(s);
        let want: Vec<(String, Option<String>)> =
            want.iter().map(|(n, d)| (n.to_string(), d.map(String::from))).collect();
        assert_eq!(got, want);
    }
}
