//! Time as the agent's parts see it: an injectable clock (a fake in tests) and the
//! whole-second timestamps the API stores.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// A source of the current time (a fake in tests).
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The real clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// API times have whole seconds; truncating here keeps the computed status equal to what
/// the API server returns, so unchanged statuses are recognised and not re-written.
pub fn api_time(t: Timestamp) -> Time {
    Time(Timestamp::from_second(t.as_second()).unwrap_or(t))
}
