#![no_main]
// Fuzz target `cloud_seed`: see ingot::fuzzing::cloud_seed.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ingot::fuzzing::run("cloud_seed", data);
});
