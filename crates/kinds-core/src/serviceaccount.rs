//! ServiceAccounts: the SECRETS column, and the `token` subresource (TokenRequest) that
//! the API server serves for them.

use k8s_openapi::api::core::v1::ServiceAccount;
use serde_json::{json, Value};

use apimachinery::printing::{len_of, name_and_age, Column, AGE, NAME};
use apimachinery::strategy::{
    sub, typed_round_trip, ListStrategy, ResourceInfo, Strategy, Subresource, ALL_VERBS,
};

pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "",
    version: "v1",
    plural: "serviceaccounts",
    singular: "serviceaccount",
    kind: "ServiceAccount",
    list_kind: "ServiceAccountList",
    namespaced: true,
    short_names: &["sa"],
    categories: &[],
    verbs: ALL_VERBS,
    subresources: SUBRESOURCES,
    strategy: &ServiceAccounts,
};

static SUBRESOURCES: &[Subresource] = &[sub(
    "token",
    "authentication.k8s.io",
    "TokenRequest",
    &["create"],
)];

#[derive(Debug)]
struct ServiceAccounts;

impl Strategy for ServiceAccounts {
    fn round_trip(&self, obj: Value) -> Result<Value, serde_json::Error> {
        typed_round_trip::<ServiceAccount>(obj)
    }

    fn list_strategy(&self, path: &[String], field: &str) -> Option<ListStrategy> {
        (path.is_empty() && field == "secrets").then_some(ListStrategy::Key("name"))
    }

    #[rustfmt::skip]
    fn columns(&self) -> &'static [Column] {
        &[
            NAME,
            ("Secrets", "string", "", 0, "The number of secrets listed for the service account."),
            AGE,
        ]
    }

    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let (name, age) = name_and_age(obj, now);
        vec![name, json!(len_of(obj.get("secrets"))), age]
    }
}
