#![no_main]
// Fuzz target `control`: see ingot::fuzzing::control_and_packages.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ingot::fuzzing::run("control", data);
});
