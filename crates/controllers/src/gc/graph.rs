//! The garbage collector's picture of who owns whom (kube-controller-manager's
//! `GraphBuilder`): one node per uid, built from the watch events of every kind, with the
//! owners each object names and the dependents that name it. An owner named by a dependent
//! but not seen yet is a "virtual" node until a watch shows it or the API says it is gone.
//!
//! Pure: [`Graph::observe`] and [`Graph::remove`] apply one event and answer the work it
//! makes (which uids to look at, which owners to orphan); the API calls are elsewhere.

use std::collections::{BTreeSet, HashMap};

use crate::gc::policy::{FOREGROUND_FINALIZER, ORPHAN_FINALIZER};

pub type Uid = String;

/// Where an object is: what an owner reference names, plus the namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub api_version: String,
    pub kind: String,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
    pub uid: Uid,
}

impl Identity {
    /// The owner a reference names, looked for in `namespace` (the dependent's).
    fn of_reference(r: &OwnerRef, namespace: &str) -> Self {
        Identity {
            api_version: r.api_version.clone(),
            kind: r.kind.clone(),
            namespace: namespace.to_string(),
            name: r.name.clone(),
            uid: r.uid.clone(),
        }
    }

    /// Whether `r` names this object by the same coordinates.
    fn matches(&self, r: &OwnerRef) -> bool {
        self.uid == r.uid
            && self.name == r.name
            && self.kind == r.kind
            && self.api_version == r.api_version
    }
}

impl std::fmt::Display for Identity {
    /// Upstream's `objectReference.String()`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{}/{}, namespace: {}, name: {}, uid: {}]",
            self.api_version, self.kind, self.namespace, self.name, self.uid
        )
    }
}

/// The part of an `ownerReference` the collector reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRef {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: Uid,
    pub block_owner_deletion: bool,
}

/// What a watch event says about one object.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub identity: Identity,
    pub owners: Vec<OwnerRef>,
    /// `deletionTimestamp` is set.
    pub deleting: bool,
    pub finalizers: Vec<String>,
}

impl Observed {
    fn waits_for(&self, finalizer: &str) -> bool {
        self.deleting && self.finalizers.iter().any(|f| f == finalizer)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub identity: Identity,
    pub owners: Vec<OwnerRef>,
    pub dependents: BTreeSet<Uid>,
    /// Seen through a watch; a node only named by its dependents is virtual.
    pub observed: bool,
    pub being_deleted: bool,
    /// Deleted in the foreground: it waits for its blocking dependents.
    pub deleting_dependents: bool,
    /// The last observation was deleting with the `orphan` finalizer.
    waiting_orphan: bool,
    /// The last observation was deleting with the `foregroundDeletion` finalizer.
    waiting_foreground: bool,
}

impl Node {
    fn virtual_owner(identity: Identity) -> Self {
        Node {
            identity,
            owners: Vec::new(),
            dependents: BTreeSet::new(),
            observed: false,
            being_deleted: false,
            deleting_dependents: false,
            waiting_orphan: false,
            waiting_foreground: false,
        }
    }
}

/// Work an event makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// Look at this uid: collect it if its owners are gone, or finish a foreground
    /// deletion, or verify a virtual node.
    AttemptToDelete(Uid),
    /// Remove this owner from its dependents' references, then its `orphan` finalizer.
    AttemptToOrphan(Uid),
    /// `dependent` names an owner that lives in another namespace (a warning event).
    InvalidNamespaceOwnerRef { dependent: Identity, owner: Uid },
}

#[derive(Debug, Default)]
pub struct Graph {
    nodes: HashMap<Uid, Node>,
}

