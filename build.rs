//! Build script: the INGOT_E2E test-lane switch.
// Test lanes: `cargo test` is the fast lane (no network, no QEMU); with INGOT_E2E=1 the
// end-to-end tests (real mirror, real builds, QEMU boots) are compiled in as ordinary tests
// instead of being marked ignored.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(ingot_e2e)");
    println!("cargo::rerun-if-env-changed=INGOT_E2E");
    if std::env::var("INGOT_E2E").is_ok_and(|v| v == "1") {
        println!("cargo::rustc-cfg=ingot_e2e");
    }
}
