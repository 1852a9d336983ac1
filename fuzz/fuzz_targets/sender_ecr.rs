#![no_main]
//! The `ecr` webhook sender: verification and parsing of arbitrary requests.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rebake_ingress::fuzzing::sender(rebake_config::WebhookKind::Ecr, data);
});
