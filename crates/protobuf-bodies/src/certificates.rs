//! Protobuf bodies of CertificateSigningRequests (certificates.k8s.io/v1): the whole object
//! `kubectl certificate approve|deny` puts to the `approval` subresource, decoded by
//! field-number tables as in [`workloads`](super::workloads).

use serde_json::Value;

use super::wire::ProtobufError;
use super::workloads::{f, message, rep, Schema, Ty::*};

static CONDITION: Schema = Schema {
    name: "CertificateSigningRequestCondition",
    fields: &[
        f(1, "type", Str),
        f(2, "reason", Str),
        f(3, "message", Str),
        f(4, "lastUpdateTime", Time),
        f(5, "lastTransitionTime", Time),
        f(6, "status", Str),
    ],
};
static SPEC: Schema = Schema {
    name: "CertificateSigningRequestSpec",
    fields: &[
        f(1, "request", Bytes),
        f(2, "username", Ignored),
        f(3, "uid", Ignored),
        rep(4, "groups", Ignored),
        rep(5, "usages", Str),
        f(6, "extra", Ignored),
        f(7, "signerName", Str),
        f(8, "expirationSeconds", PInt),
    ],
};
static STATUS: Schema = Schema {
    name: "CertificateSigningRequestStatus",
    fields: &[
        rep(1, "conditions", Msg(&CONDITION)),
        f(2, "certificate", Bytes),
    ],
};
static CSR: Schema = Schema {
    name: "CertificateSigningRequest",
    fields: &[
        f(1, "metadata", Meta),
        f(2, "spec", Msg(&SPEC)),
        f(3, "status", Msg(&STATUS)),
    ],
};

/// The fields of a `kind` object this module decodes, or `None` for other kinds.
pub(super) fn object(kind: &str, b: &[u8], base: usize) -> Option<Result<Value, ProtobufError>> {
    (kind == "CertificateSigningRequest").then(|| message(b, base, &CSR))
}
