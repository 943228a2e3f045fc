//! Env files (`env_file:`, the project `.env`) read the way compose tools read them. The one
//! parser of the workspace: the spec's password lookup, compose profiles, redaction and the
//! benches all go through it, so they cannot disagree on what a file says.

/// One assignment of an env file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment<'a> {
    /// The variable name, borrowed from the text.
    pub name: &'a str,
    /// The value as Docker Compose v2 and python-dotenv read it (a quoted value ends at its
    /// closing quote; an unquoted one loses a trailing ` # comment`).
    pub value: String,
    /// The value as docker-compose 1.x reads it, when it differs (it keeps ` # comment`).
    pub legacy: Option<String>,
}

/// Every assignment of `text`, in order: `#` comments, blank lines and malformed lines are
/// skipped, an `export ` prefix is allowed. Pure.
pub fn parse(text: &str) -> Vec<Assignment<'_>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map(str::trim_start).unwrap_or(line);
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        let name = name.trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            continue;
        }
        let value = value.trim();
        let (value, legacy) = match quoted(value) {
            Some(inner) => (inner.to_string(), None),
            None => {
                let uncommented = strip_inline_comment(value);
                let legacy = (uncommented != value).then(|| value.to_string());
                (uncommented.to_string(), legacy)
            }
        };
        out.push(Assignment { name, value, legacy });
    }
    out
}

/// The value of `var` in `text`; the last assignment wins, as in every compose tool. Pure.
pub fn value(text: &str, var: &str) -> Option<String> {
    parse(text).into_iter().rev().find(|a| a.name == var).map(|a| a.value)
}

/// Every reading of every assignment (`(name, value)`, both tools' readings where they differ):
/// what a redactor must know. Pure.
pub fn readings(text: &str) -> Vec<(&str, String)> {
    let mut out = Vec::new();
    for a in parse(text) {
        if let Some(legacy) = a.legacy {
            out.push((a.name, legacy));
        }
        out.push((a.name, a.value));
    }
    out
}

/// The text between a leading quote and its closing quote, if `v` starts with one.
fn quoted(v: &str) -> Option<&str> {
    let q = v.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let rest = &v[1..];
    rest.find(q).map(|end| &rest[..end])
}

/// `v` without a trailing ` # comment`.
fn strip_inline_comment(v: &str) -> &str {
    match v.find(" #").or_else(|| v.find("\t#")) {
        Some(i) => v[..i].trim_end(),
        None => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("PW=secret\n", Some("secret"))]
    #[case("# c\nPW = \"quoted\"\n", Some("quoted"))]
    #[case("export PW='single'\n", Some("single"))]
    #[case("PW=first\nPW=last\n", Some("last"))]
    #[case("PW=tok # rotated\n", Some("tok"))]
    #[case("OTHER=1\nnot an assignment\n=novalue\n", None)]
    fn values(#[case] text: &str, #[case] expected: Option<&str>) {
        assert_eq!(value(text, "PW").as_deref(), expected);
    }

    #[rstest]
    #[case::inline_comment("API_TOKEN=tok-9876 # rotated monthly", &["tok-9876 # rotated monthly", "tok-9876"])]
    #[case::quoted_then_comment("API_TOKEN=\"tok 9876\" # note", &["tok 9876"])]
    #[case::single_quoted("API_TOKEN='tok#9876'", &["tok#9876"])]
    #[case::hash_inside_value("API_TOKEN=tok#9876", &["tok#9876"])]
    fn readings_cover_both_tools(#[case] line: &str, #[case] values: &[&str]) {
        let got: Vec<String> = readings(line).into_iter().map(|(_, v)| v).collect();
        assert_eq!(got, values);
    }
}
