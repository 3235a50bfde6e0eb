//! The push options Slipway knows (`git push -o KEY[=VALUE]`), checked at validate: a
//! misspelled one is refused naming it, a did-you-mean and the known options, never
//! silently ignored (`-o allow-data-los` would otherwise deploy as if not given).
//!
//! An option that looks like none of Slipway's (no `allow-` prefix, not close to a known
//! name) is warned about and ignored: git sends every `push.pushOption` of the user's
//! configuration to every remote, so options meant for another host (GitLab's `ci.skip`)
//! reach Slipway too.

/// The options Slipway acts on, as the help names them.
pub const KNOWN: &[&str] = &[
    "allow-data-loss",
    "allow-service-upgrade",
    "allow-vulnerable=ID[,ID]",
    "allow-secret=FILE:LINE[,FILE:LINE]",
];

/// Options that are switches: given alone, `=true` or `=false`.
const SWITCHES: &[&str] = &["allow-data-loss", "allow-service-upgrade"];
/// Options that need a value.
const VALUED: &[&str] = &["allow-vulnerable", "allow-secret"];

/// Check a push's options: the warnings to show (options for someone else, ignored), or the
/// refusal of the first one that is Slipway's but wrong.
pub fn check(options: &[String]) -> Result<Vec<String>, String> {
    let known = || KNOWN.join(", ");
    let mut warnings = Vec::new();
    for option in options {
        let (name, value) = match option.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (option.as_str(), None),
        };
        if SWITCHES.contains(&name) {
            if matches!(value, None | Some("true") | Some("false")) {
                continue;
            }
            return Err(format!(
                "push option `{option}`: {name} takes no value (or true/false); push with -o {name}"
            ));
        }
        if VALUED.contains(&name) {
            if value.is_some_and(|v| !v.trim().is_empty()) {
                continue;
            }
            let what = if name == "allow-secret" {
                "FILE:LINE"
            } else {
                "ID"
            };
            return Err(format!(
                "push option `{option}` names nothing; push with -o {name}={what}"
            ));
        }
        let names = SWITCHES.iter().chain(VALUED).copied();
        let hint = slipway_config::suggest::closest(name, names);
        if name.starts_with("allow-") || hint.is_some() {
            let mean = hint
                .map(|h| format!("; did you mean `{h}`?"))
                .unwrap_or_default();
            return Err(format!(
                "unknown push option `{option}`{mean} Slipway knows: {}",
                known()
            ));
        }
        warnings.push(format!(
            "warning: push option `{option}` is not Slipway's and is ignored (Slipway knows: {})",
            known()
        ));
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_of(options: &[&str]) -> Result<Vec<String>, String> {
        check(&options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn known_options_pass() {
        let ok = check_of(&[
            "allow-data-loss",
            "allow-service-upgrade=true",
            "allow-data-loss=false",
            "allow-vulnerable=GHSA-1,CVE-2",
            "allow-secret=a.env:3",
        ]);
        assert_eq!(ok, Ok(Vec::new()));
    }

    #[test]
    fn misspelled_or_wrong_options_are_refused_naming_them() {
        let e = check_of(&["allow-data-los"]).unwrap_err();
        assert!(
            e.contains("`allow-data-los`; did you mean `allow-data-loss`?"),
            "{e}"
        );
        assert!(
            e.contains("Slipway knows: allow-data-loss, allow-service-upgrade"),
            "{e}"
        );
        let e = check_of(&["alow-service-upgrade"]).unwrap_err();
        assert!(e.contains("did you mean `allow-service-upgrade`?"), "{e}");
        let e = check_of(&["allow-everything"]).unwrap_err();
        assert!(
            e.starts_with("unknown push option `allow-everything` Slipway knows"),
            "{e}"
        );
        let e = check_of(&["allow-data-loss=yes"]).unwrap_err();
        assert!(e.contains("takes no value"), "{e}");
        let e = check_of(&["allow-secret"]).unwrap_err();
        assert!(e.contains("-o allow-secret=FILE:LINE"), "{e}");
    }

    #[test]
    fn another_hosts_options_are_warned_about() {
        let w = check_of(&["ci.skip"]).unwrap();
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains("`ci.skip` is not Slipway's and is ignored"),
            "{}",
            w[0]
        );
    }
}
