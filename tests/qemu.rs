//! The accelerator probe that decides whether KVM really runs guests. KVM is not usable on
//! every host (here `/dev/kvm` exists but real guests hang or stop with an emulation failure),
//! so the probe logic is checked under TCG, which always works: the probe firmware must run and
//! end the VM with the expected status.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use ingot::config::Arch;
use ingot::qemu::{accel_runs_guest, Accel};

#[test]
#[cfg_attr(not(ingot_e2e), ignore = "end-to-end lane: set INGOT_E2E=1")]
fn probe_guest_runs_under_tcg_on_both_arches() {
    for arch in [Arch::X86_64, Arch::Aarch64] {
        assert!(
            accel_runs_guest(arch, Accel::Tcg, Duration::from_secs(20)),
            "the {arch:?} probe firmware did not finish under TCG"
        );
    }
}

#[test]
#[cfg_attr(not(ingot_e2e), ignore = "end-to-end lane: set INGOT_E2E=1")]
fn kvm_is_picked_only_when_the_cpu_advertises_it_and_the_probe_passes() {
    let works = accel_runs_guest(Arch::X86_64, Accel::Kvm, Duration::from_secs(5));
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let advertised = cpuinfo
        .lines()
        .any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    let picked = ingot::qemu::pick_accel(Arch::X86_64, None);
    assert_eq!(
        picked == Accel::Kvm,
        works && advertised && cfg!(target_arch = "x86_64"),
        "probe passed: {works}, vmx/svm advertised: {advertised}"
    );
    assert_eq!(
        ingot::qemu::pick_accel(Arch::X86_64, Some("tcg")),
        Accel::Tcg
    );
}
