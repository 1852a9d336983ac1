#![no_main]
//! The built-in `github` endpoint's body parser on arbitrary bytes.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rebake_ingress::fuzzing::github(data);
});
