//! kube-controller-manager's node IPAM controller with its range allocator
//! (`--allocate-node-cidrs --cluster-cidr=10.244.0.0/16 --node-cidr-mask-size=24`): every
//! Node without `spec.podCIDR` gets the first free /24 of the cluster CIDR in `spec.podCIDR`
//! and `spec.podCIDRs`, which its node agent turns into its pod network and the other nodes
//! into routes.
//!
//! The ranges in use are read from the Node cache each time (so they are rebuilt from the
//! existing Nodes when the controller starts, and a deleted Node's range is free again once
//! it leaves the cache), plus the ranges this controller handed out that the cache has not
//! shown yet, so two Nodes reconciled at once never get the same range. As upstream, a
//! range once set is never changed, and a Node whose range lies outside the cluster CIDR
//! keeps it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use controller_base::error::{is_conflict, is_not_found, Error};
use controller_base::Shared;

/// kube-controller-manager's `--cluster-cidr` as peapod's nodes use it.
const CLUSTER_CIDR: Ipv4Net = Ipv4Net::new_assert(std::net::Ipv4Addr::new(10, 244, 0, 0), 16);
/// kube-controller-manager's default `--node-cidr-mask-size` for IPv4.
const NODE_CIDR_MASK: u8 = 24;
/// How long to wait before trying again when every range is taken (upstream records
/// `CIDRNotAvailable` and retries).
const RETRY_FULL: Duration = Duration::from_secs(30);

/// The ranges of a cluster CIDR, by index (the first /24 of 10.244.0.0/16 is 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeAllocator {
    cluster: Ipv4Net,
    mask: u8,
}

impl RangeAllocator {
    /// `None` when `mask` does not cut `cluster` into ranges.
    #[cfg(test)]
    pub fn new(cluster: Ipv4Net, mask: u8) -> Option<Self> {
        (mask >= cluster.prefix_len() && mask <= 32).then(|| Self {
            cluster: cluster.trunc(),
            mask,
        })
    }

    fn count(&self) -> u64 {
        1u64 << (self.mask - self.cluster.prefix_len())
    }

    fn range(&self, index: u64) -> Option<Ipv4Net> {
        let step = 1u64 << (32 - self.mask);
        let base = u64::from(u32::from(self.cluster.network()));
        let addr = u32::try_from(base + index * step).ok()?;
        Ipv4Net::new(addr.into(), self.mask).ok()
    }

    /// The indexes of the ranges `cidr` overlaps (none when it lies outside the cluster CIDR
    /// or is not an IPv4 CIDR).
    fn overlapped(&self, cidr: &str) -> Vec<u64> {
        let Ok(net) = cidr.parse::<Ipv4Net>() else {
            return Vec::new();
        };
        let net = net.trunc();
        let (lo, hi) = (
            u32::from(net.network()).max(u32::from(self.cluster.network())),
            u32::from(net.broadcast()).min(u32::from(self.cluster.broadcast())),
        );
        if lo > hi {
            return Vec::new();
        }
        let shift = 32 - self.mask;
        let first = u64::from(lo - u32::from(self.cluster.network())) >> shift;
        let last = u64::from(hi - u32::from(self.cluster.network())) >> shift;
        (first..=last).collect()
    }

    /// The first range no CIDR in `used` overlaps.
    pub fn next_free<'a>(&self, used: impl IntoIterator<Item = &'a str>) -> Option<Ipv4Net> {
        let taken: BTreeSet<u64> = used.into_iter().flat_map(|c| self.overlapped(c)).collect();
        (0..self.count())
            .find(|i| !taken.contains(i))
            .and_then(|i| self.range(i))
    }
}

impl Default for RangeAllocator {
    fn default() -> Self {
        Self {
            cluster: CLUSTER_CIDR,
            mask: NODE_CIDR_MASK,
        }
    }
}

/// The Node's pod CIDRs (`spec.podCIDRs`, or `spec.podCIDR` alone as older writers set it).
fn pod_cidrs(node: &Node) -> Vec<String> {
    let spec = node.spec.as_ref();
    let list = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
    if !list.is_empty() {
        return list;
    }
    spec.and_then(|s| s.pod_cidr.clone()).into_iter().collect()
}

struct Ctx {
    client: Client,
    nodes: Store<Node>,
    allocator: RangeAllocator,
    /// Ranges handed out by name, until the cache shows them on their Node.
    pending: Mutex<BTreeMap<String, String>>,
}

