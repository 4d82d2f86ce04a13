//! Arbitrary bodies through a create as the API server runs it before admission and the store:
//! decoding (JSON, YAML or protobuf), kind checks, unknown fields per `fieldValidation`,
//! defaults and the kind's validation; then an update validation and a table row of what
//! would be stored. Byte 0 picks the kind, byte 1 the content type and field validation.
#![no_main]

use api::tables::IncludeObject;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [pick, mode, body @ ..] = data else {
        return;
    };
    let kinds = api::resources::all();
    let info = &kinds[usize::from(*pick) % kinds.len()];
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
