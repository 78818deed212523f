#![no_main]
// Fuzz target `dsse`: see ingot::fuzzing::dsse.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ingot::fuzzing::run("dsse", data);
});
