//! Keeps secrets out of reports. Reports are uploaded as CI artifacts and pasted into issues, and
//! the things they quote (container logs, compose errors, environment facts) can echo a database
//! password or a token. A [`Redactor`] knows the secret values of a run and replaces each
//! occurrence with `<redacted:NAME>`; every reporter applies it to messages, logs and properties.

use std::borrow::Cow;
use std::fmt;
use std::path::Path;
use std::sync::RwLock;

use crate::error::Result;

/// Values shorter than this are not redacted: replacing every `dev` or `123` in a log would
/// mangle it and protect nothing.
pub const MIN_SECRET_LEN: usize = 4;

pub use crate::secrets::is_secret_name;

/// Replaces known secret values in text with `<redacted:NAME>`.
///
/// Its `Debug` output lists names only, never values.
#[derive(Clone, Default)]
pub struct Redactor {
    /// (name, value), longest value first so that a secret containing another is replaced whole.
    secrets: Vec<(String, String)>,
}

impl Redactor {
    /// An empty redactor (redacts nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a redactor from `(name, value)` pairs, keeping those whose name looks secret (see
    /// [`is_secret_name`]) and, for any name, the password of a URL with credentials
    /// (`postgres://user:pw@host/db`).
    pub fn from_pairs<N, V>(pairs: impl IntoIterator<Item = (N, V)>) -> Self
    where
        N: AsRef<str>,
        V: AsRef<str>,
    {
        let mut r = Self::new();
        for (name, value) in pairs {
            r.add(name.as_ref(), value.as_ref());
        }
        r
    }

    /// Reads `KEY=VALUE` env files (as given to compose's `env_file:`; `#` comments, blank lines,
    /// optional `export ` and surrounding quotes allowed) and keeps their secret entries as
    /// [`Redactor::from_pairs`] does. Lines that are not assignments are ignored.
    pub fn from_env_files<P: AsRef<Path>>(paths: impl IntoIterator<Item = P>) -> Result<Self> {
        let mut r = Self::new();
        for path in paths {
            let path = path.as_ref();
            let text = std::fs::read_to_string(path)
                .map_err(|e| std::io::Error::new(e.kind(), format!("reading env file {}: {e}", path.display())))?;
            for (name, value) in crate::envfile::readings(&text) {
                r.add(name, &value);
            }
        }
        Ok(r)
    }

    /// Adds `value` under `name` if the name looks secret; also adds the password of a URL with
    /// credentials whatever the name. Returns whether anything was added.
    pub fn add(&mut self, name: &str, value: &str) -> bool {
        let mut added = false;
        if is_secret_name(name) {
            added |= self.add_secret(name, value);
        }
        if let Some(pw) = url_password(value) {
            added |= self.add_secret(name, pw);
        }
        added
    }

    /// Adds `value` as a secret whatever its name (ignored if shorter than [`MIN_SECRET_LEN`]).
    /// Returns whether it was added.
    pub fn add_secret(&mut self, name: &str, value: &str) -> bool {
        if value.chars().count() < MIN_SECRET_LEN || self.secrets.iter().any(|(_, v)| v == value) {
            return false;
        }
        self.secrets.push((name.to_string(), value.to_string()));
        self.secrets
            .sort_by(|a, b| b.1.len().cmp(&a.1.len()).then_with(|| a.0.cmp(&b.0)));
        true
    }

    /// Adds every secret `other` knows (under its name there).
    pub fn merge(&mut self, other: &Redactor) {
        for (name, value) in &other.secrets {
            self.add_secret(name, value);
        }
    }

    /// Whether no secret is known.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// Names of the secrets this redactor replaces.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.secrets.iter().map(|(n, _)| n.as_str())
    }

    /// Replaces every occurrence of a known secret value in `text` with `<redacted:NAME>`, in one
    /// left-to-right pass (a replacement is never matched again), preferring the longest value
    /// at each position.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if self.secrets.is_empty() || !self.secrets.iter().any(|(_, v)| text.contains(v.as_str())) {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len());
        let mut i = 0;
        while i < text.len() {
            let rest = &text[i..];
            if let Some((name, value)) = self.secrets.iter().find(|(_, v)| rest.starts_with(v.as_str())) {
                out.push_str("<redacted:");
                out.push_str(name);
                out.push('>');
                i += value.len();
            } else {
                let Some(c) = rest.chars().next() else { break };
                out.push(c);
                i += c.len_utf8();
            }
        }
        Cow::Owned(out)
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("names", &self.names().collect::<Vec<_>>())
            .finish()
    }
}

/// The redactor of this process: what the CLI applies to everything it prints that it did not
/// write itself (error messages, progress, tracing lines), next to the reports that take a
/// redactor explicitly. Empty until [`install`] is called.
static PROCESS: RwLock<Redactor> = RwLock::new(Redactor { secrets: Vec::new() });

/// Adds the secrets of `redactor` to the process-wide redactor (see [`redact_output`]).
pub fn install(redactor: &Redactor) {
    let mut guard = PROCESS.write().unwrap_or_else(|e| e.into_inner());
    guard.merge(redactor);
}

/// A copy of the process-wide redactor.
pub fn installed() -> Redactor {
    PROCESS.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// `text` with every secret known to the process-wide redactor replaced.
pub fn redact_output(text: &str) -> Cow<'_, str> {
    let guard = PROCESS.read().unwrap_or_else(|e| e.into_inner());
    match guard.redact(text) {
        Cow::Borrowed(_) => Cow::Borrowed(text),
        Cow::Owned(s) => Cow::Owned(s),
    }
}

