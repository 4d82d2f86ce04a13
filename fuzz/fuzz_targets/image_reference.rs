//! Image references (`registry:5000/ns/name:tag@sha256:…`) as a pod's `image` names them.
#![no_main]

use images::Reference;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = Reference::parse(s) {
        let _ = r.name();
        let _ = r.tagged();
        let _ = r.api_host();
        let _ = r.allows_plain_http();
        let _ = r
            .with_digest("sha256:0000000000000000000000000000000000000000000000000000000000000000");
    }
});
