//! CRI log lines (`<RFC3339Nano> stdout|stderr F|P <content>`): parsing never panics, and a
//! parsed line formats back to one that parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(line) = crilog::parse_line(data) else {
        return;
    };
    if line.content.contains(&b'\n') {
        return;
    }
    let again = crilog::format_line(line.time, line.stream, line.partial, &line.content);
    assert_eq!(crilog::parse_line(&again), Some(line));
});
