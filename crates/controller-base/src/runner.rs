//! What every controller shares: kube-runtime's `Controller` drives the reconciles (one at a
//! time per object, triggered by watch events and by the `Action` each reconcile returns),
//! and a failed reconcile is retried for that object with exponential back-off, as
//! client-go's work queue rate limiter does (5 ms doubling, here from 100 ms up to 60 s).

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::controller::{Action, Controller, Error as ControllerError};
use kube::runtime::reflector::ObjectRef;
use kube::Resource;
use serde::de::DeserializeOwned;

use crate::error::Error;

const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(60);

/// The delay before retry number `failures` (1 for the first failure).
fn retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST_RETRY.saturating_mul(1 << doublings).min(MAX_RETRY)
}

/// Consecutive failures per object.
#[derive(Default)]
struct Retries(Mutex<HashMap<String, u32>>);

impl Retries {
    fn failed(&self, key: &str) -> Duration {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(key.to_string()).or_default();
        *n = n.saturating_add(1);
        retry_delay(*n)
    }

    fn succeeded(&self, key: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

/// Runs `controller` with `reconcile` until the controller's streams end or the future is
/// dropped (dropping it cancels the running reconciles).
pub async fn drive<K, C, F, Fut>(
    name: &'static str,
    controller: Controller<K>,
    ctx: Arc<C>,
    reconcile: F,
) where
    K: Clone + Resource<DynamicType = ()> + DeserializeOwned + Debug + Send + Sync + 'static,
    C: Send + Sync + 'static,
    F: Fn(Arc<K>, Arc<C>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Action, Error>> + Send + 'static,
{
    let retries = Arc::new(Retries::default());
    let on_success = retries.clone();
    controller
        .run(
            move |obj, ctx| {
                let key = ObjectRef::from_obj(&*obj).to_string();
                let retries = on_success.clone();
                let fut = reconcile(obj, ctx);
                async move {
                    let result = fut.await;
                    if result.is_ok() {
                        retries.succeeded(&key);
                    }
                    result
                }
            },
            move |obj, err, _ctx| {
                let key = ObjectRef::from_obj(&*obj).to_string();
                let delay = retries.failed(&key);
                tracing::warn!(controller = name, object = %key, error = %chain(err),
                    retry_in = ?delay, "reconcile failed");
                Action::requeue(delay)
            },
            ctx,
        )
        .for_each(|res| async move {
            match res {
                Ok(_) | Err(ControllerError::ReconcilerFailed(..)) => {}
                // A trigger for an object deleted meanwhile: nothing to do.
                Err(ControllerError::ObjectNotFound(obj)) => {
                    tracing::debug!(controller = name, object = %obj, "object gone before its reconcile");
                }
                Err(e) => tracing::warn!(controller = name, error = %chain(&e), "controller stream error"),
            }
        })
        .await;
}

/// An error with its sources, for one log line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        text.push_str(": ");
        text.push_str(&s.to_string());
        cur = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_per_object_and_reset_on_success() {
        let r = Retries::default();
        assert_eq!(r.failed("a"), Duration::from_millis(100));
        assert_eq!(r.failed("a"), Duration::from_millis(200));
        assert_eq!(r.failed("b"), Duration::from_millis(100));
        assert_eq!(r.failed("a"), Duration::from_millis(400));
        r.succeeded("a");
        assert_eq!(r.failed("a"), Duration::from_millis(100));
        assert_eq!(retry_delay(40), MAX_RETRY);
    }
}
