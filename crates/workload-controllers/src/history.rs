//! Rollout history as ControllerRevisions, as upstream's `controller/history` package keeps
//! it for DaemonSets and StatefulSets: each distinct pod template is one revision named
//! `<owner>-<hash>` whose `data` is the patch that restores it (what `kubectl rollout undo`
//! applies) and whose `controller-revision-hash` label is the hash; going back to an older
//! template renumbers its revision instead of copying it; old revisions beyond
//! `revisionHistoryLimit` that no pod uses are deleted.
//!
//! The hash is 32-bit FNV-1a over the revision data's JSON text (and the collision count,
//! when there is one), written in upstream's vowel-free alphabet so it is a valid label.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, PostParams};
use kube::ResourceExt;
use serde_json::{json, Value};

use controller_base::error::{is_conflict, is_not_found};

/// The label that ties pods and revisions to a template.
pub const REVISION_HASH_LABEL: &str = "controller-revision-hash";

/// Upstream's `rand.SafeEncodeString` alphabet: no vowels, no look-alikes.
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Names longer than this lose the end of their prefix (253 minus room for the hash).
const MAX_PREFIX: usize = 223;

/// The revision data for a pod template: a strategic merge patch replacing the owner's
/// `spec.template` with it.
pub fn template_patch(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(m) = t.as_object_mut() {
        m.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// The template a revision holds (its patch without the directive).
pub fn template_of(rev: &ControllerRevision) -> Option<Value> {
    let mut t = rev.data.as_ref()?.0.pointer("/spec/template")?.clone();
    if let Some(m) = t.as_object_mut() {
        m.remove("$patch");
    }
    Some(t)
}

/// The revision hash of `data`, moved by `collision_count` when a different revision
/// already took the plain hash's name.
pub fn hash(data: &Value, collision_count: i32) -> String {
    let mut h: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    feed(data.to_string().as_bytes());
    if collision_count > 0 {
        feed(&collision_count.to_le_bytes());
    }
    safe_encode(&h.to_string())
}

fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| char::from(ALPHABET[usize::from(b) % ALPHABET.len()]))
        .collect()
}

/// `<prefix>-<hash>`, the prefix cut so the name stays a valid object name.
pub fn revision_name(prefix: &str, hash: &str) -> String {
    let cut = prefix
        .char_indices()
        .nth(MAX_PREFIX)
        .map_or(prefix, |(i, _)| &prefix[..i]);
    format!("{cut}-{hash}")
}

/// The revision numbers in order, oldest first (ties by name, as upstream sorts).
pub fn sort(revs: &mut [ControllerRevision]) {
    revs.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| {
                a.metadata
                    .creation_timestamp
                    .cmp(&b.metadata.creation_timestamp)
            })
            .then_with(|| a.name_any().cmp(&b.name_any()))
    });
}

fn data_of(rev: &ControllerRevision) -> Option<&Value> {
    rev.data.as_ref().map(|d| &d.0)
}

/// What the owner's current template needs from the history.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// The newest revision already holds it.
    Current(usize),
    /// An older revision holds it: renumber that one to the given revision.
    Renumber(usize, i64),
    /// No revision holds it: create one with the given number.
    Create(i64),
}

/// Decides what the history needs for `data` (revisions sorted oldest first).
pub fn step(revs: &[ControllerRevision], data: &Value) -> Step {
    let newest = revs.iter().map(|r| r.revision).max().unwrap_or(0);
    match revs.iter().rposition(|r| data_of(r) == Some(data)) {
        Some(i) if revs[i].revision == newest => Step::Current(i),
        Some(i) => Step::Renumber(i, newest + 1),
        None => Step::Create(newest + 1),
    }
}

/// What an owner contributes to its revisions.
pub struct Owner<'a> {
    pub reference: OwnerReference,
    pub namespace: &'a str,
    /// The owner's name, the revisions' name prefix.
    pub name: &'a str,
    /// The template's labels, which revisions carry (so the owner's selector finds them).
    pub labels: std::collections::BTreeMap<String, String>,
}

