#![no_main]
// Fuzz target `profile`: see ingot::fuzzing::profile.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ingot::fuzzing::run("profile", data);
});
