//! What counts as a secret-looking variable name: one definition shared by the posture checks
//! (which flag secrets in plain env) and the reporters (which redact their values).

/// Whether an environment variable name looks like it holds a secret (`*_FILE` names a file,
/// which is the safe way, and does not count).
pub fn is_secret_name(name: &str) -> bool {
    let up = name.to_ascii_uppercase();
    if up.ends_with("_FILE") || up.ends_with("_PATH") {
        return false;
    }
    const MARKERS: [&str; 9] = [
        "PASSWORD",
        "PASSWD",
        "SECRET",
        "TOKEN",
        "APIKEY",
        "API_KEY",
        "PRIVATE_KEY",
        "CREDENTIAL",
        "ACCESS_KEY",
    ];
    MARKERS.iter().any(|m| up.contains(m))
        || up
            .split('_')
            .any(|part| part == "KEY" || part == "PASS" || (part == "PWD" && up != "PWD"))
}
