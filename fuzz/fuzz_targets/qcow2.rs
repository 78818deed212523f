#![no_main]
// Fuzz target `qcow2`: see ingot::fuzzing::qcow2.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ingot::fuzzing::run("qcow2", data);
});
