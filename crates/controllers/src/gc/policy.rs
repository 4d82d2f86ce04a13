//! What the garbage collector does with an object once it knows the state of each of its
//! owners (kube-controller-manager's `attemptToDeleteItem` decision), kept pure so every
//! case is a unit test.

use kube::api::PropagationPolicy;

/// metav1.FinalizerOrphanDependents.
pub const ORPHAN_FINALIZER: &str = "orphan";
/// metav1.FinalizerDeleteDependents.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

/// The state of one owner, as read from the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerState {
    /// It exists and is not waiting for its dependents.
    Solid,
    /// It is gone (not found, or another object now has its name).
    Dangling,
    /// It is being deleted in the foreground, waiting for its dependents.
    WaitingForDependents,
}

/// What to do with the object.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// An owner still holds it.
    Keep,
    /// An owner holds it: drop the references to these gone or waiting owners.
    RemoveReferences(Vec<String>),
    /// Its owner waits for it and it has dependents of its own: delete it in the foreground
    /// too (first making its own references non-blocking when a dependent of it is also
    /// deleting its dependents, which could otherwise wait in a circle).
    DeleteInForeground { unblock_first: bool },
    /// Collect it with this propagation.
    Delete(PropagationPolicy),
}

/// The decision for an object whose owners (by uid) are in `owners` states.
pub fn verdict(
    owners: &[(String, OwnerState)],
    has_dependents: bool,
    a_dependent_deletes_dependents: bool,
    finalizers: &[String],
) -> Verdict {
    let solid = owners.iter().any(|(_, s)| *s == OwnerState::Solid);
    let not_solid: Vec<String> = owners
        .iter()
        .filter(|(_, s)| *s != OwnerState::Solid)
        .map(|(uid, _)| uid.clone())
        .collect();
    let waiting = owners
        .iter()
        .any(|(_, s)| *s == OwnerState::WaitingForDependents);
    if solid {
        return if not_solid.is_empty() {
            Verdict::Keep
        } else {
            Verdict::RemoveReferences(not_solid)
        };
    }
    if waiting && has_dependents {
        return Verdict::DeleteInForeground {
            unblock_first: a_dependent_deletes_dependents,
        };
    }
    // A finalizer already on the object says how its own dependents go.
    let has = |f: &str| finalizers.iter().any(|x| x == f);
    let policy = if has(ORPHAN_FINALIZER) {
        PropagationPolicy::Orphan
    } else if has(FOREGROUND_FINALIZER) {
        PropagationPolicy::Foreground
    } else {
        PropagationPolicy::Background
    };
    Verdict::Delete(policy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use OwnerState::*;

    fn owners(states: &[OwnerState]) -> Vec<(String, OwnerState)> {
        states
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("u{i}"), *s))
            .collect()
    }

    #[test]
    fn a_solid_owner_keeps_the_object() {
        assert_eq!(verdict(&owners(&[Solid]), false, false, &[]), Verdict::Keep);
        assert_eq!(
            verdict(
                &owners(&[Solid, Dangling, WaitingForDependents]),
                true,
                false,
                &[]
            ),
            Verdict::RemoveReferences(vec!["u1".into(), "u2".into()])
        );
    }

    #[test]
    fn without_solid_owners_it_is_collected() {
        assert_eq!(
            verdict(&owners(&[Dangling, Dangling]), true, false, &[]),
            Verdict::Delete(PropagationPolicy::Background)
        );
        // A waiting owner and no dependents of its own: background is enough.
        assert_eq!(
            verdict(&owners(&[WaitingForDependents]), false, false, &[]),
            Verdict::Delete(PropagationPolicy::Background)
        );
        assert_eq!(
            verdict(&owners(&[Dangling]), false, false, &["orphan".to_string()]),
            Verdict::Delete(PropagationPolicy::Orphan)
        );
        assert_eq!(
            verdict(
                &owners(&[Dangling]),
                false,
                false,
                &["foregroundDeletion".to_string()]
            ),
            Verdict::Delete(PropagationPolicy::Foreground)
        );
    }

    #[test]
    fn a_waiting_owner_spreads_the_foreground() {
        assert_eq!(
            verdict(&owners(&[WaitingForDependents, Dangling]), true, false, &[]),
            Verdict::DeleteInForeground {
                unblock_first: false
            }
        );
        assert_eq!(
            verdict(&owners(&[WaitingForDependents]), true, true, &[]),
            Verdict::DeleteInForeground {
                unblock_first: true
            }
        );
    }
}