/// Applies an optional redactor.
pub(crate) fn redact_opt<'a>(redactor: Option<&Redactor>, text: &'a str) -> Cow<'a, str> {
    match redactor {
        Some(r) => r.redact(text),
        None => Cow::Borrowed(text),
    }
}

/// The password of `scheme://user:password@host...`, if any.
pub(crate) fn url_password(value: &str) -> Option<&str> {
    let (_, rest) = value.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (_, pw) = userinfo.split_once(':')?;
    (!pw.is_empty()).then_some(pw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("POSTGRES_PASSWORD", true)]
    #[case("mysql_root_passwd", true)]
    #[case("JWT_SECRET", true)]
    #[case("GitHub_Token", true)]
    #[case("OPENAI_API_KEY", true)]
    #[case("TLS_PRIVATE_KEY", true)]
    #[case("AWS_SECRET_ACCESS_KEY", true)]
    #[case("DB_CREDENTIALS", true)]
    #[case("POSTGRES_USER", false)]
    #[case("PWD", false)]
    #[case("PHOENIX_PORT", false)]
    #[case("AUTHOR", false)]
    fn secret_names(#[case] name: &str, #[case] secret: bool) {
        assert_eq!(is_secret_name(name), secret);
    }

    #[rstest]
    #[case::replaced(
        "auth failed for password hunter22",
        "auth failed for password <redacted:DB_PASSWORD>"
    )]
    #[case::every_occurrence("hunter22/hunter22", "<redacted:DB_PASSWORD>/<redacted:DB_PASSWORD>")]
    #[case::longest_first("tok=sk-abcdef123456", "tok=<redacted:API_TOKEN>")]
    #[case::untouched("nothing here", "nothing here")]
    #[case::unicode_around("é hunter22 ✓", "é <redacted:DB_PASSWORD> ✓")]
    fn redacts(#[case] input: &str, #[case] expected: &str) {
        let r = Redactor::from_pairs([
            ("DB_PASSWORD", "hunter22"),
            ("API_TOKEN", "sk-abcdef123456"),
            ("SHORT_SECRET", "abcdef"),
            ("POSTGRES_USER", "phoenix"),
        ]);
        assert_eq!(r.redact(input), expected);
    }

    #[test]
    fn non_secret_names_and_short_values_are_not_redacted() {
        let r = Redactor::from_pairs([("POSTGRES_USER", "phoenix"), ("PASSWORD", "abc")]);
        assert!(r.is_empty());
        assert_eq!(r.redact("phoenix abc"), "phoenix abc");
    }

    #[test]
    fn a_value_that_looks_like_the_marker_is_not_rematched() {
        let r = Redactor::from_pairs([("A_SECRET", "redacted"), ("B_TOKEN", "xyzw")]);
        assert_eq!(r.redact("xyzw"), "<redacted:B_TOKEN>");
    }

    #[test]
    fn url_credentials_are_redacted_whatever_the_name() {
        let r = Redactor::from_pairs([("DATABASE_URL", "postgres://app:s3cr3t-pw@db:5432/app")]);
        assert_eq!(
            r.redact("connect postgres://app:s3cr3t-pw@db"),
            "connect postgres://app:<redacted:DATABASE_URL>@db"
        );
    }

    #[test]
    fn debug_never_shows_values() {
        let r = Redactor::from_pairs([("DB_PASSWORD", "hunter22")]);
        let dbg = format!("{r:?}");
        assert!(dbg.contains("DB_PASSWORD") && !dbg.contains("hunter22"), "{dbg}");
    }

    #[test]
    fn env_files_are_parsed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.env");
        std::fs::write(
            &p,
            "# comment\n\nPOSTGRES_USER=phoenix\nexport POSTGRES_PASSWORD=\"quoted pw\"\nAPI_TOKEN='tok-1234'\nnot an assignment\n=novalue\n",
        )
        .unwrap();
        let r = Redactor::from_env_files([&p]).unwrap();
        assert_eq!(r.names().collect::<Vec<_>>(), ["POSTGRES_PASSWORD", "API_TOKEN"]);
        assert_eq!(
            r.redact("quoted pw tok-1234 phoenix"),
            "<redacted:POSTGRES_PASSWORD> <redacted:API_TOKEN> phoenix"
        );
    }

    #[test]
    fn merge_keeps_both_sides() {
        let mut a = Redactor::from_pairs([("DB_PASSWORD", "hunter22")]);
        a.merge(&Redactor::from_pairs([
            ("API_TOKEN", "sk-abcdef123456"),
            ("DB_PASSWORD", "hunter22"),
        ]));
        assert_eq!(
            a.redact("hunter22 sk-abcdef123456"),
            "<redacted:DB_PASSWORD> <redacted:API_TOKEN>"
        );
        assert_eq!(a.names().count(), 2);
    }

    #[test]
    fn the_installed_redactor_applies_to_process_output() {
        let probe = "installed-probe-5d41402a";
        assert_eq!(redact_output(probe), probe, "nothing installed yet for this value");
        install(&Redactor::from_pairs([("PROBE_TOKEN", probe)]));
        assert_eq!(redact_output(&format!("x {probe} y")), "x <redacted:PROBE_TOKEN> y");
        assert!(installed().names().any(|n| n == "PROBE_TOKEN"));
    }

    #[test]
    fn the_bundled_phoenix_env_is_covered() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../compose/phoenix.env");
        let r = Redactor::from_env_files([&p]).unwrap();
        assert!(r.names().any(|n| n == "POSTGRES_PASSWORD"), "{r:?}");
    }

    #[test]
    fn a_missing_env_file_is_an_error_naming_it() {
        let err = Redactor::from_env_files(["/nonexistent/hydra.env"]).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/hydra.env"), "{err}");
    }
}
