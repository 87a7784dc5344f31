//! Event timestamps: UTC, nanosecond resolution, written as RFC 3339 with
//! exactly nine fractional digits (`2026-11-22T10:04:05.000000001Z`).

use std::fmt;
use std::str::FromStr;

use time::OffsetDateTime;

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

    /// Parses the canonical form only (`YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`,
    /// nine fractional digits, `Z`, no leap second): the exact inverse of
    /// [`Timestamp::write_canonical`]. Hand-written rather than the `time`
    /// crate's parser, because it reads signed bytes that may have been
    /// tampered with: every byte is checked for its place before any
    /// arithmetic, and the arithmetic is checked. (time 0.3.55 panics in a
    /// debug build on a non-digit among nine fractional digits.)
    pub fn parse_canonical(s: &str) -> Result<Timestamp, String> {
        const SHAPE: &[u8; 30] = b"dddd-dd-ddTdd:dd:dd.dddddddddZ";
        let b = s.as_bytes();
        let shaped = b.len() == SHAPE.len()
            && b.iter().zip(SHAPE).all(|(c, want)| match want {
                b'd' => c.is_ascii_digit(),
                _ => c == want,
            });
        if !shaped {
            return Err(format!(
                "timestamp `{s}` is not canonical RFC 3339 (YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ)"
            ));
        }
        let num = |from: usize, to: usize| b[from..to].iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
        let (year, month, day) = (num(0, 4), num(5, 7), num(8, 10));
        let (hour, minute, second, frac) = (num(11, 13), num(14, 16), num(17, 19), num(20, 29));
        let out_of_range = |what: &str| format!("timestamp `{s}` has {what} out of range");
        if !(1..=12).contains(&month) {
            return Err(out_of_range("the month"));
        }
        if day == 0 || day > days_in_month(year, month) {
            return Err(out_of_range("the day"));
        }
        if hour > 23 {
            return Err(out_of_range("the hour"));
        }
        if minute > 59 {
            return Err(out_of_range("the minute"));
        }
        if second > 59 {
            return Err(out_of_range("the second (leap seconds are not written)"));
        }
        if year < 1970 {
            return Err(format!("timestamp `{s}` is before 1970"));
        }
        let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
        secs.checked_mul(1_000_000_000)
            .and_then(|n| n.checked_add(frac))
            .map(Timestamp)
            .ok_or_else(|| format!("timestamp `{s}` is after 2554, the last time a ledger timestamp can hold"))
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

/// Days in `month` (1-12) of `year`, proleptic Gregorian.
fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// (year >= 1970, month, day) to days since 1970-01-01: the inverse of
/// [`civil_from_days`] (H. Hinnant's algorithm). Years are at most 9999, so
/// nothing here overflows.
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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
    use time::format_description::FormatItem;
    use time::macros::format_description;

    const FORMAT: &[FormatItem<'static>] =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z");

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

    /// The `time` crate's reading of `s` as canonical: RFC 3339 that formats
    /// back to exactly `s`, within the u64 range.
    fn oracle(s: &str) -> Option<Timestamp> {
        let dt = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
        if dt.format(FORMAT).ok()? != s {
            return None;
        }
        u64::try_from(dt.unix_timestamp_nanos()).ok().map(Timestamp)
    }

    #[test]
    fn every_one_character_change_parses_as_the_time_crate_reads_it() {
        // Tampered records reach this parser: no change may panic, and each
        // is accepted exactly when it is still some timestamp's canonical form.
        let bases = [
            "1970-01-01T00:00:00.000000000Z",
            "2000-02-29T23:59:59.999999999Z",
            "2026-12-02T00:33:38.123456789Z",
            "2554-07-21T23:34:33.709551615Z",
        ];
        let replacements = (0u8..128).map(char::from).chain(['é', '€', '𝄞']);
        let replacements: Vec<char> = replacements.collect();
        for base in bases {
            assert!(oracle(base).is_some(), "{base}");
            assert_eq!(Timestamp::parse_canonical(base).ok(), oracle(base), "{base}");
            for at in 0..base.len() {
                for &c in &replacements {
                    let mut text = String::from(&base[..at]);
                    text.push(c);
                    text.push_str(&base[at + 1..]);
                    let ours = Timestamp::parse_canonical(&text);
                    assert_eq!(ours.clone().ok(), oracle(&text), "{text}: {ours:?}");
                }
            }
        }
    }

    #[test]
    fn calendar_and_range_errors_name_what_is_wrong() {
        let err = |s: &str| Timestamp::parse_canonical(s).expect_err(s);
        assert!(err("2026-02-29T00:00:00.000000000Z").contains("the day"));
        assert!(err("2100-02-29T00:00:00.000000000Z").contains("the day"));
        assert!(Timestamp::parse_canonical("2000-02-29T00:00:00.000000000Z").is_ok());
        assert!(err("2026-13-01T00:00:00.000000000Z").contains("the month"));
        assert!(err("2026-00-01T00:00:00.000000000Z").contains("the month"));
        assert!(err("2026-12-31T24:00:00.000000000Z").contains("the hour"));
        assert!(err("2026-12-31T23:60:00.000000000Z").contains("the minute"));
        assert!(err("2026-12-31T23:59:60.000000000Z").contains("leap second"));
        assert!(err("1969-12-31T23:59:59.999999999Z").contains("before 1970"));
        assert!(err("2554-07-21T23:34:33.709551616Z").contains("after 2554"));
        assert!(err("9999-12-31T23:59:59.999999999Z").contains("after 2554"));
        assert!(err("2026-12-31T23:59:59.99999999Z").contains("not canonical"));
        assert_eq!(
            Timestamp::parse_canonical("2554-07-21T23:34:33.709551615Z"),
            Ok(Timestamp(u64::MAX))
        );
    }
}
