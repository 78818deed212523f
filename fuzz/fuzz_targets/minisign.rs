#![no_main]
// Fuzz target `minisign`: see ingot::fuzzing::minisign.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ingot::fuzzing::run("minisign", data);
});
