//! Time: the kernel stamps events with CLOCK_MONOTONIC; this turns those stamps into wall-clock
//! time (one measured offset, re-measurable after the wall clock is stepped) and formats it.

use std::fmt;

/// Nanoseconds of CLOCK_MONOTONIC now: the clock of `bpf_ktime_get_ns` and of event stamps.
pub fn monotonic_now_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// Nanoseconds since the Unix epoch now (CLOCK_REALTIME).
pub fn realtime_now_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

/// CPU time of the calling thread (CLOCK_THREAD_CPUTIME_ID): what the benches time, since the
/// targets are CPU per message and other work on the cores disturbs it less than wall time.
pub fn thread_cpu_time() -> std::time::Duration {
    std::time::Duration::from_nanos(clock_ns(libc::CLOCK_THREAD_CPUTIME_ID))
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clocks used here always exist on Linux.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Converts monotonic stamps to wall-clock nanoseconds since the epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WallClock {
    /// REALTIME minus MONOTONIC, in ns.
    offset_ns: i64,
}

impl WallClock {
    /// Measures the offset now: the REALTIME read bracketed most tightly by two MONOTONIC reads
    /// out of a few tries, so a preemption between reads does not skew it.
    pub fn measure() -> Self {
        let mut best: Option<(u64, i64)> = None;
        for _ in 0..5 {
            let before = monotonic_now_ns();
            let wall = realtime_now_ns();
            let after = monotonic_now_ns();
            let window = after.saturating_sub(before);
            let mid = before + window / 2;
            let offset = wall as i64 - mid as i64;
            if best.is_none_or(|(w, _)| window < w) {
                best = Some((window, offset));
            }
        }
        WallClock {
            offset_ns: best.map_or(0, |(_, offset)| offset),
        }
    }

    /// A clock with a known offset (tests, replays).
    pub fn with_offset(offset_ns: i64) -> Self {
        WallClock { offset_ns }
    }

    /// Measures again, e.g. after NTP stepped the wall clock.
    pub fn remeasure(&mut self) {
        *self = WallClock::measure();
    }

    /// Wall-clock ns since the epoch for a CLOCK_MONOTONIC stamp.
    pub fn wall_ns(&self, mono_ns: u64) -> u64 {
        (i128::from(mono_ns) + i128::from(self.offset_ns)).clamp(0, i128::from(u64::MAX)) as u64
    }
}

/// A broken-down time of day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub nanos: u32,
}

impl Civil {
    /// `wall_ns` since the epoch, shifted by `utc_offset_s` (0 for UTC).
    pub fn from_wall_ns(wall_ns: u64, utc_offset_s: i64) -> Self {
        let secs = (wall_ns / 1_000_000_000) as i64 + utc_offset_s;
        let nanos = (wall_ns % 1_000_000_000) as u32;
        let days = secs.div_euclid(86_400);
        let of_day = secs.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        Civil {
            year,
            month,
            day,
            hour: of_day / 3600,
            minute: of_day / 60 % 60,
            second: of_day % 60,
            nanos,
        }
    }
}

/// Wall-clock ns since the epoch shown as RFC 3339 in UTC with nanoseconds,
/// `2026-11-26T10:54:55.123456789Z`: 30 bytes for years 0 to 9999.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rfc3339(pub u64);

impl Rfc3339 {
    /// The text as bytes, formatted without `fmt`: the JSON writer puts one in every event.
    pub fn bytes(self) -> [u8; 30] {
        let c = Civil::from_wall_ns(self.0, 0);
        let mut out = *b"0000-00-00T00:00:00.000000000Z";
        let mut put = |end: usize, digits: usize, mut value: u64| {
            for i in (end - digits..end).rev() {
                out[i] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        // Years past 9999 would need a u64 of ns beyond the year 2554: never reached.
        put(4, 4, c.year.clamp(0, 9999) as u64);
        put(7, 2, c.month.into());
        put(10, 2, c.day.into());
        put(13, 2, c.hour.into());
        put(16, 2, c.minute.into());
        put(19, 2, c.second.into());
        put(29, 9, c.nanos.into());
        out
    }
}

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.bytes();
        f.write_str(std::str::from_utf8(&bytes).expect("ASCII digits"))
    }
}

/// [`Rfc3339`] as a string.
pub fn format_rfc3339(wall_ns: u64) -> String {
    Rfc3339(wall_ns).to_string()
}

/// The reader's side of [`Rfc3339`]: `2026-11-26T10:54:55.123456789Z` (1 to 9 digits of
/// fraction, or none) to ns since the epoch; `None` for any other form or a time before 1970.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    // humantime takes a `.` without digits and cuts digits past the ninth: the writer makes
    // neither, so they are refused here.
    let fraction = text.get(19..text.len().checked_sub(1)?)?;
    if !fraction.is_empty() && !(2..=10).contains(&fraction.len()) {
        return None;
    }
    let time = humantime::parse_rfc3339(text).ok()?;
    let since_epoch = time.duration_since(std::time::UNIX_EPOCH).ok()?;
    u64::try_from(since_epoch.as_nanos()).ok()
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn times_read_back_as_formatted() {
        for ns in [
            0,
            1,
            951_782_400_123_456_789,   // 2000-02-29
            1_795_690_495_123_456_789, // 2026-11-26
            4_102_444_799_999_999_999, // 2099-12-31T23:59:59.999999999
        ] {
            assert_eq!(parse_rfc3339(&format_rfc3339(ns)), Some(ns), "{ns}");
        }
        assert_eq!(
            parse_rfc3339("2026-11-26T10:54:55.5Z"),
            Some(1_795_690_495_500_000_000)
        );
        assert_eq!(
            parse_rfc3339("2026-11-26T10:54:55Z"),
            Some(1_795_690_495_000_000_000)
        );
        for bad in [
            "",
            "2026-11-26 10:54:55Z",
            "2026-11-26T10:54:55",
            "2026-11-26T10:54:55+01:00",
            "2026-11-26T10:54:55.Z",
            "2026-11-26T10:54:55.1234567890Z",
            "2026-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "２026-11-26T10:54:55Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn formats_rfc3339_with_nanoseconds() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        // 2026-11-26T10:54:55Z is 1795690495 s after the epoch.
        assert_eq!(
            format_rfc3339(1_795_690_495_123_456_789),
            "2026-11-26T10:54:55.123456789Z"
        );
        // Leap day and end of year.
        assert_eq!(
            format_rfc3339(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000000000Z"
        );
        assert_eq!(
            format_rfc3339(1_735_689_599_999_999_999),
            "2024-12-31T23:59:59.999999999Z"
        );
    }

    #[test]
    fn civil_applies_utc_offset() {
        let c = Civil::from_wall_ns(1_795_690_495_000_000_000, -11 * 3600);
        assert_eq!((c.year, c.month, c.day, c.hour), (2026, 11, 25, 23));
    }

    #[test]
    fn wall_clock_adds_offset() {
        let clock = WallClock::with_offset(1_000);
        assert_eq!(clock.wall_ns(500), 1_500);
        assert_eq!(WallClock::with_offset(-1_000).wall_ns(500), 0);
    }

    #[test]
    fn measured_offset_maps_now_to_now() {
        let mut clock = WallClock::measure();
        clock.remeasure();
        let wall = clock.wall_ns(monotonic_now_ns());
        let real = realtime_now_ns();
        assert!(wall.abs_diff(real) < 1_000_000_000, "{wall} vs {real}");
    }
}
