//! Leases (coordination.k8s.io/v1): duration rules and the HOLDER column.

use k8s_openapi::api::coordination::v1::Lease;
use serde_json::{json, Value};

use apimachinery::checks::nonnegative;
use apimachinery::field_errors::FieldErrors;
use apimachinery::json::at;
use apimachinery::printing::{name_and_age, s, Column, AGE, NAME};
use apimachinery::strategy::{typed_round_trip, ResourceInfo, Strategy, ALL_VERBS};

pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "coordination.k8s.io",
    version: "v1",
    plural: "leases",
    singular: "lease",
    kind: "Lease",
    list_kind: "LeaseList",
    namespaced: true,
    short_names: &[],
    categories: &[],
    verbs: ALL_VERBS,
    subresources: &[],
    strategy: &Leases,
};

#[derive(Debug)]
struct Leases;

impl Strategy for Leases {
    fn round_trip(&self, obj: Value) -> Result<Value, serde_json::Error> {
        typed_round_trip::<Lease>(obj)
    }

    fn validate(&self, obj: &Value, e: &mut FieldErrors) {
        lease(e, obj);
    }

    #[rustfmt::skip]
    fn columns(&self) -> &'static [Column] {
        &[
            NAME,
            ("Holder", "string", "", 0, "The holder of the lease."),
            AGE,
        ]
    }

    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let (name, age) = name_and_age(obj, now);
        vec![name, json!(s(obj, &["spec", "holderIdentity"])), age]
    }
}

fn lease(e: &mut FieldErrors, obj: &Value) {
    if let Some(n) = at(obj, &["spec", "leaseDurationSeconds"]).and_then(Value::as_i64) {
        if n <= 0 {
            e.invalid(
                "spec.leaseDurationSeconds",
                &Value::from(n),
                "must be greater than 0",
            );
        }
    }
    nonnegative(
        e,
        at(obj, &["spec", "leaseTransitions"]),
        "spec.leaseTransitions",
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::messages;

    #[test]
    fn duration_must_be_positive() {
        let lease = json!({"metadata":{"name":"n","namespace":"kube-node-lease"},"spec":{"leaseDurationSeconds":0}});
        assert_eq!(
            messages(RESOURCE.validate_create(&lease)),
            vec!["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"]
        );
    }
}
