//! Cron schedules (`crons.NAME.spec`): five crontab fields, names of months and days, steps,
//! ranges, lists, the `@daily`-style macros, and Platform.sh's `H` (a hashed value, to spread jobs).

/// One field of a schedule: its name and inclusive range.
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const FIELDS: [Field; 5] = [
    Field {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
    },
    Field {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
    },
    Field {
        name: "day of month",
        min: 1,
        max: 31,
        names: &[],
    },
    Field {
        name: "month",
        min: 1,
        max: 12,
        names: &[
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ],
    },
    Field {
        name: "day of week",
        min: 0,
        max: 7,
        names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    },
];

const MACROS: &[&str] = &[
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];

/// Check a schedule; Err says what is wrong in words.
pub fn check(spec: &str) -> Result<(), String> {
    let spec = spec.trim();
    if spec.starts_with('@') {
        return if MACROS.contains(&spec.to_ascii_lowercase().as_str()) {
            Ok(())
        } else {
            Err(format!(
                "unknown schedule `{spec}` (use five fields, or one of {})",
                MACROS.join(", ")
            ))
        };
    }
    let parts: Vec<&str> = spec.split_whitespace().collect();
    if parts.len() != 5 {
        return Err(format!("schedule `{spec}` needs 5 fields (minute hour day-of-month month day-of-week), found {}", parts.len()));
    }
    for (part, field) in parts.iter().zip(FIELDS.iter()) {
        for item in part.split(',') {
            check_item(item, field)
                .map_err(|e| format!("schedule `{spec}`: {} `{item}` {e}", field.name))?;
        }
    }
    Ok(())
}

/// One comma-separated item: `*`, `N`, `N-M`, any of those with `/STEP`, `H`, `H(N-M)`, `?`.
fn check_item(item: &str, f: &Field) -> Result<(), String> {
    let (base, step) = match item.split_once('/') {
        Some((b, s)) => (b, Some(s)),
        None => (item, None),
    };
    if let Some(s) = step {
        match s.parse::<u32>() {
            Ok(n) if n >= 1 && n <= f.max.max(1) => {}
            _ => return Err(format!("has a bad step `{s}` (1 to {})", f.max.max(1))),
        }
    }
    match base {
        "*" | "H" => Ok(()),
        "?" if f.name == "day of month" || f.name == "day of week" => Ok(()),
        "" => Err("is empty".into()),
        b if b.starts_with("H(") && b.ends_with(')') => range(&b[2..b.len() - 1], f),
        b => range(b, f),
    }
}

/// `N` or `N-M` within the field's range.
fn range(s: &str, f: &Field) -> Result<(), String> {
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let lo = value(a, f)?;
    if let Some(b) = b {
        let hi = value(b, f)?;
        if hi < lo {
            return Err(format!("is a backwards range ({lo} > {hi})"));
        }
    }
    Ok(())
}

/// A number or a name within the field's range.
fn value(s: &str, f: &Field) -> Result<u32, String> {
    let lower = s.to_ascii_lowercase();
    if let Some(i) = f.names.iter().position(|n| *n == lower) {
        return Ok(i as u32 + if f.min == 1 { 1 } else { 0 });
    }
    match s.parse::<u32>() {
        Ok(n) if (f.min..=f.max).contains(&n) => Ok(n),
        Ok(_) => Err(format!("is out of range ({} to {})", f.min, f.max)),
        Err(_) => Err(format!(
            "is not a number{}",
            if f.names.is_empty() {
                String::new()
            } else {
                format!(" or one of {}", f.names.join(", "))
            }
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn accepts_usual_schedules() {
        for s in [
            "*/5 * * * *",
            "0 3 * * *",
            "H * * * *",
            "H(0-29)/10 * * * *",
            "17,47 * * * *",
            "0 10 1,15 * *",
            "0 */1 * * *",
            "30 4 * jan-mar mon-fri",
            "0 0 ? * SUN",
            "@daily",
            " 45 1 * * * ",
            "0 0 1 12 7",
        ] {
            assert_eq!(check(s), Ok(()), "{s}");
        }
    }

    #[test]
    fn refuses_broken_schedules_with_reasons() {
        let cases = [
            ("* * *", "needs 5 fields"),
            ("61 * * * *", "minute `61` is out of range (0 to 59)"),
            ("* 24 * * *", "hour `24` is out of range (0 to 23)"),
            ("* * 0 * *", "day of month `0` is out of range (1 to 31)"),
            ("*/0 * * * *", "bad step `0`"),
            ("x * * * *", "minute `x` is not a number"),
            ("* * * foo *", "or one of jan"),
            ("5-2 * * * *", "backwards range"),
            ("1,,2 * * * *", "is empty"),
            ("@sometimes", "unknown schedule"),
            ("", "needs 5 fields"),
        ];
        for (s, want) in cases {
            let e = check(s).expect_err(s);
            assert!(e.contains(want), "{s}: {e}");
        }
    }
}
