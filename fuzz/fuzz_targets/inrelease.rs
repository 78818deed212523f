#![no_main]
// Fuzz target `inrelease`: see ingot::fuzzing::inrelease.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ingot::fuzzing::run("inrelease", data);
});
