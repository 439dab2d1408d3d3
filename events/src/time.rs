//! Time as the log records it: milliseconds since the Unix epoch, written as RFC 3339 UTC with
//! millisecond precision. Owns the [`Clock`] seam; nothing in the core reads the system clock except
//! [`SystemClock`], which only the shell constructs.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// An instant, in whole milliseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// Days from 1970-01-01 to the first day of year 0000 and 9999's last day, the span RFC 3339 can write.
const MIN_MILLIS: i64 = -62_167_219_200_000;
const MAX_MILLIS: i64 = 253_402_300_799_999;

impl Timestamp {
    /// The instant `millis` milliseconds after the epoch, or `None` outside years 0000–9999.
    pub fn from_millis(millis: i64) -> Option<Self> {
        (MIN_MILLIS..=MAX_MILLIS)
            .contains(&millis)
            .then_some(Self(millis))
    }

    /// The instant `millis` milliseconds after the epoch, clamped to years 0000–9999.
    pub const fn saturating_from_millis(millis: i64) -> Self {
        if millis < MIN_MILLIS {
            Self(MIN_MILLIS)
        } else if millis > MAX_MILLIS {
            Self(MAX_MILLIS)
        } else {
            Self(millis)
        }
    }

    /// Milliseconds since the epoch.
    pub fn millis(self) -> i64 {
        self.0
    }

    /// Whole seconds since the epoch, rounded down.
    pub fn seconds(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// This instant moved by `millis` (saturating at the representable range).
    pub fn add_millis(self, millis: i64) -> Self {
        Self(self.0.saturating_add(millis).clamp(MIN_MILLIS, MAX_MILLIS))
    }

    /// Appends the RFC 3339 form (`2026-11-26T10:02:00.000Z`) to `out`.
    pub fn write_rfc3339(self, out: &mut Vec<u8>) {
        let days = self.0.div_euclid(86_400_000);
        let in_day = self.0.rem_euclid(86_400_000);
        let (year, month, day) = civil_from_days(days);
        let (hour, minute) = (in_day / 3_600_000, in_day / 60_000 % 60);
        let (second, milli) = (in_day / 1000 % 60, in_day % 1000);
        fn push(out: &mut Vec<u8>, value: i64, width: u32) {
            for position in (0..width).rev() {
                let digit = value / 10_i64.pow(position) % 10;
                out.push(b'0' + digit as u8);
            }
        }
        push(out, year, 4);
        out.push(b'-');
        push(out, month, 2);
        out.push(b'-');
        push(out, day, 2);
        out.push(b'T');
        push(out, hour, 2);
        out.push(b':');
        push(out, minute, 2);
        out.push(b':');
        push(out, second, 2);
        out.push(b'.');
        push(out, milli, 3);
        out.push(b'Z');
    }

    /// Parses RFC 3339: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`. Fractions beyond milliseconds
    /// are truncated.
    ///
    /// # Errors
    /// [`Error::BadTimestamp`] when the text is not such a time.
    pub fn parse_rfc3339(text: &str) -> Result<Self, Error> {
        Self::parse_rfc3339_bytes(text.as_bytes())
    }

    /// As [`Timestamp::parse_rfc3339`], from bytes.
    ///
    /// # Errors
    /// [`Error::BadTimestamp`] when the bytes are not such a time.
    pub fn parse_rfc3339_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let bad = || Error::BadTimestamp {
            text: String::from_utf8_lossy(bytes).chars().take(40).collect(),
        };
        let number = |range: std::ops::Range<usize>| -> Result<i64, Error> {
            let digits = bytes.get(range).ok_or_else(bad)?;
            if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                return Err(bad());
            }
            Ok(digits
                .iter()
                .fold(0, |acc, d| acc * 10 + i64::from(d - b'0')))
        };
        let separator = |index: usize, allowed: &[u8]| -> Result<(), Error> {
            match bytes.get(index) {
                Some(b) if allowed.contains(b) => Ok(()),
                _ => Err(bad()),
            }
        };
        let year = number(0..4)?;
        separator(4, b"-")?;
        let month = number(5..7)?;
        separator(7, b"-")?;
        let day = number(8..10)?;
        separator(10, b"Tt ")?;
        let hour = number(11..13)?;
        separator(13, b":")?;
        let minute = number(14..16)?;
        separator(16, b":")?;
        let second = number(17..19)?;
        let mut index = 19;
        let mut milli = 0;
        if bytes.get(index) == Some(&b'.') {
            index += 1;
            let start = index;
            while bytes.get(index).is_some_and(u8::is_ascii_digit) {
                index += 1;
            }
            if index == start {
                return Err(bad());
            }
            let mut fraction = bytes[start..index.min(start + 3)]
                .iter()
                .fold(0, |acc, d| acc * 10 + i64::from(d - b'0'));
            for _ in (index - start)..3 {
                fraction *= 10;
            }
            milli = fraction;
        }
        let offset_minutes = match bytes.get(index) {
            Some(b'Z' | b'z') if index + 1 == bytes.len() => 0,
            Some(sign @ (b'+' | b'-')) if index + 6 == bytes.len() => {
                separator(index + 3, b":")?;
                let magnitude = number(index + 1..index + 3)? * 60 + number(index + 4..index + 6)?;
                if *sign == b'-' {
                    -magnitude
                } else {
                    magnitude
                }
            }
            _ => return Err(bad()),
        };
        let days_in_month = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
            2 => 28,
            _ => return Err(bad()),
        };
        if day == 0 || day > days_in_month || hour > 23 || minute > 59 || second > 60 {
            return Err(bad());
        }
        let days = days_from_civil(year, month, day);
        let millis = ((days * 24 + hour) * 60 + minute - offset_minutes) * 60_000
            + second.min(59) * 1000
            + milli;
        Self::from_millis(millis).ok_or_else(bad)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Vec::with_capacity(24);
        self.write_rfc3339(&mut out);
        f.write_str(&String::from_utf8_lossy(&out))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

