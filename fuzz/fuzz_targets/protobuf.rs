//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`) decoded to JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = protobuf_bodies::decode(data);
});