/// The revision for `data` after making sure it exists and is the newest, and the
/// collision count to record (it grows when another revision took the name).
pub async fn ensure_current(
    api: &Api<ControllerRevision>,
    owner: &Owner<'_>,
    revs: &[ControllerRevision],
    data: &Value,
    mut collision_count: i32,
) -> Result<(ControllerRevision, i32), kube::Error> {
    let pp = PostParams::default();
    match step(revs, data) {
        Step::Current(i) => Ok((revs[i].clone(), collision_count)),
        Step::Renumber(i, number) => {
            let mut rev = revs[i].clone();
            rev.revision = number;
            let written = api.replace(&rev.name_any(), &pp, &rev).await?;
            Ok((written, collision_count))
        }
        Step::Create(number) => loop {
            let h = hash(data, collision_count);
            let mut labels = owner.labels.clone();
            labels.insert(REVISION_HASH_LABEL.into(), h.clone());
            let rev = ControllerRevision {
                metadata: ObjectMeta {
                    name: Some(revision_name(owner.name, &h)),
                    namespace: Some(owner.namespace.to_string()),
                    labels: Some(labels),
                    owner_references: Some(vec![owner.reference.clone()]),
                    ..Default::default()
                },
                data: Some(RawExtension(data.clone())),
                revision: number,
            };
            match api.create(&pp, &rev).await {
                Ok(created) => return Ok((created, collision_count)),
                Err(e) if is_conflict(&e) => {
                    let existing = api.get(&rev.name_any()).await?;
                    let same_owner = controller_base::ownership::is_controlled_by(
                        &existing.metadata,
                        &owner.reference.uid,
                    );
                    if same_owner && data_of(&existing) == Some(data) {
                        return Ok((existing, collision_count));
                    }
                    // Another template took this name: try the next hash.
                    collision_count = collision_count.saturating_add(1);
                }
                Err(e) => return Err(e),
            }
        },
    }
}

/// Deletes the oldest revisions beyond `limit` among those whose names are not in `live`.
pub async fn truncate(
    api: &Api<ControllerRevision>,
    revs: &[ControllerRevision],
    live: &BTreeSet<String>,
    limit: i32,
) -> Result<(), kube::Error> {
    let old: Vec<&ControllerRevision> = revs
        .iter()
        .filter(|r| !live.contains(&r.name_any()))
        .collect();
    let excess = old
        .len()
        .saturating_sub(usize::try_from(limit.max(0)).unwrap_or(0));
    for rev in old.into_iter().take(excess) {
        match api.delete(&rev.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) || is_conflict(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(name: &str, number: i64, data: Value) -> ControllerRevision {
        ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            data: Some(RawExtension(data)),
            revision: number,
        }
    }

    #[test]
    fn hashes_are_stable_label_values_that_follow_the_data() {
        let t1 = json!({"metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "c", "image": "a"}]}});
        let mut t2 = t1.clone();
        t2["spec"]["containers"][0]["image"] = json!("b");
        let d1 = template_patch(&t1);
        let h1 = hash(&d1, 0);
        assert_eq!(h1, hash(&template_patch(&t1), 0));
        assert_ne!(h1, hash(&template_patch(&t2), 0));
        assert_ne!(h1, hash(&d1, 1));
        assert!(h1.len() >= 6 && h1.len() <= 10, "{h1}");
        assert!(h1.bytes().all(|b| ALPHABET.contains(&b)), "{h1}");
        assert_eq!(d1["spec"]["template"]["$patch"], "replace");
        let r = rev("web-x", 1, d1);
        assert_eq!(template_of(&r), Some(t1));
    }

    #[test]
    fn names_keep_within_limits() {
        assert_eq!(revision_name("web", "abc"), "web-abc");
        let long = "a".repeat(300);
        assert_eq!(revision_name(&long, "h").len(), MAX_PREFIX + 2);
    }

    #[test]
    fn steps_reuse_renumber_or_create() {
        let a = json!({"a": 1});
        let b = json!({"b": 1});
        let mut revs = vec![rev("w-2", 2, b.clone()), rev("w-1", 1, a.clone())];
        sort(&mut revs);
        assert_eq!(revs[0].name_any(), "w-1");
        assert_eq!(step(&revs, &b), Step::Current(1));
        assert_eq!(step(&revs, &a), Step::Renumber(0, 3));
        assert_eq!(step(&revs, &json!({"c": 1})), Step::Create(3));
        assert_eq!(step(&[], &a), Step::Create(1));
    }
}