impl Graph {
    pub fn node(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    /// The dependents of `uid` still in the graph.
    pub fn dependents(&self, uid: &str) -> Vec<&Node> {
        self.nodes
            .get(uid)
            .map(|n| {
                n.dependents
                    .iter()
                    .filter_map(|d| self.nodes.get(d))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Dependents whose reference to `uid` has `blockOwnerDeletion`: a foreground
    /// deletion of `uid` waits for them.
    pub fn blocking_dependents(&self, uid: &str) -> Vec<&Node> {
        self.dependents(uid)
            .into_iter()
            .filter(|d| {
                d.owners
                    .iter()
                    .any(|o| o.uid == uid && o.block_owner_deletion)
            })
            .collect()
    }

    /// Uids of the observed nodes of one kind (to find what a relist no longer lists).
    pub fn observed_of_kind(&self, api_version: &str, kind: &str) -> Vec<Uid> {
        self.nodes
            .values()
            .filter(|n| {
                n.observed && n.identity.api_version == api_version && n.identity.kind == kind
            })
            .map(|n| n.identity.uid.clone())
            .collect()
    }

    /// An object was added or changed.
    pub fn observe(&mut self, obs: Observed) -> Vec<Work> {
        let mut work = Vec::new();
        let uid = obs.identity.uid.clone();
        let Some(existing) = self.nodes.get(&uid) else {
            let node = Node {
                identity: obs.identity.clone(),
                owners: obs.owners.clone(),
                dependents: BTreeSet::new(),
                observed: true,
                being_deleted: obs.deleting,
                deleting_dependents: obs.waits_for(FOREGROUND_FINALIZER),
                waiting_orphan: false,
                waiting_foreground: false,
            };
            self.nodes.insert(uid.clone(), node);
            self.add_to_owners(&uid, &obs.owners, &mut work);
            self.transitions(&uid, &obs, &mut work);
            return work;
        };
        if !existing.observed {
            // A virtual node turns real; its dependents that named it by other coordinates
            // (or from another namespace) are looked at again.
            let dependents: Vec<Uid> = existing.dependents.iter().cloned().collect();
            for d in dependents {
                let Some(dep) = self.nodes.get(&d) else {
                    continue;
                };
                let (ns_mismatch, mismatch) = names_wrongly(&obs.identity, dep);
                if ns_mismatch {
                    work.push(Work::InvalidNamespaceOwnerRef {
                        dependent: dep.identity.clone(),
                        owner: uid.clone(),
                    });
                }
                if mismatch {
                    work.push(Work::AttemptToDelete(d));
                }
            }
        }
        let Some(node) = self.nodes.get_mut(&uid) else {
            return work;
        };
        node.observed = true;
        node.identity = obs.identity.clone();
        let old_owners = std::mem::replace(&mut node.owners, obs.owners.clone());
        if obs.deleting {
            node.being_deleted = true;
        }
        let (added, removed, unblocked) = owner_diff(&old_owners, &obs.owners);
        for o in unblocked {
            if self.nodes.contains_key(&o) {
                work.push(Work::AttemptToDelete(o));
            }
        }
        for o in &removed {
            if let Some(owner) = self.nodes.get_mut(o) {
                owner.dependents.remove(&uid);
            }
        }
        self.add_to_owners(&uid, &added, &mut work);
        self.transitions(&uid, &obs, &mut work);
        work
    }

    /// An object is gone: seen in a watch (`virtual_identity` None) or verified absent by a
    /// worker (a virtual delete, with the identity it looked for).
    pub fn remove(&mut self, uid: &str, virtual_identity: Option<&Identity>) -> Vec<Work> {
        let mut work = Vec::new();
        let Some(node) = self.nodes.get(uid) else {
            return work;
        };
        if let Some(gone) = virtual_identity {
            // Dependents that named the uid by other coordinates may still name something
            // real: keep the node for them, collect the ones that matched.
            let (matching, other): (Vec<&Node>, Vec<&Node>) = self
                .dependents(uid)
                .into_iter()
                .partition(|d| !names_wrongly(gone, d).1);
            let keep = if node.observed {
                node.identity != *gone
            } else {
                !other.is_empty()
            };
            if keep {
                work.extend(
                    matching
                        .iter()
                        .map(|d| Work::AttemptToDelete(d.identity.uid.clone())),
                );
                if !node.observed && node.identity == *gone {
                    // Verify the next identity the remaining dependents give it.
                    let next = other.iter().find_map(|d| {
                        d.owners
                            .iter()
                            .find(|o| o.uid == uid && !gone.matches(o))
                            .map(|o| Identity::of_reference(o, &d.identity.namespace))
                    });
                    if let Some(next) = next {
                        if let Some(n) = self.nodes.get_mut(uid) {
                            n.identity = next;
                        }
                        work.push(Work::AttemptToDelete(uid.to_string()));
                    }
                }
                return work;
            }
        }
        let Some(node) = self.nodes.remove(uid) else {
            return work;
        };
        for o in &node.owners {
            if let Some(owner) = self.nodes.get_mut(&o.uid) {
                owner.dependents.remove(uid);
                if owner.deleting_dependents {
                    // It may have been waiting for this one.
                    work.push(Work::AttemptToDelete(o.uid.clone()));
                }
            }
        }
        work.extend(node.dependents.into_iter().map(Work::AttemptToDelete));
        work
    }

    /// Links `uid` into the dependents of each of `owners`, creating virtual owners.
    fn add_to_owners(&mut self, uid: &str, owners: &[OwnerRef], work: &mut Vec<Work>) {
        let Some(dep) = self.nodes.get(uid) else {
            return;
        };
        let dep_identity = dep.identity.clone();
        let mut suspicious = false;
        for r in owners {
            match self.nodes.get_mut(&r.uid) {
                None => {
                    let mut owner =
                        Node::virtual_owner(Identity::of_reference(r, &dep_identity.namespace));
                    owner.dependents.insert(uid.to_string());
                    self.nodes.insert(r.uid.clone(), owner);
                    // The API says whether it exists.
                    work.push(Work::AttemptToDelete(r.uid.clone()));
                }
                Some(owner) => {
                    owner.dependents.insert(uid.to_string());
                    let owner_ns = &owner.identity.namespace;
                    if !owner_ns.is_empty() && *owner_ns != dep_identity.namespace {
                        if owner.observed {
                            work.push(Work::InvalidNamespaceOwnerRef {
                                dependent: dep_identity.clone(),
                                owner: r.uid.clone(),
                            });
                        }
                        suspicious = true;
                    } else if !owner.identity.matches(r)
                        || (owner_ns.is_empty()
                            && !dep_identity.namespace.is_empty()
                            && !owner.observed)
                    {
                        // Other coordinates than the owner's, or a virtual cluster-scoped
                        // owner that may be a namespaced kind named from a cluster-scoped
                        // dependent: verify against the API.
                        suspicious = true;
                    }
                }
            }
        }
        if suspicious {
            work.push(Work::AttemptToDelete(uid.to_string()));
        }
    }

    /// Upstream's `processTransitions`: deletion that starts with the `orphan` or the
    /// `foregroundDeletion` finalizer.
    fn transitions(&mut self, uid: &str, obs: &Observed, work: &mut Vec<Work>) {
        let Some(node) = self.nodes.get_mut(uid) else {
            return;
        };
        let orphan = obs.waits_for(ORPHAN_FINALIZER);
        let foreground = obs.waits_for(FOREGROUND_FINALIZER);
        let starts_orphan = orphan && !node.waiting_orphan;
        let starts_foreground = foreground && !node.waiting_foreground;
        node.waiting_orphan = orphan;
        node.waiting_foreground = foreground;
        if starts_orphan {
            work.push(Work::AttemptToOrphan(uid.to_string()));
            return;
        }
        if starts_foreground {
            node.deleting_dependents = true;
            work.extend(node.dependents.iter().cloned().map(Work::AttemptToDelete));
            work.push(Work::AttemptToDelete(uid.to_string()));
        }
    }
}

/// How `dep` names `owner`: (from another namespace than a namespaced owner's, by other
/// coordinates or from another namespace).
fn names_wrongly(owner: &Identity, dep: &Node) -> (bool, bool) {
    if !owner.namespace.is_empty() && owner.namespace != dep.identity.namespace {
        return (true, true);
    }
    let mismatch = dep
        .owners
        .iter()
        .any(|o| o.uid == owner.uid && !owner.matches(o));
    (false, mismatch)
}

/// Owners (by uid) added, removed, and unblocked (a removed blocking reference, or one
/// whose `blockOwnerDeletion` went from true to false).
fn owner_diff(old: &[OwnerRef], new: &[OwnerRef]) -> (Vec<OwnerRef>, Vec<Uid>, Vec<Uid>) {
    let added = new
        .iter()
        .filter(|n| !old.iter().any(|o| o.uid == n.uid))
        .cloned()
        .collect();
    let mut removed = Vec::new();
    let mut unblocked = Vec::new();
    for o in old {
        match new.iter().find(|n| n.uid == o.uid) {
            None => {
                removed.push(o.uid.clone());
                if o.block_owner_deletion {
                    unblocked.push(o.uid.clone());
                }
            }
            Some(n) if o.block_owner_deletion && !n.block_owner_deletion => {
                unblocked.push(o.uid.clone())
            }
            Some(_) => {}
        }
    }
    (added, removed, unblocked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(kind: &str, ns: &str, name: &str) -> Identity {
        Identity {
            api_version: "v1".into(),
            kind: kind.into(),
            namespace: ns.into(),
            name: name.into(),
            uid: format!("uid-{name}"),
        }
    }

    fn owner_ref(owner: &Identity, block: bool) -> OwnerRef {
        OwnerRef {
            api_version: owner.api_version.clone(),
            kind: owner.kind.clone(),
            name: owner.name.clone(),
            uid: owner.uid.clone(),
            block_owner_deletion: block,
        }
    }

    fn obs(identity: &Identity, owners: Vec<OwnerRef>) -> Observed {
        Observed {
            identity: identity.clone(),
            owners,
            deleting: false,
            finalizers: Vec::new(),
        }
    }

    fn deleting(identity: &Identity, finalizer: &str) -> Observed {
        Observed {
            deleting: true,
            finalizers: vec![finalizer.to_string()],
            ..obs(identity, Vec::new())
        }
    }

    fn del(uid: &str) -> Work {
        Work::AttemptToDelete(uid.to_string())
    }

    #[test]
    fn owners_and_dependents_link_both_ways() {
        let mut g = Graph::default();
        let owner = id("ConfigMap", "default", "owner");
        let pod = id("Pod", "default", "pod");
        assert_eq!(g.observe(obs(&owner, vec![])), vec![]);
        assert_eq!(g.observe(obs(&pod, vec![owner_ref(&owner, true)])), vec![]);
        let deps: Vec<&str> = g
            .dependents(&owner.uid)
            .iter()
            .map(|n| n.identity.name.as_str())
            .collect();
        assert_eq!(deps, ["pod"]);
        assert_eq!(g.blocking_dependents(&owner.uid).len(), 1);
        // The owner goes: its dependent is looked at.
        assert_eq!(g.remove(&owner.uid, None), vec![del(&pod.uid)]);
        assert!(g.node(&owner.uid).is_none());
        // Dropping the reference unlinks it.
        let other = id("ConfigMap", "default", "other");
        g.observe(obs(&other, vec![]));
        g.observe(obs(&pod, vec![owner_ref(&other, false)]));
        assert_eq!(g.dependents(&other.uid).len(), 1);
        g.observe(obs(&pod, vec![]));
        assert!(g.dependents(&other.uid).is_empty());
    }

    #[test]
    fn an_unseen_owner_is_virtual_until_verified() {
        let mut g = Graph::default();
        let ghost = id("ConfigMap", "default", "ghost");
        let dep = id("ConfigMap", "default", "dep");
        assert_eq!(
            g.observe(obs(&dep, vec![owner_ref(&ghost, false)])),
            vec![del(&ghost.uid)]
        );
        let virt = g.node(&ghost.uid).expect("virtual owner");
        assert!(!virt.observed);
        // The worker found it absent: its dependent is looked at and the node goes.
        assert_eq!(g.remove(&ghost.uid, Some(&ghost)), vec![del(&dep.uid)]);
        assert!(g.node(&ghost.uid).is_none());
        // Seen later after all, it simply turns real.
        let late = id("ConfigMap", "default", "late");
        g.observe(obs(&dep, vec![owner_ref(&late, false)]));
        assert_eq!(g.observe(obs(&late, vec![])), vec![]);
        assert!(g.node(&late.uid).expect("owner").observed);
    }

    #[test]
    fn a_virtual_delete_does_not_remove_a_real_node_seen_otherwise() {
        let mut g = Graph::default();
        let owner = id("ConfigMap", "default", "owner");
        g.observe(obs(&owner, vec![]));
        let mut wrong = owner.clone();
        wrong.kind = "Secret".into();
        assert_eq!(g.remove(&owner.uid, Some(&wrong)), vec![]);
        assert!(g.node(&owner.uid).is_some());
    }

    #[test]
    fn owners_in_another_namespace_are_reported() {
        let mut g = Graph::default();
        let owner = id("ConfigMap", "team-a", "owner");
        let dep = id("ConfigMap", "team-b", "dep");
        g.observe(obs(&owner, vec![]));
        let work = g.observe(obs(&dep, vec![owner_ref(&owner, false)]));
        assert_eq!(
            work,
            vec![
                Work::InvalidNamespaceOwnerRef {
                    dependent: dep.clone(),
                    owner: owner.uid.clone()
                },
                del(&dep.uid)
            ]
        );
        // Seen in the other order: the dependent first, then the owner.
        let mut g = Graph::default();
        g.observe(obs(&dep, vec![owner_ref(&owner, false)]));
        let work = g.observe(obs(&owner, vec![]));
        assert_eq!(
            work,
            vec![
                Work::InvalidNamespaceOwnerRef {
                    dependent: dep.clone(),
                    owner: owner.uid.clone()
                },
                del(&dep.uid)
            ]
        );
        // A cluster-scoped owner may own objects of any namespace.
        let mut g = Graph::default();
        let ns = id("Namespace", "", "team");
        g.observe(obs(&ns, vec![]));
        assert_eq!(g.observe(obs(&dep, vec![owner_ref(&ns, false)])), vec![]);
    }

    #[test]
    fn orphan_and_foreground_start_once() {
        let mut g = Graph::default();
        let owner = id("ConfigMap", "default", "owner");
        let dep = id("Pod", "default", "dep");
        g.observe(obs(&owner, vec![]));
        g.observe(obs(&dep, vec![owner_ref(&owner, true)]));
        assert_eq!(
            g.observe(deleting(&owner, ORPHAN_FINALIZER)),
            vec![Work::AttemptToOrphan(owner.uid.clone())]
        );
        assert_eq!(g.observe(deleting(&owner, ORPHAN_FINALIZER)), vec![]);

        let mut g = Graph::default();
        g.observe(obs(&owner, vec![]));
        g.observe(obs(&dep, vec![owner_ref(&owner, true)]));
        assert_eq!(
            g.observe(deleting(&owner, FOREGROUND_FINALIZER)),
            vec![del(&dep.uid), del(&owner.uid)]
        );
        assert!(g.node(&owner.uid).expect("owner").deleting_dependents);
        assert_eq!(g.observe(deleting(&owner, FOREGROUND_FINALIZER)), vec![]);
        // The blocking dependent goes: the owner is looked at again.
        assert_eq!(g.remove(&dep.uid, None), vec![del(&owner.uid)]);
        assert!(g.blocking_dependents(&owner.uid).is_empty());
    }

    #[test]
    fn unblocking_a_reference_wakes_the_owner() {
        let mut g = Graph::default();
        let owner = id("ConfigMap", "default", "owner");
        let dep = id("Pod", "default", "dep");
        g.observe(obs(&owner, vec![]));
        g.observe(obs(&dep, vec![owner_ref(&owner, true)]));
        assert_eq!(
            g.observe(obs(&dep, vec![owner_ref(&owner, false)])),
            vec![del(&owner.uid)]
        );
        assert!(g.blocking_dependents(&owner.uid).is_empty());
        assert_eq!(g.observe(obs(&dep, vec![])), vec![]);
    }

    #[test]
    fn a_new_node_being_deleted_in_the_foreground_is_marked() {
        let mut g = Graph::default();
        let owner = id("ConfigMap", "default", "owner");
        assert_eq!(
            g.observe(deleting(&owner, FOREGROUND_FINALIZER)),
            vec![del(&owner.uid)]
        );
        let n = g.node(&owner.uid).expect("node");
        assert!(n.deleting_dependents && n.being_deleted);
        assert_eq!(
            g.observed_of_kind("v1", "ConfigMap"),
            vec![owner.uid.clone()]
        );
    }
}
