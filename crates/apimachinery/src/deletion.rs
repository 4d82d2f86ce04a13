//! What a DELETE does with an object's dependents: the garbage-collection finalizers
//! (`orphan`, `foregroundDeletion`) kube-apiserver's generic store puts on an object from the
//! request's `propagationPolicy` (or the deprecated `orphanDependents`) and the kind's
//! default policy, before the garbage collector takes over.

use std::collections::BTreeSet;

/// The finalizer that keeps an owner until the garbage collector has removed it from its
/// dependents' `ownerReferences` (metav1.FinalizerOrphanDependents).
pub const ORPHAN_FINALIZER: &str = "orphan";
/// The finalizer that keeps an owner until its blocking dependents are gone
/// (metav1.FinalizerDeleteDependents).
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

/// `DeleteOptions.propagationPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Orphan,
    Background,
    Foreground,
}

impl Propagation {
    /// The values the API accepts, in the order its error message lists them.
    pub const NAMES: &'static [&'static str] = &["Foreground", "Background", "Orphan", "nil"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Orphan" => Some(Propagation::Orphan),
            "Background" => Some(Propagation::Background),
            "Foreground" => Some(Propagation::Foreground),
            _ => None,
        }
    }
}

/// `DefaultGarbageCollectionPolicy` of a kind: what a DELETE that chooses no propagation
/// does with the object's dependents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GcPolicy {
    /// The garbage collector deletes the dependents once the object is gone (background);
    /// most kinds.
    DeleteDependents,
    /// The object gets the `orphan` finalizer and its dependents are kept (batch/v1 Jobs,
    /// for compatibility).
    OrphanDependents,
    /// No garbage-collection finalizers for this kind, whatever the request says (Events).
    Unsupported,
}

/// What a DELETE request chose about dependents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PropagationChoice {
    pub policy: Option<Propagation>,
    /// The deprecated `orphanDependents`.
    pub orphan_dependents: Option<bool>,
}

impl PropagationChoice {
    /// Whether the request said anything about dependents.
    pub fn is_explicit(&self) -> bool {
        self.policy.is_some() || self.orphan_dependents.is_some()
    }

    /// Upstream's `shouldOrphanDependents`.
    fn orphans(&self, policy: GcPolicy, finalizers: &[String]) -> bool {
        if policy == GcPolicy::Unsupported {
            return false;
        }
        if let Some(o) = self.orphan_dependents {
            return o;
        }
        if let Some(p) = self.policy {
            return p == Propagation::Orphan;
        }
        // A finalizer already on the object overrides the kind's default.
        for f in finalizers {
            match f.as_str() {
                ORPHAN_FINALIZER => return true,
                FOREGROUND_FINALIZER => return false,
                _ => {}
            }
        }
        policy == GcPolicy::OrphanDependents
    }

    /// Upstream's `shouldDeleteDependents`.
    fn foreground(&self, policy: GcPolicy, finalizers: &[String]) -> bool {
        if policy == GcPolicy::Unsupported || self.orphan_dependents.is_some() {
            return false;
        }
        if let Some(p) = self.policy {
            return p == Propagation::Foreground;
        }
        finalizers.iter().any(|f| f == FOREGROUND_FINALIZER)
    }
}

/// The finalizers an object carries after a DELETE with `choice` (upstream's
/// `deletionFinalizersForGarbageCollection`); `None` when they stay as they are.
pub fn finalizers_after_delete(
    policy: GcPolicy,
    current: &[String],
    choice: PropagationChoice,
) -> Option<Vec<String>> {
    let orphan = choice.orphans(policy, current);
    let foreground = choice.foreground(policy, current);
    let mut next: Vec<String> = current
        .iter()
        .filter(|f| *f != ORPHAN_FINALIZER && *f != FOREGROUND_FINALIZER)
        .cloned()
        .collect();
    if orphan {
        next.push(ORPHAN_FINALIZER.to_string());
    }
    if foreground {
        next.push(FOREGROUND_FINALIZER.to_string());
    }
    let before: BTreeSet<&String> = current.iter().collect();
    let after: BTreeSet<&String> = next.iter().collect();
    (before != after).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn choice(policy: Option<Propagation>, orphan: Option<bool>) -> PropagationChoice {
        PropagationChoice {
            policy,
            orphan_dependents: orphan,
        }
    }

    #[test]
    fn the_request_chooses_the_finalizer() {
        let del = GcPolicy::DeleteDependents;
        let none: Vec<String> = Vec::new();
        assert_eq!(
            finalizers_after_delete(del, &none, choice(Some(Propagation::Orphan), None)),
            Some(strings(&["orphan"]))
        );
        assert_eq!(
            finalizers_after_delete(del, &none, choice(Some(Propagation::Foreground), None)),
            Some(strings(&["foregroundDeletion"]))
        );
        assert_eq!(
            finalizers_after_delete(del, &none, choice(Some(Propagation::Background), None)),
            None
        );
        assert_eq!(
            finalizers_after_delete(del, &none, choice(None, None)),
            None
        );
        assert_eq!(
            finalizers_after_delete(del, &none, choice(None, Some(true))),
            Some(strings(&["orphan"]))
        );
    }

    #[test]
    fn other_finalizers_stay_and_a_new_choice_replaces_the_old() {
        let del = GcPolicy::DeleteDependents;
        let cur = strings(&["example.com/keep", "foregroundDeletion"]);
        assert_eq!(
            finalizers_after_delete(del, &cur, choice(Some(Propagation::Orphan), None)),
            Some(strings(&["example.com/keep", "orphan"]))
        );
        assert_eq!(
            finalizers_after_delete(del, &cur, choice(Some(Propagation::Background), None)),
            Some(strings(&["example.com/keep"]))
        );
        // Without a choice, the finalizer already there decides.
        assert_eq!(finalizers_after_delete(del, &cur, choice(None, None)), None);
        // orphanDependents=false drops both.
        assert_eq!(
            finalizers_after_delete(del, &cur, choice(None, Some(false))),
            Some(strings(&["example.com/keep"]))
        );
    }

    #[test]
    fn kind_defaults() {
        let none: Vec<String> = Vec::new();
        assert_eq!(
            finalizers_after_delete(GcPolicy::OrphanDependents, &none, choice(None, None)),
            Some(strings(&["orphan"]))
        );
        assert_eq!(
            finalizers_after_delete(
                GcPolicy::OrphanDependents,
                &none,
                choice(Some(Propagation::Background), None)
            ),
            None
        );
        assert_eq!(
            finalizers_after_delete(
                GcPolicy::Unsupported,
                &none,
                choice(Some(Propagation::Foreground), None)
            ),
            None
        );
        assert!(choice(None, Some(true)).is_explicit());
        assert!(!choice(None, None).is_explicit());
    }
}
