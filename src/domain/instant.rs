//! How an instant is written as text, in one place: RFC 3339 in UTC, to the second (what people
//! read: the export, error messages), to the microsecond (what sorts: cursors), or as sqlx writes
//! it into SQLite (what a statement read on the calling thread must bind exactly as the pool would).
use chrono::{DateTime, SecondsFormat, Utc};

/// `2026-01-02T03:04:05Z`: the export's cells and the instants error messages name.
pub fn to_second(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `2026-01-02T03:04:05.123456Z`: fixed width, so the text sorts as the instants do (cursors).
pub fn to_microsecond(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// `2026-01-02T03:04:05.123456+00:00`: how sqlx binds an instant into SQLite (the fraction as
/// needed, the zone as an offset).
pub fn as_sqlx_writes_it(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_form_writes_the_instant_its_own_way() {
        let at = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.123456Z").expect("an instant").to_utc();
        assert_eq!(to_second(at), "2026-01-02T03:04:05Z");
        assert_eq!(to_microsecond(at), "2026-01-02T03:04:05.123456Z");
        assert_eq!(as_sqlx_writes_it(at), "2026-01-02T03:04:05.123456+00:00");
        let whole = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z").expect("an instant").to_utc();
        assert_eq!(to_microsecond(whole), "2026-01-02T03:04:05.000000Z", "fixed width sorts");
        assert_eq!(as_sqlx_writes_it(whole), "2026-01-02T03:04:05+00:00");
    }
}
