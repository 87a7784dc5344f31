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

impl Timestamp {
    /// Appends the canonical form (`YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`).
    pub fn write_canonical(&self, out: &mut Vec<u8>) {
        let secs = self.0 / 1_000_000_000;
        let frac = self.0 % 1_000_000_000;
        let (y, m, d) = civil_from_days(secs / 86_400);
        let sod = secs % 86_400;
        let mut buf = *b"0000-00-00T00:00:00.000000000Z";
        digits(&mut buf[0..4], y);
        digits(&mut buf[5..7], m);
        digits(&mut buf[8..10], d);
        digits(&mut buf[11..13], sod / 3600);
        digits(&mut buf[14..16], sod / 60 % 60);
        digits(&mut buf[17..19], sod % 60);
        digits(&mut buf[20..29], frac);
        out.extend_from_slice(&buf);
    }
}

/// Writes `n` as zero-padded decimal filling `buf`.
fn digits(buf: &mut [u8], mut n: u64) {
    for b in buf.iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (H. Hinnant's algorithm, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = Vec::with_capacity(30);
        self.write_canonical(&mut buf);
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
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
    fn fast_formatting_matches_the_time_crate() {
        let mut n: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..100_000u64 {
            n ^= n << 13;
            n ^= n >> 7;
            n ^= n << 17;
            let nanos = if i % 2 == 0 { n } else { n % 4_000_000_000_000_000_000 };
            let dt = OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos)).expect("in range");
            let want = dt.format(FORMAT).expect("format");
            assert_eq!(Timestamp(nanos).to_string(), want, "{nanos}");
        }
        for nanos in [
            0,
            951_782_400_000_000_000,   /* 2000-02-29 */
            4_107_542_400_000_000_000, /* 2100-03-01 */
        ] {
            let dt = OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos)).expect("in range");
            assert_eq!(Timestamp(nanos).to_string(), dt.format(FORMAT).expect("format"));
        }
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
