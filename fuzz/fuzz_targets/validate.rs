//! Arbitrary bodies through a create as the API server runs it before admission and the store:
//! decoding (JSON, YAML or protobuf), kind checks, unknown fields per `fieldValidation`,
//! defaults and the kind's validation; then an update validation and a table row of what
//! would be stored. The first line is `<Kind> <mode>`: the kind's name, and a digit whose value
//! mod 3 picks the content type (JSON, YAML, protobuf) and div 3 the field validation
//! (Strict, Warn, Ignore); the rest is the body.
#![no_main]

use api::tables::IncludeObject;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(nl) = data.iter().position(|b| *b == b'\n') else {
        return;
    };
    let (head, body) = (&data[..nl], &data[nl + 1..]);
    let Ok(head) = std::str::from_utf8(head) else {
        return;
    };
    let (kind, mode) = head.split_once(' ').unwrap_or((head, "0"));
    let Some(info) = api::resources::lookup_any_kind(kind) else {
        return;
    };
    let mode: u8 = mode.parse().unwrap_or(0);
    let base = if info.group.is_empty() {
        format!("/api/{}", info.version)
    } else {
        format!("/apis/{}/{}", info.group, info.version)
    };
    let path = if info.namespaced {
        format!("{base}/namespaces/default/{}", info.plural)
    } else {
        format!("{base}/{}", info.plural)
    };
    let content_type = match mode % 3 {
        0 => "application/json",
        1 => "application/yaml",
        _ => "application/vnd.kubernetes.protobuf",
    };
    let query = match (mode / 3) % 3 {
        0 => "fieldValidation=Strict",
        1 => "fieldValidation=Warn",
        _ => "fieldValidation=Ignore",
    };
    let Ok(obj) = apiserver::check_create(&path, Some(query), content_type, body) else {
        return;
    };
    let _ = info.validate_update(&obj, &obj);
    let now = jiff::Timestamp::UNIX_EPOCH;
    let _ = api::tables::row_cells(info, &obj, now);
    let _ = api::tables::table_for(info, &[obj], IncludeObject::Object, true, "1", now);
});
