//! The exec/attach WebSocket protocol (`v5.channel.k8s.io` messages) and the exec query string.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = nodeapi::decode_channel_message(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = nodeapi::parse_exec_query(s);
    }
});
