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

    /// Appends the RFC 3339 form (`2026-11-26T10:02:00.000Z`) to `out`, always with three
    /// fractional digits and `Z`: the form records are written in.
    pub fn write_rfc3339(self, out: &mut Vec<u8>) {
        // Through jiff's civil time, which spans every year 0000–9999 (its `Timestamp` stops a day
        // short of the end of 9999, so that every offset can still be written): the range of a
        // `Timestamp` lies inside it, so the addition cannot fail.
        let utc = EPOCH
            .checked_add(jiff::SignedDuration::from_millis(self.0))
            .unwrap_or(EPOCH);
        // Writing to a Vec cannot fail.
        let _ = PRINTER.print_datetime(&utc, &mut *out);
        out.push(b'Z');
    }

    /// Parses RFC 3339: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` (`t` or a space for `T`, `z` for
    /// `Z`). Fractions beyond milliseconds are truncated (rounded down); more than nine fractional
    /// digits are refused. A leap second (`:60`) reads as `:59`.
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
        // jiff's parser takes a wider grammar (ISO 8601 and RFC 9557 forms: no seconds, hour-only
        // offsets, bracketed time zones); the log's times are RFC 3339 alone.
        if !has_rfc3339_shape(bytes) {
            return Err(bad());
        }
        let pieces = PARSER.parse_pieces(bytes).map_err(|_| bad())?;
        let time = pieces.time().ok_or_else(bad)?;
        let offset_seconds = match pieces.offset() {
            Some(jiff::fmt::temporal::PiecesOffset::Numeric(offset)) => {
                i64::from(offset.offset().seconds())
            }
            // `Z`, and `-00:00` (UTC, the local offset unknown).
            Some(_) => 0,
            None => return Err(bad()),
        };
        let local = pieces.date().to_datetime(time).duration_since(EPOCH);
        let millis = i64::try_from(local.as_millis())
            .ok()
            .and_then(|millis| {
                // A fraction below a millisecond rounds down, also before 1970.
                let rounded_down =
                    if local.subsec_nanos() < 0 && local.subsec_nanos() % 1_000_000 != 0 {
                        millis.checked_sub(1)?
                    } else {
                        millis
                    };
                rounded_down.checked_sub(offset_seconds.checked_mul(1000)?)
            })
            .ok_or_else(bad)?;
        Self::from_millis(millis).ok_or_else(bad)
    }
}

/// 1970-01-01T00:00:00, the civil time the log's milliseconds count from (in UTC).
const EPOCH: jiff::civil::DateTime = jiff::civil::DateTime::constant(1970, 1, 1, 0, 0, 0, 0);

/// The printer of the records' form: a civil time in UTC with milliseconds (the `Z` is added).
static PRINTER: jiff::fmt::temporal::DateTimePrinter =
    jiff::fmt::temporal::DateTimePrinter::new().precision(Some(3));

static PARSER: jiff::fmt::temporal::DateTimeParser = jiff::fmt::temporal::DateTimeParser::new();

/// Whether `bytes` follow RFC 3339's grammar for a time with an offset (section 5.6), leaving the
/// values (month lengths, leap years, offset range) to jiff.
fn has_rfc3339_shape(bytes: &[u8]) -> bool {
    let digit = |at: usize| bytes.get(at).is_some_and(u8::is_ascii_digit);
    let one_of = |at: usize, allowed: &[u8]| bytes.get(at).is_some_and(|b| allowed.contains(b));
    let fixed = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]
        .into_iter()
        .all(digit)
        && one_of(4, b"-")
        && one_of(7, b"-")
        && one_of(10, b"Tt ")
        && one_of(13, b":")
        && one_of(16, b":");
    if !fixed {
        return false;
    }
    let mut at = 19;
    if one_of(at, b".") {
        at += 1;
        let start = at;
        while digit(at) {
            at += 1;
        }
        if at == start {
            return false;
        }
    }
    match bytes.get(at..) {
        Some([b'Z' | b'z']) => true,
        Some([b'+' | b'-', offset @ ..]) => {
            matches!(offset, [h1, h2, b':', m1, m2] if [h1, h2, m1, m2].iter().all(|b| b.is_ascii_digit()))
        }
        _ => false,
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
            // Wider than RFC 3339: jiff's parser would take these.
            "2026-11-26T10:02Z",
            "2026-11-26T10:02:00-05",
            "2026-11-26T10:02:00+0530",
            "+002026-11-26T10:02:00Z",
            "2026-11-26T10:02:00,5Z",
            "2026-11-26T10:02:00Z[UTC]",
            "2026-11-26T10:02:00+26:00",
            "2026-11-26T10:02:00.1234567891Z",
        ] {
            assert!(
                Timestamp::parse_rfc3339(text).is_err(),
                "{text:?} was accepted"
            );
        }
    }

    #[test]
    fn reads_the_variants_rfc_3339_allows_and_rounds_down_below_a_millisecond() {
        let read = |text: &str| Timestamp::parse_rfc3339(text).map(Timestamp::millis).ok();
        assert_eq!(
            read("2026-11-26t10:02:00.5z"),
            read("2026-11-26T10:02:00.500Z")
        );
        assert_eq!(
            read("2026-11-26 10:02:00Z"),
            read("2026-11-26T10:02:00.000Z")
        );
        assert_eq!(
            read("2026-11-26T10:02:00.123999999Z"),
            read("2026-11-26T10:02:00.123Z")
        );
        assert_eq!(read("1969-12-31T23:59:59.9995Z"), Some(-1));
        assert_eq!(read("2016-12-31T23:59:60Z"), read("2016-12-31T23:59:59Z"));
        assert_eq!(
            read("2026-11-26T05:02:00-05:00"),
            read("2026-11-26T10:02:00Z")
        );
        assert_eq!(read("0000-01-01T00:00:00Z"), Some(MIN_MILLIS));
        assert_eq!(read("9999-12-31T23:59:59.999Z"), Some(MAX_MILLIS));
        assert_eq!(
            read("9999-12-31T23:59:59.999-00:01"),
            None,
            "beyond year 9999"
        );
    }

    #[test]
    fn stepping_clock_moves_by_its_step() {
        let clock = SteppingClock::new(Timestamp(1000), 7);
        assert_eq!((clock.now().0, clock.now().0), (1000, 1007));
        clock.advance(100);
        assert_eq!(clock.now().0, 1114);
    }
}
