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

/// A parsed schedule: the minutes, hours, days, months and weekdays it fires at (UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u32,
    days_of_month: u32,
    months: u16,
    days_of_week: u8,
    /// The day-of-month field was `*` or `?` (then only the weekday decides, and the other way round).
    any_day_of_month: bool,
    /// The day-of-week field was `*` or `?`.
    any_day_of_week: bool,
}

/// Check a schedule; Err says what is wrong in words (including a schedule that never fires).
pub fn check(spec: &str) -> Result<(), String> {
    parse(spec, "").map(|_| ())
}

/// Parse a schedule; `seed` (the cron's name) picks the values of `H`. A schedule that can
/// never fire (`0 0 31 2 *`) is an error.
pub fn parse(spec: &str, seed: &str) -> Result<Schedule, String> {
    let spec = spec.trim();
    let expanded;
    let fields_text = if spec.starts_with('@') {
        expanded = match spec.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            _ => {
                return Err(format!(
                    "unknown schedule `{spec}` (use five fields, or one of {})",
                    MACROS.join(", ")
                ))
            }
        };
        expanded
    } else {
        spec
    };
    let parts: Vec<&str> = fields_text.split_whitespace().collect();
    if parts.len() != 5 {
        return Err(format!("schedule `{spec}` needs 5 fields (minute hour day-of-month month day-of-week), found {}", parts.len()));
    }
    let hash = fnv(seed);
    let mut sets = [0u64; 5];
    for (i, (part, field)) in parts.iter().zip(FIELDS.iter()).enumerate() {
        for item in part.split(',') {
            sets[i] |= expand(item, field, hash)
                .map_err(|e| format!("schedule `{spec}`: {} `{item}` {e}", field.name))?;
        }
    }
    // Day of week 7 is Sunday, as 0.
    if sets[4] & (1 << 7) != 0 {
        sets[4] = (sets[4] | 1) & 0x7f;
    }
    let any = |p: &str| p.starts_with('*') || p == "?";
    let schedule = Schedule {
        minutes: sets[0],
        hours: sets[1] as u32,
        days_of_month: sets[2] as u32,
        months: sets[3] as u16,
        days_of_week: sets[4] as u8,
        any_day_of_month: any(parts[2]),
        any_day_of_week: any(parts[4]),
    };
    if !schedule.any_day_of_month && schedule.any_day_of_week {
        let fits = (1..=12u32).any(|m| {
            schedule.months & (1 << m) != 0
                && (1..=days_in_month(2000, m)).any(|d| schedule.days_of_month & (1 << d) != 0)
        });
        if !fits {
            return Err(format!(
                "schedule `{spec}` never fires: no day of month it names exists in the months it names"
            ));
        }
    }
    Ok(schedule)
}

impl Schedule {
    /// Whether it fires at `minute` (minutes since 1970-01-01 00:00 UTC).
    pub fn fires_at(&self, minute: i64) -> bool {
        let day = minute.div_euclid(1440);
        let in_day = minute.rem_euclid(1440);
        self.fires_on(day)
            && self.hours & (1 << (in_day / 60)) != 0
            && self.minutes & (1 << (in_day % 60)) != 0
    }

    /// The first minute after `minute` it fires at (None: not within 8 years).
    pub fn next_after(&self, minute: i64) -> Option<i64> {
        let first_day = (minute + 1).div_euclid(1440);
        for day in first_day..first_day + 366 * 8 {
            if !self.fires_on(day) {
                continue;
            }
            let from = if day == first_day {
                (minute + 1).rem_euclid(1440)
            } else {
                0
            };
            if let Some(m) = (from..1440)
                .find(|m| self.hours & (1 << (m / 60)) != 0 && self.minutes & (1 << (m % 60)) != 0)
            {
                return Some(day * 1440 + m);
            }
        }
        None
    }

    /// Whether it fires on `day` (days since 1970-01-01): month, and day of month or weekday
    /// as cron has it (either when both are restricted).
    fn fires_on(&self, day: i64) -> bool {
        let (_, m, d) = civil_from_days(day);
        let weekday = (day + 4).rem_euclid(7) as u32;
        if self.months & (1 << m) == 0 {
            return false;
        }
        let dom = self.days_of_month & (1 << d) != 0;
        let dow = self.days_of_week & (1 << weekday) != 0;
        match (self.any_day_of_month, self.any_day_of_week) {
            (false, false) => dom || dow,
            _ => dom && dow,
        }
    }
}

/// The wall-clock minute in `zone` (minutes since 1970-01-01 00:00 of that clock) of the UTC
/// minute `minute`; schedules of an app with a `timezone` are matched against it. When clocks
/// go back an hour, that hour's runs happen twice; when they go forward, the skipped hour's
/// runs do not happen.
pub fn local_minute(minute: i64, zone: &jiff::tz::TimeZone) -> i64 {
    let offset = jiff::Timestamp::from_second(minute.saturating_mul(60))
        .map(|t| zone.to_offset(t).seconds())
        .unwrap_or(0);
    minute + i64::from(offset).div_euclid(60)
}

/// (year, month 1-12, day 1-31) of a day number (days since 1970-01-01), proleptic Gregorian.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

