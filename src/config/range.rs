//! Host patterns: `web[01:20].example.com` expands to web01 ... web20, the
//! padding of the start kept; several ranges expand as a product.

/// The names a pattern stands for, in order (the leftmost range varies slowest).
pub fn expand(pattern: &str) -> Result<Vec<String>, String> {
    let mut names = vec![String::new()];
    let mut rest = pattern;
    while !rest.is_empty() {
        let Some(open) = rest.find(['[', ']']) else {
            append(&mut names, rest);
            break;
        };
        if rest[open..].starts_with(']') {
            return Err(format!("{pattern:?}: ']' without '['"));
        }
        append(&mut names, &rest[..open]);
        let inner_and_rest = &rest[open + 1..];
        let close = inner_and_rest
            .find(']')
            .ok_or_else(|| format!("{pattern:?}: '[' without ']'"))?;
        let values = range(pattern, &inner_and_rest[..close])?;
        names = names
            .iter()
            .flat_map(|prefix| values.iter().map(move |v| format!("{prefix}{v}")))
            .collect();
        rest = &inner_and_rest[close + 1..];
    }
    Ok(names)
}

fn append(names: &mut [String], text: &str) {
    for name in names {
        name.push_str(text);
    }
}

/// `01:20` -> ["01", ..., "20"].
fn range(pattern: &str, inner: &str) -> Result<Vec<String>, String> {
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
    if to - from >= 100_000 {
        return Err(format!("{pattern:?}: range [{inner}] is too large"));
    }
    let width = if start.len() > 1 && start.starts_with('0') {
        start.len()
    } else {
        0
    };
    Ok((from..=to).map(|n| format!("{n:0width$}")).collect())
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
    fn reversed_ranges_are_refused() {
        let err = expand("web[20:01]").unwrap_err();
        assert!(err.contains("backwards"), "{err}");
    }
}
