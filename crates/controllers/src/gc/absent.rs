//! Owners known to be gone (upstream's `absentOwnerCache`): a uid never comes back, so once
//! the API said an owner is absent, the dependents that name it need not ask again. Bounded,
//! oldest first out.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use crate::gc::graph::Identity;

/// As many owners as upstream's cache holds.
const CAPACITY: usize = 500;

#[derive(Default)]
pub struct AbsentOwners {
    inner: Mutex<(VecDeque<Identity>, HashSet<Identity>)>,
}

impl AbsentOwners {
    pub fn add(&self, identity: Identity) {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (order, set) = &mut *guard;
        if !set.insert(identity.clone()) {
            return;
        }
        order.push_back(identity);
        while order.len() > CAPACITY {
            if let Some(old) = order.pop_front() {
                set.remove(&old);
            }
        }
    }

    pub fn contains(&self, identity: &Identity) -> bool {
        let guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        guard.1.contains(identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: usize) -> Identity {
        Identity {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: "default".into(),
            name: format!("cm{n}"),
            uid: format!("u{n}"),
        }
    }

    #[test]
    fn remembers_up_to_its_capacity() {
        let cache = AbsentOwners::default();
        for n in 0..=CAPACITY {
            cache.add(id(n));
        }
        assert!(!cache.contains(&id(0)));
        assert!(cache.contains(&id(1)));
        assert!(cache.contains(&id(CAPACITY)));
        let mut other_ns = id(1);
        other_ns.namespace = "team".into();
        assert!(!cache.contains(&other_ns));
    }
}
