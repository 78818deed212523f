#![no_main]
// Fuzz target `registry`: see ingot::fuzzing::registry.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ingot::fuzzing::run("registry", data);
});
