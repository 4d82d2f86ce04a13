//! JSON patch, merge patch and strategic merge patch. The first line names the patch type
//! (`json`, `merge`, or a kind's name for a strategic merge patch of that kind); the rest is a
//! JSON array `[document, patch]`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Some(nl) = data.iter().position(|b| *b == b'\n') else {
        return;
    };
    let (head, rest) = (&data[..nl], &data[nl + 1..]);
    let Ok(Value::Array(pair)) = serde_json::from_slice::<Value>(rest) else {
        return;
    };
    let [doc, patch] = pair.as_slice() else {
        return;
    };
    let _ = match head {
        b"json" => api::patch::json_patch(doc, patch),
        b"merge" => api::patch::merge_patch(doc, patch),
        kind => api::patch::strategic_merge_patch(&String::from_utf8_lossy(kind), doc, patch),
    };
});
