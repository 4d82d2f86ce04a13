//! `successPolicy` of Indexed jobs (v1.33): the job succeeds as soon as one rule holds —
//! `succeededIndexes` all completed (or at least `succeededCount` of them), or, with only
//! `succeededCount`, that many indexes completed in all.

use std::collections::BTreeSet;

use k8s_openapi::api::batch::v1::JobSpec;

use super::indexes;

/// The position of the first rule the completed indexes `done` satisfy.
pub(super) fn matched_rule(spec: &JobSpec, done: &BTreeSet<i32>) -> Option<usize> {
    let completions = spec.completions.unwrap_or(0);
    let rules = &spec.success_policy.as_ref()?.rules;
    rules.iter().position(|rule| {
        let count = rule.succeeded_count.map(i64::from);
        let done_count = |set: &BTreeSet<i32>| i64::try_from(set.len()).unwrap_or(i64::MAX);
        match rule.succeeded_indexes.as_deref() {
            Some(text) => {
                let wanted = indexes::parse(text, completions);
                let hit: BTreeSet<i32> = wanted.intersection(done).copied().collect();
                match count {
                    Some(c) => done_count(&hit) >= c,
                    None => !wanted.is_empty() && hit.len() == wanted.len(),
                }
            }
            None => count.is_some_and(|c| done_count(done) >= c),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(rules: serde_json::Value) -> JobSpec {
        serde_json::from_value(json!({"completions": 5, "completionMode": "Indexed",
            "successPolicy": {"rules": rules},
            "template": {"spec": {"containers": []}}}))
        .expect("spec")
    }

    #[test]
    fn rules_by_indexes_by_count_and_both() {
        let done: BTreeSet<i32> = [0, 2].into();
        assert_eq!(
            matched_rule(&spec(json!([{"succeededIndexes": "0,2"}])), &done),
            Some(0)
        );
        assert_eq!(
            matched_rule(&spec(json!([{"succeededIndexes": "0-2"}])), &done),
            None
        );
        let both = json!([{"succeededIndexes": "1-4", "succeededCount": 1}]);
        assert_eq!(matched_rule(&spec(both), &done), Some(0));
        let rules = json!([{"succeededCount": 3}, {"succeededCount": 2}]);
        assert_eq!(matched_rule(&spec(rules), &done), Some(1));
        let none: JobSpec =
            serde_json::from_value(json!({"template": {"spec": {"containers": []}}}))
                .expect("spec");
        assert_eq!(matched_rule(&none, &done), None);
    }
}
