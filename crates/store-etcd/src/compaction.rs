//! Periodic compaction, as kube-apiserver's compactor runs it: every interval, the history up
//! to the revision seen one interval earlier is dropped, so watches can resume from anything
//! in the last interval and older ones get `410 Gone`. Several API servers share the work
//! through a counter key: whoever bumps it from the version it last saw compacts this round,
//! the others learn the new version and wait for the next.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse};

use crate::members::Members;

/// The counter key, outside the objects' prefix.
pub const COMPACT_KEY: &str = "compact_rev_key";

/// kube-apiserver's default `--etcd-compaction-interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);

/// What one server remembers between rounds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Compactor {
    /// The counter key's version this server last saw.
    version: i64,
    /// The store revision at the last round (0: none yet).
    last_rev: i64,
}

/// What a round decided after its counter transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    /// Compact up to this revision.
    Compact(i64),
    /// Nothing to do this round (first round, or another server won it).
    Skip,
}

impl Compactor {
    /// The pure step: `won` says whether our counter transaction succeeded, `seen_version` is
    /// the counter's version when it did not, and `rev` is the store revision now.
    pub fn step(&mut self, won: bool, seen_version: i64, rev: i64) -> Round {
        let round = if won {
            self.version += 1;
            if self.last_rev > 0 {
                Round::Compact(self.last_rev)
            } else {
                Round::Skip
            }
        } else {
            self.version = seen_version;
            Round::Skip
        };
        self.last_rev = rev;
        round
    }

    /// One round against etcd.
    pub async fn round(&mut self, members: &Members) -> Result<Round, etcd_client::Error> {
        let txn = Txn::new()
            .when([Compare::version(
                COMPACT_KEY,
                CompareOp::Equal,
                self.version,
            )])
            .and_then([TxnOp::put(COMPACT_KEY, "", None)])
            .or_else([TxnOp::get(COMPACT_KEY, None)]);
        let resp = members
            .try_call(|mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await?;
        let rev = resp.header().map_or(0, |h| h.revision());
        let seen = resp
            .op_responses()
            .into_iter()
            .find_map(|r| match r {
                TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.version()),
                _ => None,
            })
            .unwrap_or(0);
        let round = self.step(resp.succeeded(), seen, rev);
        if let Round::Compact(to) = round {
            match members
                .try_call(|mut c| async move { c.compact(to, None).await })
                .await
            {
                Ok(_) => {}
                // Compacted further already (by hand, or a server with a shorter interval).
                Err(etcd_client::Error::GRpcStatus(s)) if s.message().contains("compacted") => {}
                Err(e) => return Err(e),
            }
        }
        Ok(round)
    }
}

/// Runs a round every `interval` until the task is aborted.
pub async fn run(members: Arc<Members>, interval: Duration) {
    let mut compactor = Compactor::default();
    loop {
        tokio::time::sleep(interval).await;
        match compactor.round(&members).await {
            Ok(Round::Compact(rev)) => tracing::debug!(rev, "etcd history compacted"),
            Ok(Round::Skip) => {}
            Err(e) => tracing::warn!(error = %e, "compacting etcd"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compacts_to_the_revision_of_the_round_before() {
        let mut c = Compactor::default();
        assert_eq!(c.step(true, 0, 100), Round::Skip);
        assert_eq!(c.step(true, 0, 250), Round::Compact(100));
        assert_eq!(c.step(true, 0, 300), Round::Compact(250));
    }

    #[test]
    fn the_loser_of_a_round_adopts_the_counter_and_skips() {
        let mut a = Compactor::default();
        let mut b = Compactor::default();
        assert_eq!(a.step(true, 0, 10), Round::Skip);
        assert_eq!(b.step(false, 1, 11), Round::Skip);
        // b now expects version 1 and wins the next round; a's expectation is stale.
        assert_eq!(b.step(true, 0, 20), Round::Compact(11));
        assert_eq!(a.step(false, 2, 21), Round::Skip);
        assert_eq!(a.step(true, 0, 30), Round::Compact(21));
    }
}
