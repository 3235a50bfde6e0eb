//! "Did you mean ...?" suggestions for misspelled keys.

/// The known name closest to `input`, if it is close enough to be a likely typo.
pub fn closest<'a>(input: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let lower = input.to_ascii_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for k in known {
        let d = strsim::damerau_levenshtein(&lower, &k.to_ascii_lowercase());
        let limit = (k.chars().count().max(input.chars().count()) / 3).clamp(1, 3);
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, k));
        }
    }
    best.map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::closest;

    #[test]
    fn suggests_near_misses_only() {
        let keys = ["deploy", "build", "post_deploy"];
        assert_eq!(closest("deplyo", keys.iter().copied()), Some("deploy"));
        assert_eq!(closest("biuld", keys.iter().copied()), Some("build"));
        assert_eq!(
            closest("postdeploy", keys.iter().copied()),
            Some("post_deploy")
        );
        assert_eq!(closest("zzzzzz", keys.iter().copied()), None);
    }
}