impl Ctx {
    /// Picks the range for `name` and records it as pending; `None` when none is free.
    fn reserve(&self, name: &str) -> Option<String> {
        let nodes = self.nodes.state();
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        // Pending entries end once their Node shows a range, or is gone.
        pending.retain(|n, _| {
            nodes
                .iter()
                .any(|node| node.name_any() == *n && pod_cidrs(node).is_empty())
        });
        if let Some(cidr) = pending.get(name) {
            return Some(cidr.clone());
        }
        let in_use: Vec<String> = nodes
            .iter()
            .flat_map(|n| pod_cidrs(n))
            .chain(pending.values().cloned())
            .collect();
        let cidr = self
            .allocator
            .next_free(in_use.iter().map(String::as_str))?
            .to_string();
        pending.insert(name.to_string(), cidr.clone());
        Some(cidr)
    }

    fn forget(&self, name: &str) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }
}

pub fn run(shared: &Shared) -> BoxFuture<'static, ()> {
    let client = shared.client.clone();
    let nodes = controller_base::cache::controller(
        Api::<Node>::all(client.clone()),
        watcher::Config::default(),
    );
    let ctx = Arc::new(Ctx {
        client,
        nodes: nodes.store(),
        allocator: RangeAllocator::default(),
        pending: Mutex::new(BTreeMap::new()),
    });
    controller_base::runner::drive("nodeipam", nodes, ctx, reconcile)
        .map(|_| ())
        .boxed()
}

async fn reconcile(node: Arc<Node>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if !pod_cidrs(&node).is_empty() || node.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    // Every existing Node's range must be known before handing one out.
    controller_base::cache::ready(&ctx.nodes)
        .await
        .map_err(|e| Error::Cache("node", e))?;
    let name = node.name_any();
    let Some(cidr) = ctx.reserve(&name) else {
        tracing::warn!(node = %name, cluster = %ctx.allocator.cluster, "CIDRNotAvailable: no pod CIDR left for the node");
        return Ok(Action::requeue(RETRY_FULL));
    };
    let patch = serde_json::json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
    match Api::<Node>::all(ctx.client.clone())
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            tracing::info!(node = %name, %cidr, "allocated the node's pod CIDR");
            Ok(Action::await_change())
        }
        Err(e) if is_not_found(&e) || is_conflict(&e) => {
            ctx.forget(&name);
            Ok(Action::await_change())
        }
        Err(e) => {
            ctx.forget(&name);
            Err(Error::api(format!("setting the pod CIDR of node {name}"))(
                e,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc(cluster: &str, mask: u8) -> RangeAllocator {
        RangeAllocator::new(cluster.parse().expect("cidr"), mask).expect("allocator")
    }

    #[test]
    fn the_first_node_gets_the_first_range_and_the_next_the_next_free() {
        let a = RangeAllocator::default();
        assert_eq!(
            a.next_free([]).map(|n| n.to_string()).as_deref(),
            Some("10.244.0.0/24")
        );
        let next = a.next_free(["10.244.0.0/24", "10.244.2.0/24"]);
        assert_eq!(
            next.map(|n| n.to_string()).as_deref(),
            Some("10.244.1.0/24")
        );
        // A freed range (its Node gone from the list) is handed out again.
        let again = a.next_free(["10.244.1.0/24", "10.244.2.0/24"]);
        assert_eq!(
            again.map(|n| n.to_string()).as_deref(),
            Some("10.244.0.0/24")
        );
    }

    #[test]
    fn foreign_and_wider_ranges_count_for_what_they_overlap() {
        let a = alloc("10.244.0.0/16", 24);
        // Outside the cluster CIDR, or garbage: nothing taken.
        let next = a.next_free(["192.168.0.0/24", "not a cidr", "fd00::/64"]);
        assert_eq!(
            next.map(|n| n.to_string()).as_deref(),
            Some("10.244.0.0/24")
        );
        // A /23 set by hand takes two ranges.
        let next = a.next_free(["10.244.0.0/23"]);
        assert_eq!(
            next.map(|n| n.to_string()).as_deref(),
            Some("10.244.2.0/24")
        );
    }

    #[test]
    fn a_full_cluster_cidr_has_no_range_left() {
        let a = alloc("10.0.0.0/30", 31);
        assert_eq!(
            a.next_free(["10.0.0.0/31"])
                .map(|n| n.to_string())
                .as_deref(),
            Some("10.0.0.2/31")
        );
        assert_eq!(a.next_free(["10.0.0.0/31", "10.0.0.2/31"]), None);
        assert!(RangeAllocator::new("10.0.0.0/16".parse().expect("cidr"), 8).is_none());
    }

    #[test]
    fn pod_cidrs_come_from_the_list_or_the_single_field() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "a"}, "spec": {"podCIDR": "10.244.3.0/24"}
        }))
        .expect("node");
        assert_eq!(pod_cidrs(&node), ["10.244.3.0/24"]);
        let bare: Node =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "b"}})).expect("node");
        assert!(pod_cidrs(&bare).is_empty());
    }
}
