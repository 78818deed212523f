#![no_main]
// Fuzz target `update_bundle`: see ingot::fuzzing::update_bundle.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ingot::fuzzing::run("update_bundle", data);
});
