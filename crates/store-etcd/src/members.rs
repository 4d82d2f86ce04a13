//! One client per etcd member and failover between them, as etcd's own client pins one
//! member and moves on when it cannot be reached: a request that finds its member gone (or
//! without a leader) is sent again to the next member, so the store keeps working while any
//! quorum holds. Requests carry compare conditions (create and mod revisions), so sending a
//! write again never applies it twice: at worst it reports a conflict the caller retries.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use etcd_client::Client;
use store::StoreError;

use crate::unavailable;

/// How many times every member is tried before a request fails.
const ROUNDS: usize = 3;

pub struct Members {
    clients: Vec<Client>,
    /// The member requests go to first.
    current: AtomicUsize,
    /// The endpoints, for error messages.
    pub target: String,
}

/// gRPC status codes (the wire numbers) that mean "try another member". A member killed
/// mid-request shows as CANCELLED ("connection closed") on the requests it had open.
const CANCELLED: i32 = 1;
const UNKNOWN: i32 = 2;
const DEADLINE_EXCEEDED: i32 = 4;
const UNAVAILABLE: i32 = 14;

/// Whether `e` says the member could not serve the request, so another one may.
fn unreachable(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::TransportError(_) => true,
        etcd_client::Error::GRpcStatus(s) => {
            matches!(
                i32::from(s.code()),
                CANCELLED | UNKNOWN | DEADLINE_EXCEEDED | UNAVAILABLE
            )
        }
        _ => false,
    }
}

impl Members {
    pub fn new(clients: Vec<Client>, target: String) -> Self {
        Members {
            clients,
            current: AtomicUsize::new(0),
            target,
        }
    }

    /// Runs `f` against the current member, moving on to the next while members cannot be
    /// reached. `op` and `what` name the request in errors.
    pub async fn call<T, F, Fut>(&self, op: &'static str, what: &str, f: F) -> Result<T, StoreError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        self.try_call(f).await.map_err(|e| unavailable(op, what, e))
    }

    /// As [`Members::call`], with etcd's own error (for callers that look into it).
    pub async fn try_call<T, F, Fut>(&self, f: F) -> Result<T, etcd_client::Error>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let n = self.clients.len().max(1);
        let mut attempt = 0;
        loop {
            let i = self.current.load(Ordering::Relaxed) % n;
            let Some(client) = self.clients.get(i) else {
                return Err(etcd_client::Error::InvalidArgs("no etcd endpoints".into()));
            };
            match f(client.clone()).await {
                Err(e) if unreachable(&e) && attempt + 1 < n * ROUNDS => {
                    attempt += 1;
                    // Another request may have moved on already.
                    let _ = self.current.compare_exchange(
                        i,
                        (i + 1) % n,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                    if attempt % n == 0 {
                        // Every member refused: give an election time to finish.
                        tokio::time::sleep(Duration::from_millis(200 * attempt as u64)).await;
                    }
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_gone_mid_request_is_worth_another_member() {
        let status = |s: tonic::Status| etcd_client::Error::GRpcStatus(s);
        assert!(unreachable(&status(tonic::Status::cancelled(
            "connection closed"
        ))));
        assert!(unreachable(&status(tonic::Status::unavailable(
            "no leader"
        ))));
        assert!(unreachable(&status(tonic::Status::deadline_exceeded(
            "slow"
        ))));
        assert!(!unreachable(&status(tonic::Status::invalid_argument(
            "bad key"
        ))));
        assert!(!unreachable(&status(tonic::Status::permission_denied(
            "no"
        ))));
    }
}
