#![no_main]
// Fuzz target `tar_members`: see ingot::fuzzing::tar_members.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ingot::fuzzing::run("tar_members", data);
});
