#![no_main]
// Fuzz target `deb_ar`: see ingot::fuzzing::deb_ar.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ingot::fuzzing::run("deb_ar", data);
});
