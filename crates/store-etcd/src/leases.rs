//! Leases for objects that expire (Events), shared by the writes of a short window as
//! kube-apiserver's lease manager shares them: one lease per write would double the objects
//! etcd keeps. A lease granted at `t` for `ttl + window` outlives every write made before
//! `t + window` by at least `ttl`.

use std::time::{Duration, Instant};

/// A lease granted for one TTL and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    pub id: i64,
    pub at: Instant,
}

/// How long one lease is shared: a tenth of the TTL, between one second and a minute.
pub fn reuse_window(ttl: Duration) -> Duration {
    (ttl / 10).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// The lease's own TTL in whole seconds (etcd's unit): `ttl` plus the reuse window, rounded up.
pub fn grant_seconds(ttl: Duration) -> i64 {
    let total = ttl + reuse_window(ttl);
    let secs = total.as_secs() + u64::from(total.subsec_nanos() > 0);
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// The cached lease if a write at `now` may still share it.
pub fn reusable(cached: Option<Granted>, ttl: Duration, now: Instant) -> Option<i64> {
    cached
        .filter(|g| now.saturating_duration_since(g.at) < reuse_window(ttl))
        .map(|g| g.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_shared_within_its_window_only() {
        let ttl = Duration::from_secs(3600);
        let t0 = Instant::now();
        let g = Some(Granted { id: 7, at: t0 });
        assert_eq!(reusable(g, ttl, t0 + Duration::from_secs(59)), Some(7));
        assert_eq!(reusable(g, ttl, t0 + Duration::from_secs(60)), None);
        assert_eq!(reusable(None, ttl, t0), None);
        assert_eq!(grant_seconds(ttl), 3660);
    }

    #[test]
    fn short_ttls_get_short_windows_rounded_up() {
        assert_eq!(reuse_window(Duration::from_secs(5)), Duration::from_secs(1));
        assert_eq!(grant_seconds(Duration::from_millis(5500)), 7);
        assert_eq!(
            reuse_window(Duration::from_secs(100)),
            Duration::from_secs(10)
        );
    }
}
