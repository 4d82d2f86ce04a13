//! SPDY/3.1 frames as port-forward reads them from a client: frames are decoded one after
//! another from the input, sharing one header-compression stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nodeapi::SpdyDecoder;

fuzz_target!(|data: &[u8]| {
    let mut decoder = SpdyDecoder::default();
    let mut buf = data;
    while let Ok(Some((_frame, used))) = decoder.next(buf) {
        assert!(
            used > 0 && used <= buf.len(),
            "decoder used {used} of {}",
            buf.len()
        );
        buf = &buf[used..];
    }
});
