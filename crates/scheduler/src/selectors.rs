//! Label selectors as the scheduler applies them to pods and namespaces: typed matching,
//! `matchLabelKeys`/`mismatchLabelKeys` folded into a selector from the owning pod's
//! labels, and the namespaces a pod affinity term covers.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

pub type Labels = BTreeMap<String, String>;

/// Whether `labels` satisfy `sel`; an empty selector matches everything.
pub fn matches(sel: &LabelSelector, labels: &Labels) -> bool {
    let by_labels = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    by_labels
        && sel.match_expressions.iter().flatten().all(|r| {
            let value = labels.get(&r.key);
            let values = r.values.as_deref().unwrap_or(&[]);
            match r.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// `sel` with `key In [owner's value]` for each of `match_keys` and `key NotIn [owner's
/// value]` for each of `mismatch_keys` the owner has a label for (upstream merges these
/// keys into the selector the same way). No selector stays no selector.
pub fn with_label_keys(
    sel: Option<&LabelSelector>,
    match_keys: Option<&[String]>,
    mismatch_keys: Option<&[String]>,
    owner: &Labels,
) -> Option<LabelSelector> {
    let mut sel = sel?.clone();
    let keyed = |keys: Option<&[String]>, op: &'static str| {
        keys.into_iter()
            .flatten()
            .filter_map(move |k| {
                owner.get(k).map(|v| LabelSelectorRequirement {
                    key: k.clone(),
                    operator: op.into(),
                    values: Some(vec![v.clone()]),
                })
            })
            .collect::<Vec<_>>()
    };
    let extra: Vec<_> = keyed(match_keys, "In")
        .into_iter()
        .chain(keyed(mismatch_keys, "NotIn"))
        .collect();
    if !extra.is_empty() {
        sel.match_expressions
            .get_or_insert_with(Vec::new)
            .extend(extra);
    }
    Some(sel)
}

/// The namespaces a pod affinity term covers: those it lists plus those its
/// `namespaceSelector` picks (an empty selector picks all); neither means the namespace of
/// the pod that owns the term.
#[derive(Debug, Clone)]
pub struct Namespaces {
    listed: Vec<String>,
    selector: Option<LabelSelector>,
    owner: String,
}

impl Namespaces {
    pub fn new(listed: Option<&[String]>, selector: Option<&LabelSelector>, owner: &str) -> Self {
        Namespaces {
            listed: listed.unwrap_or(&[]).to_vec(),
            selector: selector.cloned(),
            owner: owner.to_string(),
        }
    }

    /// Whether namespace `ns` is covered; `labels` are every namespace's labels.
    pub fn covers(&self, ns: &str, labels: &BTreeMap<String, Labels>) -> bool {
        if self.listed.is_empty() && self.selector.is_none() {
            return ns == self.owner;
        }
        let empty = Labels::new();
        self.listed.iter().any(|n| n == ns)
            || self
                .selector
                .as_ref()
                .is_some_and(|s| matches(s, labels.get(ns).unwrap_or(&empty)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sel(v: serde_json::Value) -> LabelSelector {
        serde_json::from_value(v).expect("selector")
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors_match_labels_and_expressions() {
        let l = labels(&[("app", "web"), ("tier", "fe")]);
        assert!(matches(&sel(json!({})), &l));
        assert!(matches(&sel(json!({"matchLabels": {"app": "web"}})), &l));
        assert!(!matches(&sel(json!({"matchLabels": {"app": "db"}})), &l));
        assert!(matches(
            &sel(
                json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe", "be"]},
                                             {"key": "gpu", "operator": "DoesNotExist"}]})
            ),
            &l
        ));
        assert!(!matches(
            &sel(
                json!({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]})
            ),
            &l
        ));
    }

    #[test]
    fn label_keys_narrow_the_selector() {
        let owner = labels(&[("app", "web"), ("pod-template-hash", "abc")]);
        let merged = with_label_keys(
            Some(&sel(json!({"matchLabels": {"app": "web"}}))),
            Some(&["pod-template-hash".to_string(), "absent".to_string()]),
            None,
            &owner,
        )
        .expect("selector");
        assert!(matches(&merged, &owner));
        assert!(!matches(
            &merged,
            &labels(&[("app", "web"), ("pod-template-hash", "old")])
        ));
        assert!(with_label_keys(None, None, None, &owner).is_none());
    }

    #[test]
    fn namespaces_of_a_term() {
        let all = BTreeMap::from([
            ("a".to_string(), labels(&[("team", "x")])),
            ("b".to_string(), labels(&[])),
        ]);
        let own = Namespaces::new(None, None, "a");
        assert!(own.covers("a", &all) && !own.covers("b", &all));
        let listed = Namespaces::new(Some(&["b".to_string()]), None, "a");
        assert!(listed.covers("b", &all) && !listed.covers("a", &all));
        let every = Namespaces::new(None, Some(&sel(json!({}))), "a");
        assert!(every.covers("a", &all) && every.covers("b", &all));
        let team = Namespaces::new(None, Some(&sel(json!({"matchLabels": {"team": "x"}}))), "b");
        assert!(team.covers("a", &all) && !team.covers("b", &all));
    }
}
