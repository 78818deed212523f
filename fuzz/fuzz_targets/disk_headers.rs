#![no_main]
// Fuzz target `disk_headers`: see ingot::fuzzing::disk_headers.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ingot::fuzzing::run("disk_headers", data);
});
