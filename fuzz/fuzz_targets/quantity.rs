//! Resource quantities (`500m`, `1Gi`, `1e3`): parsing never panics, and a parsed amount is a
//! finite number.
#![no_main]

use api::quantity::{parse_quantity, Quantity};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(q) = Quantity::parse(s) {
        let f = q.as_f64();
        assert!(f.is_finite(), "{s:?} parsed to {f}");
        let _ = q.saturating_add(q);
        let _ = (q.is_zero(), q.is_positive(), q.is_negative());
    }
    if let Some(f) = parse_quantity(s) {
        assert!(f.is_finite(), "{s:?} parsed to {f}");
    }
});
