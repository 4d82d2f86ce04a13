//! JSON patch, merge patch and strategic merge patch. The first byte picks the patch type and
//! (for strategic merge) the kind; the rest is a JSON array `[document, patch]`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(Value::Array(pair)) = serde_json::from_slice::<Value>(rest) else {
        return;
    };
    let [doc, patch] = pair.as_slice() else {
        return;
    };
    let kinds = api::resources::all();
    match pick % 3 {
        0 => {
            let _ = api::patch::json_patch(doc, patch);
        }
        1 => {
            let _ = api::patch::merge_patch(doc, patch);
        }
        _ => {
            let info = &kinds[usize::from(pick / 3) % kinds.len()];
            let _ = api::patch::strategic_merge_patch(info.kind, doc, patch);
        }
    }
});