/// Howard Hinnant's days-from-civil: proleptic Gregorian date to days since 1970-01-01.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Where the shell gets the time from. The core never asks: it is handed `now`.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

/// The operating system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let millis = match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(elapsed) => i64::try_from(elapsed.as_millis()).unwrap_or(MAX_MILLIS),
            Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(-MIN_MILLIS),
        };
        Timestamp(millis.clamp(MIN_MILLIS, MAX_MILLIS))
    }
}

/// A deterministic clock for tests and replays: starts at a fixed instant and moves forward by a
/// fixed step every time it is read, so every record gets a distinct, predictable time.
#[derive(Debug)]
pub struct SteppingClock {
    next: AtomicI64,
    step_millis: i64,
}

impl SteppingClock {
    /// A clock whose first reading is `start` and each later one `step_millis` after the one before.
    pub fn new(start: Timestamp, step_millis: i64) -> Self {
        Self {
            next: AtomicI64::new(start.0),
            step_millis,
        }
    }

    /// Moves the clock forward by `millis` without reading it.
    pub fn advance(&self, millis: i64) {
        self.next.fetch_add(millis, Ordering::SeqCst);
    }
}

impl Clock for SteppingClock {
    fn now(&self) -> Timestamp {
        let millis = self.next.fetch_add(self.step_millis, Ordering::SeqCst);
        Timestamp(millis.clamp(MIN_MILLIS, MAX_MILLIS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(millis: i64) -> String {
        Timestamp::from_millis(millis)
            .map(|t| t.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(format(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format(1_795_000_000_123), "2026-11-18T11:06:40.123Z");
        assert_eq!(format(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(format(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(format(MAX_MILLIS), "9999-12-31T23:59:59.999Z");
        assert_eq!(format(MIN_MILLIS), "0000-01-01T00:00:00.000Z");
    }

    #[test]
    fn parses_what_it_formats_and_offsets() {
        for millis in [
            0,
            1_795_000_000_123,
            951_782_400_000,
            -1,
            MAX_MILLIS,
            MIN_MILLIS,
        ] {
            let text = format(millis);
            assert_eq!(
                Timestamp::parse_rfc3339(&text).map(Timestamp::millis).ok(),
                Some(millis),
                "{text}"
            );
        }
        let with_offset =
            Timestamp::parse_rfc3339("2026-11-26T11:02:00.5+01:00").map(|t| t.to_string());
        assert_eq!(
            with_offset.ok().as_deref(),
            Some("2026-11-26T10:02:00.500Z")
        );
        let no_fraction = Timestamp::parse_rfc3339("2026-11-26T10:02:00Z").map(|t| t.to_string());
        assert_eq!(
            no_fraction.ok().as_deref(),
            Some("2026-11-26T10:02:00.000Z")
        );
    }

    #[test]
    fn refuses_malformed_times() {
        for text in [
            "",
            "2026-11-26",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-11-26T24:00:00Z",
            "2026-11-26T10:02:00",
            "2026-11-26T10:02:00.Z",
            "2026-11-26T10:02:00Zjunk",
            "2026-1x-26T10:02:00Z",
        ] {
            assert!(
                Timestamp::parse_rfc3339(text).is_err(),
                "{text:?} was accepted"
            );
        }
    }

    #[test]
    fn stepping_clock_moves_by_its_step() {
        let clock = SteppingClock::new(Timestamp(1000), 7);
        assert_eq!((clock.now().0, clock.now().0), (1000, 1007));
        clock.advance(100);
        assert_eq!(clock.now().0, 1114);
    }
}
