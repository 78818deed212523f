#![no_main]
// Fuzz target `postinst`: see ingot::fuzzing::postinst.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ingot::fuzzing::run("postinst", data);
});