/// Days in a month (February of a leap year: 29).
fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// FNV-1a of a cron's name, for `H`.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// One comma-separated item as a bit set: `*`, `N`, `N-M`, any of those with `/STEP`, `H`,
/// `H(N-M)`, `?`.
fn expand(item: &str, f: &Field, hash: u64) -> Result<u64, String> {
    let (base, step) = match item.split_once('/') {
        Some((b, s)) => (b, Some(s)),
        None => (item, None),
    };
    let step = match step {
        None => None,
        Some(s) => match s.parse::<u32>() {
            Ok(n) if n >= 1 && n <= f.max.max(1) => Some(n),
            _ => return Err(format!("has a bad step `{s}` (1 to {})", f.max.max(1))),
        },
    };
    let hashed = |lo: u32, hi: u32| lo + (hash % u64::from(hi - lo + 1)) as u32;
    let (lo, hi) = match base {
        "*" => (f.min, f.max),
        "?" if f.name == "day of month" || f.name == "day of week" => (f.min, f.max),
        "" => return Err("is empty".into()),
        "H" => match step {
            // `H/N`: every N from a hashed start below N.
            Some(n) => (f.min + hashed(0, n.min(f.max - f.min + 1) - 1), f.max),
            None => {
                let v = hashed(
                    f.min,
                    f.max.min(if f.name == "day of month" { 28 } else { f.max }),
                );
                (v, v)
            }
        },
        b if b.starts_with("H(") && b.ends_with(')') => {
            let (a, z) = range(&b[2..b.len() - 1], f)?;
            match step {
                Some(n) => (a + hashed(0, n.min(z - a + 1) - 1), z),
                None => {
                    let v = hashed(a, z);
                    (v, v)
                }
            }
        }
        b => {
            let (a, z) = range(b, f)?;
            // `N/STEP` means from N to the end.
            if step.is_some() && !b.contains('-') {
                (a, f.max)
            } else {
                (a, z)
            }
        }
    };
    let step = step.unwrap_or(1);
    let mut bits = 0u64;
    let mut v = lo;
    while v <= hi {
        bits |= 1 << v;
        v += step;
    }
    Ok(bits)
}

/// `N` or `N-M` within the field's range.
fn range(s: &str, f: &Field) -> Result<(u32, u32), String> {
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let lo = value(a, f)?;
    let hi = match b {
        Some(b) => value(b, f)?,
        None => lo,
    };
    if hi < lo {
        return Err(format!("is a backwards range ({lo} > {hi})"));
    }
    Ok((lo, hi))
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
    use super::{check, civil_from_days, parse};

    /// Minutes since the epoch of a UTC date and time.
    fn at(y: i64, mo: u32, d: u32, h: i64, mi: i64) -> i64 {
        let day = (0..30_000i64)
            .find(|z| civil_from_days(*z) == (y, mo, d))
            .expect("date");
        day * 1440 + h * 60 + mi
    }

    #[test]
    fn next_runs_follow_cron_rules() {
        let cases = [
            (
                "* * * * *",
                at(2026, 11, 29, 9, 30),
                at(2026, 11, 29, 9, 31),
            ),
            (
                "*/15 * * * *",
                at(2026, 11, 29, 9, 30),
                at(2026, 11, 29, 9, 45),
            ),
            ("0 3 * * *", at(2026, 11, 29, 9, 30), at(2026, 11, 30, 3, 0)),
            ("@hourly", at(2026, 11, 29, 9, 30), at(2026, 11, 29, 10, 0)),
            ("@daily", at(2026, 12, 31, 23, 59), at(2027, 1, 1, 0, 0)),
            ("@monthly", at(2026, 11, 29, 9, 30), at(2026, 12, 1, 0, 0)),
            ("0 0 29 2 *", at(2026, 11, 29, 9, 30), at(2028, 2, 29, 0, 0)),
            (
                "30 4 * * mon-fri",
                at(2026, 11, 28, 0, 0),
                at(2026, 11, 30, 4, 30),
            ),
            ("0 0 * * 7", at(2026, 11, 24, 0, 0), at(2026, 11, 29, 0, 0)),
            (
                "5,35 1-2 * * *",
                at(2026, 11, 29, 1, 5),
                at(2026, 11, 29, 1, 35),
            ),
            // Both day fields restricted: either one matching is enough.
            (
                "0 0 1 * sun",
                at(2026, 11, 23, 0, 0),
                at(2026, 11, 29, 0, 0),
            ),
        ];
        for (spec, from, want) in cases {
            let s = parse(spec, "job").expect(spec);
            assert_eq!(s.next_after(from), Some(want), "{spec}");
            assert!(s.fires_at(want), "{spec}");
        }
        let h = parse("H * * * *", "a").unwrap();
        assert_eq!(h, parse("H * * * *", "a").unwrap());
    }

    #[test]
    fn local_minutes_follow_the_zone_and_its_summer_time() {
        let paris = jiff::tz::TimeZone::get("Europe/Paris").expect("tzdata");
        let winter = at(2026, 1, 15, 12, 0);
        assert_eq!(super::local_minute(winter, &paris), winter + 60);
        let summer = at(2026, 7, 15, 12, 0);
        assert_eq!(super::local_minute(summer, &paris), summer + 120);
        assert_eq!(
            super::local_minute(summer, &jiff::tz::TimeZone::UTC),
            summer
        );
        // `0 3 * * *` in Paris fires at 01:00 UTC in summer.
        let s = parse("0 3 * * *", "job").unwrap();
        assert!(s.fires_at(super::local_minute(at(2026, 7, 15, 1, 0), &paris)));
        assert!(!s.fires_at(super::local_minute(at(2026, 7, 15, 3, 0), &paris)));
    }

    #[test]
    fn schedules_that_never_fire_are_refused() {
        for s in ["0 0 31 2 *", "0 0 30 feb *", "0 0 31 4,6 *"] {
            let e = check(s).expect_err(s);
            assert!(e.contains("never fires"), "{s}: {e}");
        }
        assert_eq!(check("0 0 31 2 mon"), Ok(()));
        assert_eq!(check("0 0 29 2 *"), Ok(()));
    }

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
