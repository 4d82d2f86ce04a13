//! Cron schedules as Kubernetes CronJobs use them: [`parse`] reads the syntax (the API
//! server validates with it), and a [`Schedule`] answers the two questions the CronJob
//! controller asks in a time zone: when is the next run after an instant, and which is the
//! latest run that is due but was not started yet ([`Schedule::unmet`]).
//!
//! Times are searched in the zone's civil time, so `0 9 * * *` runs at nine on the local
//! clock across daylight-saving changes; a civil time that does not exist (skipped by a
//! spring-forward gap) runs at the instant it maps to, an hour later.

mod parse;

pub use parse::ParseError;

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};

use parse::{Fields, Spec};

/// How far a search looks for the next run before it gives up (a schedule such as
/// `0 0 30 2 *` never runs), as the upstream parser does.
const HORIZON_DAYS: u32 = 5 * 366;

/// Upstream reports a CronJob that missed more starts than this, and counts no further.
pub const TOO_MANY_MISSED: u32 = 100;

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    spec: Spec,
    zone: Option<String>,
}

/// The most recent due run and how many runs were due since the last one (at most
/// [`TOO_MANY_MISSED`] + 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unmet {
    pub time: Timestamp,
    pub missed: u32,
}

/// A time zone name the database does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown time zone {0}")]
pub struct UnknownZone(pub String);

/// Parses a schedule: five fields, a descriptor, or either after `TZ=Zone `.
pub fn parse(text: &str) -> Result<Schedule, ParseError> {
    let (zone, rest) = parse::split_zone(text)?;
    if let Some(z) = zone {
        time_zone(z).map_err(|_| ParseError::Location(z.to_string()))?;
    }
    Ok(Schedule {
        spec: parse::parse_spec(rest)?,
        zone: zone.map(str::to_string),
    })
}

/// The IANA time zone `name` (`UTC` included), as Go's `time.LoadLocation` finds it.
pub fn time_zone(name: &str) -> Result<TimeZone, UnknownZone> {
    TimeZone::get(name).map_err(|_| UnknownZone(name.to_string()))
}

impl Schedule {
    /// The zone a `TZ=`/`CRON_TZ=` prefix names, which the API server refuses in new
    /// CronJobs (the `timeZone` field replaces it).
    pub fn zone_in_spec(&self) -> Option<&str> {
        self.zone.as_deref()
    }

    /// The zone runs are computed in: the prefix's, else `default`.
    fn zone_or(&self, default: &TimeZone) -> TimeZone {
        self.zone
            .as_deref()
            .and_then(|z| time_zone(z).ok())
            .unwrap_or_else(|| default.clone())
    }

    /// The first run strictly after `t`, `None` when there is none within five years.
    pub fn next_after(&self, t: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        match &self.spec {
            Spec::Fields(f) => next_fields(f, t, &self.zone_or(tz)),
            Spec::Every(secs) => whole_second(t).checked_add(seconds(*secs)).ok(),
        }
    }

    /// The latest run after `earliest` and at or before `now` (`earliest` is the last run,
    /// or the CronJob's creation), with the number of such runs; `None` when no run is due.
    pub fn unmet(&self, earliest: Timestamp, now: Timestamp, tz: &TimeZone) -> Option<Unmet> {
        match &self.spec {
            Spec::Fields(f) => {
                let tz = self.zone_or(tz);
                let time = latest_fields(f, now, &tz).filter(|t| *t > earliest)?;
                let mut missed = 0;
                let mut cur = earliest;
                while missed <= TOO_MANY_MISSED {
                    match next_fields(f, cur, &tz) {
                        Some(n) if n <= now => {
                            missed += 1;
                            cur = n;
                        }
                        _ => break,
                    }
                }
                Some(Unmet { time, missed })
            }
            Spec::Every(secs) => {
                let start = whole_second(earliest);
                let elapsed = now.as_second().saturating_sub(start.as_second());
                let runs = u64::try_from(elapsed).unwrap_or(0) / secs;
                if runs == 0 {
                    return None;
                }
                let offset = i64::try_from(runs.saturating_mul(*secs)).ok()?;
                Some(Unmet {
                    time: start.checked_add(SignedDuration::from_secs(offset)).ok()?,
                    missed: u32::try_from(runs)
                        .unwrap_or(u32::MAX)
                        .min(TOO_MANY_MISSED + 1),
                })
            }
        }
    }
}

