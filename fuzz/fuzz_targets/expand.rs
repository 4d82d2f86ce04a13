//! `$(VAR)` expansion in command, args and env values. The input is `NAME=value` lines, a NUL
//! byte, then the string to expand; the output grows at most linearly.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let (vars, input) = s.split_once('\0').unwrap_or(("", s));
    let vars: Vec<(String, String)> = vars
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let out = containerspec::expand(input, containerspec::lookup_in(&vars));
    let longest = vars.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
    assert!(out.len() <= input.len() * (longest + 1) + input.len());
});
