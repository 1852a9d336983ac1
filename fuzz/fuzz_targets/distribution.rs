#![no_main]
//! The built-in `distribution` endpoint's body parser on arbitrary bytes.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rebake_ingress::fuzzing::distribution(data);
});