fn seconds(n: u64) -> SignedDuration {
    SignedDuration::from_secs(i64::try_from(n).unwrap_or(i64::MAX))
}

fn whole_second(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

fn day_matches(f: &Fields, d: Date) -> bool {
    let month = f.month.has(d.month().unsigned_abs().into());
    let dom = f.dom.has(d.day().unsigned_abs().into());
    let dow = f
        .dow
        .has(d.weekday().to_sunday_zero_offset().unsigned_abs().into());
    // Both restricted: either may match (vixie cron's rule); else both must.
    let day = if f.dom.star || f.dow.star {
        dom && dow
    } else {
        dom || dow
    };
    month && day
}

/// The instant of civil time `dt` in `tz`; a time in a gap maps forward, one in a fold to
/// its first occurrence.
fn instant(dt: DateTime, tz: &TimeZone) -> Option<Timestamp> {
    tz.to_ambiguous_zoned(dt)
        .compatible()
        .ok()
        .map(|z| z.timestamp())
}

fn minute_floor(t: Timestamp, tz: &TimeZone) -> Option<DateTime> {
    let local = t.to_zoned(tz.clone()).datetime();
    local.with().second(0).subsec_nanosecond(0).build().ok()
}

fn next_fields(f: &Fields, t: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
    let start = minute_floor(t, tz)?.checked_add(1.minute()).ok()?;
    let mut date = start.date();
    for day in 0..HORIZON_DAYS {
        if day_matches(f, date) {
            let first_hour = if day == 0 { start.hour() } else { 0 };
            for h in (first_hour..24).filter(|h| f.hour.has(h.unsigned_abs().into())) {
                let first_minute = if day == 0 && h == start.hour() {
                    start.minute()
                } else {
                    0
                };
                for m in (first_minute..60).filter(|m| f.minute.has(m.unsigned_abs().into())) {
                    match instant(date.at(h, m, 0, 0), tz) {
                        Some(ts) if ts > t => return Some(ts),
                        _ => {}
                    }
                }
            }
        }
        date = date.tomorrow().ok()?;
    }
    None
}

fn latest_fields(f: &Fields, t: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
    let end = minute_floor(t, tz)?;
    let mut date = end.date();
    for day in 0..HORIZON_DAYS {
        if day_matches(f, date) {
            let last_hour = if day == 0 { end.hour() } else { 23 };
            for h in (0..=last_hour)
                .rev()
                .filter(|h| f.hour.has(h.unsigned_abs().into()))
            {
                let last_minute = if day == 0 && h == end.hour() {
                    end.minute()
                } else {
                    59
                };
                for m in (0..=last_minute)
                    .rev()
                    .filter(|m| f.minute.has(m.unsigned_abs().into()))
                {
                    match instant(date.at(h, m, 0, 0), tz) {
                        Some(ts) if ts <= t => return Some(ts),
                        _ => {}
                    }
                }
            }
        }
        date = date.yesterday().ok()?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn next(spec: &str, after: &str, zone: &str) -> String {
        let tz = time_zone(zone).expect("zone");
        parse(spec)
            .expect("spec")
            .next_after(ts(after), &tz)
            .map(|t| t.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn next_runs() {
        let utc = "UTC";
        assert_eq!(
            next("* * * * *", "2026-01-02T10:00:30Z", utc),
            "2026-01-02T10:01:00Z"
        );
        assert_eq!(
            next("* * * * *", "2026-01-02T10:00:00Z", utc),
            "2026-01-02T10:01:00Z"
        );
        assert_eq!(
            next("*/15 * * * *", "2026-01-02T10:50:00Z", utc),
            "2026-01-02T11:00:00Z"
        );
        assert_eq!(
            next("@hourly", "2026-01-02T23:10:00Z", utc),
            "2026-01-03T00:00:00Z"
        );
        assert_eq!(
            next("@yearly", "2026-06-01T00:00:00Z", utc),
            "2027-01-01T00:00:00Z"
        );
        // 2026-01-02 is a Friday: Monday 09:30 is the 5th.
        assert_eq!(
            next("30 9 * * mon", "2026-01-02T12:00:00Z", utc),
            "2026-01-05T09:30:00Z"
        );
        // Day of month and day of week both restricted: either matches (the 13th or a
        // Friday); with one of them `*`, both must.
        assert_eq!(
            next("0 0 13 * fri", "2026-01-03T00:00:00Z", utc),
            "2026-01-09T00:00:00Z"
        );
        assert_eq!(
            next("0 0 13 * *", "2026-01-03T00:00:00Z", utc),
            "2026-01-13T00:00:00Z"
        );
        assert_eq!(next("0 0 30 2 *", "2026-01-03T00:00:00Z", utc), "");
        assert_eq!(
            next("@every 90s", "2026-01-02T10:00:00.5Z", utc),
            "2026-01-02T10:01:30Z"
        );
    }

    #[test]
    fn time_zones_and_daylight_saving() {
        let ny = "America/New_York";
        // Nine in New York is 14:00 UTC in winter, 13:00 UTC in summer.
        assert_eq!(
            next("0 9 * * *", "2026-01-02T15:00:00Z", ny),
            "2026-01-03T14:00:00Z"
        );
        assert_eq!(
            next("0 9 * * *", "2026-07-02T15:00:00Z", ny),
            "2026-07-03T13:00:00Z"
        );
        // 2026-03-08 02:30 does not exist in New York: the run moves to 03:30 EDT.
        assert_eq!(
            next("30 2 * * *", "2026-03-08T05:00:00Z", ny),
            "2026-03-08T07:30:00Z"
        );
        // A prefix's zone wins over the default.
        assert_eq!(
            next(
                "CRON_TZ=Asia/Tokyo 0 9 * * *",
                "2026-01-02T00:30:00Z",
                "UTC"
            ),
            "2026-01-03T00:00:00Z"
        );
        assert_eq!(
            time_zone("Mars/Olympus"),
            Err(UnknownZone("Mars/Olympus".into()))
        );
        assert_eq!(
            parse("TZ=Mars/Olympus * * * * *")
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err("provided bad location Mars/Olympus: unknown time zone Mars/Olympus".into())
        );
    }

    #[test]
    fn unmet_runs() {
        let utc = time_zone("UTC").expect("utc");
        let s = parse("*/5 * * * *").expect("spec");
        let u = s
            .unmet(ts("2026-01-02T10:00:00Z"), ts("2026-01-02T10:17:00Z"), &utc)
            .expect("due");
        assert_eq!(u.time, ts("2026-01-02T10:15:00Z"));
        assert_eq!(u.missed, 3);
        // The run at `earliest` itself is done already.
        assert_eq!(
            s.unmet(ts("2026-01-02T10:15:00Z"), ts("2026-01-02T10:19:59Z"), &utc),
            None
        );
        let every_minute = parse("* * * * *").expect("spec");
        let long = every_minute
            .unmet(ts("2026-01-01T00:00:00Z"), ts("2026-01-02T00:00:30Z"), &utc)
            .expect("due");
        assert_eq!(long.time, ts("2026-01-02T00:00:00Z"));
        assert_eq!(long.missed, TOO_MANY_MISSED + 1);
        let every = parse("@every 1m").expect("spec");
        let e = every
            .unmet(ts("2026-01-02T10:00:10Z"), ts("2026-01-02T10:03:00Z"), &utc)
            .expect("due");
        assert_eq!((e.time, e.missed), (ts("2026-01-02T10:02:10Z"), 2));
    }
}
