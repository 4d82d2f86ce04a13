//! Image manifests, indexes and config blobs as a registry or an archive serves them.
#![no_main]

use libfuzzer_sys::fuzz_target;

const DIGEST: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

fuzz_target!(|data: &[u8]| {
    let _ = images::parse_document(DIGEST, data);
    let _ = images::parse_config(DIGEST, data);
});
