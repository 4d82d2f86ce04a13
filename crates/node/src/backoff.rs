//! Per-key exponential back-off with kubelet's semantics (client-go `flowcontrol.Backoff`):
//! 10 s doubling to 300 s, forgotten when a key has not been bumped for twice the maximum
//! (so a container that ran ten minutes restarts at once and starts again at 10 s). Pure:
//! the caller passes the time.

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;

/// Kubelet's initial container restart and image pull back-off.
pub const INITIAL: Duration = Duration::from_secs(10);
/// Kubelet's cap on both back-offs.
pub const MAX: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    delay: Duration,
    last_update: Timestamp,
}

/// Back-off state for many keys (container names, image references).
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    entries: HashMap<String, Entry>,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(INITIAL, MAX)
    }
}

fn elapsed(from: Timestamp, to: Timestamp) -> Duration {
    let nanos = to.as_nanosecond().saturating_sub(from.as_nanosecond());
    Duration::from_nanos(u64::try_from(nanos.max(0)).unwrap_or(u64::MAX))
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            entries: HashMap::new(),
        }
    }

    fn live(&self, key: &str, now: Timestamp) -> Option<&Entry> {
        self.entries
            .get(key)
            .filter(|e| elapsed(e.last_update, now) <= self.max * 2)
    }

    /// Records one more failure/restart of `key` at `now`: the delay doubles, or starts over
    /// at the initial value when the key is new or expired.
    pub fn next(&mut self, key: &str, now: Timestamp) {
        let delay = match self.live(key, now) {
            Some(e) => (e.delay * 2).min(self.max),
            None => self.initial,
        };
        self.entries.insert(
            key.to_string(),
            Entry {
                delay,
                last_update: now,
            },
        );
    }

    /// The current delay of `key`, if it has a live entry.
    pub fn delay(&self, key: &str, now: Timestamp) -> Option<Duration> {
        self.live(key, now).map(|e| e.delay)
    }

    /// Whether an event at `since` (a container's exit) is still within the back-off window;
    /// returns the time left.
    pub fn remaining_since(&self, key: &str, since: Timestamp, now: Timestamp) -> Option<Duration> {
        let entry = self.live(key, now)?;
        let waited = elapsed(since, now);
        (waited < entry.delay).then(|| entry.delay - waited)
    }

    /// Whether the last bump of `key` is still within its window (image pulls); returns the
    /// time left.
    pub fn remaining_since_update(&self, key: &str, now: Timestamp) -> Option<Duration> {
        let entry = self.live(key, now)?;
        self.remaining_since(key, entry.last_update, now)
    }

    pub fn reset(&mut self, key: &str) {
        self.entries.remove(key);
    }
}

/// Formats a whole-second duration as Go prints it (`10s`, `1m20s`, `5m0s`), for messages
/// such as kubelet's `back-off 1m20s restarting failed container`.
pub fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000_000_000 {
        // Sub-second: Go picks ns/µs/ms with the fraction trimmed.
        let (unit, div) = if nanos < 1_000 {
            ("ns", 1)
        } else if nanos < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", trim_fraction(nanos, div));
    }
    let total_secs = d.as_secs();
    let frac = trim_fraction(
        u128::from(d.subsec_nanos()) + u128::from(total_secs % 60) * 1_000_000_000,
        1_000_000_000,
    );
    let hours = total_secs / 3600;
    let minutes = (total_secs % 3600) / 60;
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&frac);
    out.push('s');
    out
}

/// `value / div` as a decimal with trailing zeros (and a bare point) trimmed.
fn trim_fraction(value: u128, div: u128) -> String {
    let whole = value / div;
    let rest = value % div;
    if rest == 0 {
        return whole.to_string();
    }
    let width = div.to_string().len() - 1;
    let frac = format!("{rest:0width$}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).expect("time")
    }

    #[test]
    fn doubles_to_cap_and_expires() {
        let mut b = Backoff::default();
        assert_eq!(b.delay("c", t(0)), None);
        let mut now = 0;
        let mut seen = Vec::new();
        for _ in 0..7 {
            b.next("c", t(now));
            seen.push(b.delay("c", t(now)).expect("delay").as_secs());
            now += 1;
        }
        assert_eq!(seen, vec![10, 20, 40, 80, 160, 300, 300]);
        // More than twice the cap without a bump: forgotten, starts over.
        assert_eq!(b.delay("c", t(now + 601)), None);
        b.next("c", t(now + 601));
        assert_eq!(b.delay("c", t(now + 601)), Some(Duration::from_secs(10)));
    }

    #[test]
    fn window_since_event_and_update() {
        let mut b = Backoff::default();
        b.next("c", t(0));
        // Exit at t=5: in back-off until t=15.
        assert_eq!(
            b.remaining_since("c", t(5), t(6)),
            Some(Duration::from_secs(9))
        );
        assert_eq!(b.remaining_since("c", t(5), t(15)), None);
        assert_eq!(
            b.remaining_since_update("c", t(3)),
            Some(Duration::from_secs(7))
        );
        assert_eq!(b.remaining_since_update("c", t(10)), None);
        assert_eq!(b.remaining_since("other", t(0), t(0)), None);
    }

    #[test]
    fn go_duration_format() {
        let cases = [
            (Duration::from_secs(10), "10s"),
            (Duration::from_secs(80), "1m20s"),
            (Duration::from_secs(300), "5m0s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_millis(1234), "1.234s"),
            (Duration::from_millis(523), "523ms"),
            (Duration::ZERO, "0s"),
            (Duration::from_millis(61_500), "1m1.5s"),
        ];
        for (d, want) in cases {
            assert_eq!(go_duration(d), want);
        }
    }
}
