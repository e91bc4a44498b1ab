//! Host patterns: `web[01:20].example.com` expands to web01 ... web20, the
//! padding of the start kept; several ranges expand as a product.

/// The most host names the patterns of one inventory may expand to. Counted
/// before expanding, so a pattern such as `h[1:99999][1:99999]` is refused
/// at once instead of exhausting memory.
pub const MAX_NAMES: u64 = 100_000;

/// One piece of a pattern: text as written, or a range.
enum Part<'a> {
    Text(&'a str),
    Range { from: u64, to: u64, width: usize },
}

/// How many names a pattern stands for, without expanding it; `None` when
/// the count does not fit in a u64.
pub fn count(pattern: &str) -> Result<Option<u64>, String> {
    Ok(parse(pattern)?.iter().try_fold(1u64, |n, part| match part {
        Part::Text(_) => Some(n),
        Part::Range { from, to, .. } => (to - from).checked_add(1).and_then(|k| n.checked_mul(k)),
    }))
}

/// The names a pattern stands for, in order (the leftmost range varies
/// slowest). Refuses a pattern of more than `MAX_NAMES` names.
pub fn expand(pattern: &str) -> Result<Vec<String>, String> {
    match count(pattern)? {
        Some(n) if n <= MAX_NAMES => {}
        n => return Err(too_many(pattern, n, None)),
    }
    let mut names = vec![String::new()];
    for part in parse(pattern)? {
        match part {
            Part::Text(text) => {
                for name in &mut names {
                    name.push_str(text);
                }
            }
            Part::Range { from, to, width } => {
                names = names
                    .iter()
                    .flat_map(|prefix| (from..=to).map(move |v| format!("{prefix}{v:0width$}")))
                    .collect();
            }
        }
    }
    Ok(names)
}

/// Says that `pattern` stands for `count` names (`None`: too many to count),
/// `total` of them with the patterns before it.
pub fn too_many(pattern: &str, count: Option<u64>, total: Option<u64>) -> String {
    let count = count.map_or("more than 18446744073709551615".to_string(), |n| {
        n.to_string()
    });
    let total = total.map_or(String::new(), |t| {
        format!(", {t} with the patterns before it")
    });
    format!(
        "{pattern:?} stands for {count} hosts{total}; an inventory may expand to at most {MAX_NAMES} host names (its ranges multiply: check their bounds)"
    )
}

fn parse(pattern: &str) -> Result<Vec<Part<'_>>, String> {
    let mut parts = Vec::new();
    let mut rest = pattern;
    while !rest.is_empty() {
        let Some(open) = rest.find(['[', ']']) else {
            parts.push(Part::Text(rest));
            break;
        };
        if rest[open..].starts_with(']') {
            return Err(format!("{pattern:?}: ']' without '['"));
        }
        parts.push(Part::Text(&rest[..open]));
        let inner_and_rest = &rest[open + 1..];
        let close = inner_and_rest
            .find(']')
            .ok_or_else(|| format!("{pattern:?}: '[' without ']'"))?;
        parts.push(range(pattern, &inner_and_rest[..close])?);
        rest = &inner_and_rest[close + 1..];
    }
    Ok(parts)
}

/// `01:20` -> from 1 to 20, padded to 2 digits.
fn range<'a>(pattern: &str, inner: &str) -> Result<Part<'a>, String> {
    let malformed = || {
        format!(
            "{pattern:?}: bad range [{inner}]; write it as [START:END] with numbers, e.g. [01:20]"
        )
    };
    let (start, end) = inner.split_once(':').ok_or_else(malformed)?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(start) || !digits(end) {
        return Err(malformed());
    }
    let (from, to): (u64, u64) = match (start.parse(), end.parse()) {
        (Ok(a), Ok(b)) => (a, b),
        _ => return Err(malformed()),
    };
    if from > to {
        return Err(format!(
            "{pattern:?}: range [{inner}] runs backwards; write [{end}:{start}]"
        ));
    }
    let width = if start.len() > 1 && start.starts_with('0') {
        start.len()
    } else {
        0
    };
    Ok(Part::Range { from, to, width })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_name_is_itself() {
        assert_eq!(expand("db1.example.com").unwrap(), ["db1.example.com"]);
    }

    #[test]
    fn zero_padding_is_kept() {
        let names = expand("web[01:12].example.com").unwrap();
        assert_eq!(names.len(), 12);
        assert_eq!(names[0], "web01.example.com");
        assert_eq!(names[8], "web09.example.com");
        assert_eq!(names[11], "web12.example.com");
    }

    #[test]
    fn padding_holds_past_the_width() {
        assert_eq!(expand("h[08:10]").unwrap(), ["h08", "h09", "h10"]);
        assert_eq!(expand("h[098:100]").unwrap(), ["h098", "h099", "h100"]);
    }

    #[test]
    fn unpadded_ranges() {
        assert_eq!(expand("db[1:3]").unwrap(), ["db1", "db2", "db3"]);
        assert_eq!(expand("db[9:10]").unwrap(), ["db9", "db10"]);
        assert_eq!(expand("db[0:1]").unwrap(), ["db0", "db1"]);
        assert_eq!(expand("[1:2]").unwrap(), ["1", "2"]);
    }

    #[test]
    fn several_ranges_expand_as_a_product() {
        assert_eq!(
            expand("r[1:2]-n[01:03]").unwrap(),
            ["r1-n01", "r1-n02", "r1-n03", "r2-n01", "r2-n02", "r2-n03"]
        );
    }

    #[test]
    fn malformed_ranges_are_refused() {
        for bad in [
            "web[1-3]",
            "web[a:c]",
            "web[1:]",
            "web[:3]",
            "web[1:3",
            "web1:3]",
            "web[]",
            "web[1:2:3]",
            "web[-1:3]",
            "web[ 1:3]",
        ] {
            let err = expand(bad).unwrap_err();
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn a_huge_product_of_ranges_is_refused_before_expanding() {
        let started = std::time::Instant::now();
        let err = expand("h[1:99999]-[1:99999]").unwrap_err();
        assert!(err.contains("\"h[1:99999]-[1:99999]\""), "{err}");
        assert!(err.contains("9999800001 hosts"), "{err}");
        assert!(err.contains("at most 100000"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(count("h[0:18446744073709551615]").unwrap(), None);
        let err = expand("h[0:18446744073709551615]").unwrap_err();
        assert!(err.contains("more than"), "{err}");
    }

    #[test]
    fn a_pattern_may_stand_for_exactly_the_limit() {
        assert_eq!(count("h[1:100000]").unwrap(), Some(MAX_NAMES));
        assert_eq!(expand("h[1:100000]").unwrap().len(), 100_000);
        assert!(expand("h[0:100000]").is_err());
    }

    #[test]
    fn reversed_ranges_are_refused() {
        let err = expand("web[20:01]").unwrap_err();
        assert!(err.contains("backwards"), "{err}");
    }
}
