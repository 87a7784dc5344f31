//! Event timestamps: UTC, nanosecond resolution, written as RFC 3339 with
//! exactly nine fractional digits (`2026-11-22T10:04:05.000000001Z`).

use std::fmt;
use std::str::FromStr;

use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;

const FORMAT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z");

/// Nanoseconds since the Unix epoch, UTC: 1970 to 2554 (what fits a u64).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    pub const EPOCH: Timestamp = Timestamp(0);

    pub fn now() -> Timestamp {
        let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
        Timestamp(u64::try_from(nanos).unwrap_or(0))
    }

    pub const fn from_nanos(nanos: u64) -> Timestamp {
        Timestamp(nanos)
    }

    pub fn as_nanos(self) -> u64 {
        self.0
    }

    /// Parses the canonical form only (nine fractional digits, `Z`).
    pub fn parse_canonical(s: &str) -> Result<Timestamp, String> {
        let dt = time::PrimitiveDateTime::parse(s, FORMAT)
            .map_err(|e| format!("timestamp `{s}` is not canonical RFC 3339 (YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ): {e}"))?
            .assume_utc();
        Self::from_datetime(dt, s)
    }

    /// Parses any RFC 3339 timestamp (any offset, any fraction), as typed by
    /// a person on the command line.
    pub fn parse_rfc3339(s: &str) -> Result<Timestamp, String> {
        let dt = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map_err(|e| format!("`{s}` is not an RFC 3339 timestamp such as 2026-07-14T00:00:00Z: {e}"))?;
        Self::from_datetime(dt, s)
    }

    fn from_datetime(dt: OffsetDateTime, text: &str) -> Result<Timestamp, String> {
        let nanos = dt.unix_timestamp_nanos();
        match u64::try_from(nanos) {
            Ok(n) => Ok(Timestamp(n)),
            Err(_) if nanos < 0 => Err(format!("timestamp `{text}` is before 1970")),
            Err(_) => Err(format!(
                "timestamp `{text}` is after 2554, the last time a ledger timestamp can hold"
            )),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dt = OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0)).map_err(|_| fmt::Error)?;
        let s = dt.format(FORMAT).map_err(|_| fmt::Error)?;
        f.write_str(&s)
    }
}

impl FromStr for Timestamp {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Timestamp::parse_rfc3339(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_round_trip() {
        for nanos in [0u64, 1, 1_000_000_000, 1_795_000_000_123_456_789, u64::MAX] {
            let ts = Timestamp(nanos);
            let text = ts.to_string();
            assert_eq!(Timestamp::parse_canonical(&text), Ok(ts), "{text}");
        }
        assert_eq!(Timestamp(1).to_string(), "1970-01-01T00:00:00.000000001Z");
    }

    #[test]
    fn canonical_parse_is_strict() {
        for bad in [
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:00:00.000000000+01:00",
            "2026-01-01 00:00:00.000000000Z",
        ] {
            assert!(Timestamp::parse_canonical(bad).is_err(), "{bad}");
        }
        assert!(Timestamp::parse_rfc3339("2026-07-14T00:00:00Z").is_ok());
        assert!(Timestamp::parse_rfc3339("2026-07-14T02:00:00+02:00").is_ok());
        assert!(
            Timestamp::parse_rfc3339("1969-12-31T23:59:59Z")
                .expect_err("1969")
                .contains("before 1970")
        );
        assert!(
            Timestamp::parse_rfc3339("2999-01-01T00:00:00Z")
                .expect_err("2999")
                .contains("after 2554")
        );
    }
}
