//! Release ids: `<UTC yyyymmddThhmmssZ>-<first 8 hex of the artifact's sha256>`,
//! the same on every host of one deploy. Sorting ids sorts them by time.

use chrono::{DateTime, Utc};

/// How far after this machine's clock a held release may be dated and
/// still set the next id: a day covers any clock that is merely off.
pub const AHEAD: chrono::Duration = chrono::Duration::days(1);

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReleaseId(String);

impl ReleaseId {
    pub fn new(at: DateTime<Utc>, sha256_hex: &str) -> ReleaseId {
        ReleaseId(format!(
            "{}-{}",
            at.format("%Y%m%dT%H%M%SZ"),
            &sha256_hex[..8.min(sha256_hex.len())]
        ))
    }

    /// Accepts only well-formed ids (what a user passes to `rollback --to`).
    pub fn parse(s: &str) -> Option<ReleaseId> {
        let (stamp, hash) = s.split_once('-')?;
        let ok_stamp = stamp.len() == 16
            && stamp.as_bytes()[8] == b'T'
            && stamp.ends_with('Z')
            && stamp[..8].bytes().all(|b| b.is_ascii_digit())
            && stamp[9..15].bytes().all(|b| b.is_ascii_digit());
        let ok_hash = hash.len() == 8 && hash.bytes().all(|b| b.is_ascii_hexdigit());
        (ok_stamp && ok_hash).then(|| ReleaseId(s.to_string()))
    }

    /// A new id that sorts after every id in `held`: stamped `now`, or one
    /// second after the newest held release when that is later (two deploys
    /// within one second, or a clock behind the fleet's). Ids then always
    /// follow the order of deploys, which rollback and pruning rely on.
    /// Held ids dated more than [`AHEAD`] after `now` do not count (one
    /// host's forged or mistyped name must not date every later release;
    /// the caller warns, see [`ReleaseId::is_far_ahead`]), and the id
    /// returned always parses back.
    pub fn next<'a>(
        now: DateTime<Utc>,
        sha256_hex: &str,
        held: impl IntoIterator<Item = &'a ReleaseId>,
    ) -> ReleaseId {
        use chrono::SubsecRound;
        // Ids hold whole seconds: compare in whole seconds.
        let now = now.trunc_subsecs(0);
        let newest = held
            .into_iter()
            .filter(|id| !id.is_far_ahead(now))
            .filter_map(ReleaseId::time)
            .max();
        let at = match newest {
            Some(t) if t >= now => t + chrono::Duration::seconds(1),
            _ => now,
        };
        let id = ReleaseId::new(at, sha256_hex);
        match ReleaseId::parse(id.as_str()) {
            Some(id) => id,
            None => ReleaseId::new(now, sha256_hex),
        }
    }

    /// Dated more than [`AHEAD`] after `now`: no deploy made it with a
    /// sane clock, so it does not set the next release's id.
    pub fn is_far_ahead(&self, now: DateTime<Utc>) -> bool {
        self.time().is_some_and(|t| t > now + AHEAD)
    }

    /// When the release was made, from its stamp.
    pub fn time(&self) -> Option<DateTime<Utc>> {
        chrono::NaiveDateTime::parse_from_str(&self.0[..16], "%Y%m%dT%H%M%SZ")
            .ok()
            .map(|t| t.and_utc())
    }

    /// The 8 hex digits of the artifact hash this release was made from.
    pub fn hash_prefix(&self) -> &str {
        &self.0[17..]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ReleaseId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn id_is_utc_stamp_and_hash_prefix() {
        let at = Utc.with_ymd_and_hms(2026, 11, 22, 3, 4, 5).unwrap();
        let id = ReleaseId::new(at, "deadbeefcafef00d");
        assert_eq!(id.as_str(), "20261122T030405Z-deadbeef");
        assert_eq!(id.hash_prefix(), "deadbeef");
        assert_eq!(ReleaseId::parse(id.as_str()), Some(id));
    }

    #[test]
    fn parse_rejects_anything_else() {
        for bad in [
            "",
            "current",
            "20261122T030405Z",
            "20261122T030405Z-deadbee",
            "20261122T030405Z-deadbeefx",
            "20261122X030405Z-deadbeef",
            "../20261122T030405Z-deadbeef",
            "20261122T030405Z-dead;eef",
        ] {
            assert_eq!(ReleaseId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_new_id_sorts_after_every_held_one() {
        let now = Utc.with_ymd_and_hms(2026, 1, 2, 0, 0, 0).unwrap();
        let same_second = ReleaseId::new(now, "aaaaaaaa");
        let later_that_second = now + chrono::Duration::milliseconds(400);
        assert_eq!(
            ReleaseId::next(later_that_second, "aaaaaaaa", [&same_second]).as_str(),
            "20260102T000001Z-aaaaaaaa",
            "a deploy later in the same second still gets the next second"
        );
        let next = ReleaseId::next(now, "aaaaaaaa", [&same_second]);
        assert_eq!(next.as_str(), "20260102T000001Z-aaaaaaaa");
        let ahead = ReleaseId::new(now + chrono::Duration::seconds(30), "bbbbbbbb");
        let next = ReleaseId::next(now, "aaaaaaaa", [&same_second, &ahead]);
        assert_eq!(next.as_str(), "20260102T000031Z-aaaaaaaa");
        let older = ReleaseId::new(now - chrono::Duration::days(1), "bbbbbbbb");
        assert_eq!(
            ReleaseId::next(now, "aaaaaaaa", [&older]).as_str(),
            "20260102T000000Z-aaaaaaaa"
        );
        assert_eq!(same_second.time(), Some(now));
    }

    #[test]
    fn a_held_id_far_in_the_future_does_not_date_the_next_one() {
        let now = Utc.with_ymd_and_hms(2026, 1, 2, 0, 0, 0).unwrap();
        let forged = ReleaseId::parse("99991231T235959Z-deadbeef").unwrap();
        assert!(forged.is_far_ahead(now));
        let next = ReleaseId::next(now, "aaaaaaaa", [&forged]);
        assert_eq!(next.as_str(), "20260102T000000Z-aaaaaaaa");
        // Within a day ahead still counts: a clock that is merely off.
        let soon = ReleaseId::new(now + chrono::Duration::hours(20), "bbbbbbbb");
        assert!(!soon.is_far_ahead(now));
        let next = ReleaseId::next(now, "aaaaaaaa", [&forged, &soon]);
        assert_eq!(next.as_str(), "20260102T200001Z-aaaaaaaa");
    }

    #[test]
    fn a_new_id_always_parses_back() {
        // The last second an id can hold: one more would be year 10000.
        let end = Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap();
        let held = ReleaseId::new(end, "deadbeef");
        let next = ReleaseId::next(end, "aaaaaaaa", [&held]);
        assert_eq!(ReleaseId::parse(next.as_str()), Some(next.clone()));
        assert_eq!(next.as_str(), "99991231T235959Z-aaaaaaaa");
    }

    #[test]
    fn ids_sort_by_time() {
        let a = ReleaseId::new(
            Utc.with_ymd_and_hms(2026, 1, 2, 0, 0, 0).unwrap(),
            "ffffffff",
        );
        let b = ReleaseId::new(
            Utc.with_ymd_and_hms(2026, 1, 10, 0, 0, 0).unwrap(),
            "00000000",
        );
        assert!(a < b);
    }
}
