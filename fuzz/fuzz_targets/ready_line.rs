#![no_main]
// Fuzz target `ready_line`: see ingot::fuzzing::ready_line.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ingot::fuzzing::run("ready_line", data);
});
