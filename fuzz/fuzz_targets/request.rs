//! Request targets as the API server's handlers parse them: line 1 the path, line 2 the query
//! string, line 3 the Accept header.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = s.splitn(3, '\n');
    let path = lines.next().unwrap_or_default();
    let query = lines.next();
    let accept = lines.next();
    let _ = apiserver::parse_request(path, query, accept);
});
