//! Console classification: recorded boots of both arches and single lines.

use super::*;

#[test]
fn stall_lines() {
    // Lines from a TCG boot that hung (2026-11-27), and from ordinary boots.
    for l in [
        "[  25.673] [   22.597279] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:",
        "[  253.341960] rcu: INFO: rcu_sched self-detected stall on CPU",
        "[  277.584863] watchdog: BUG: soft lockup - CPU#0 stuck for 250s! [(udev-worker):120]",
    ] {
        assert!(reports_stall(&l.to_ascii_lowercase()), "{l}");
    }
    for l in [
        "[    0.158942] rcu: Preemptible hierarchical RCU implementation.",
        "[    0.159310] rcu: RCU calculated value of scheduler-enlistment delay is 25 jiffies.",
        "[    2.031659] Unstable clock detected, switching default tracing clock to \"global\"",
    ] {
        assert!(!reports_stall(&l.to_ascii_lowercase()), "{l}");
    }
    let mut c = Console::new(Arch::X86_64);
    c.feed(
        "[   22.597279] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:",
        25.4,
    );
    assert_eq!(
        c.timeout(120).to_string(),
        "timeout: no INGOT-READY line within 120s; the guest kernel reported a stall first: `[   22.597279] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:` at 25s"
    );
}

#[test]
fn ready_line() {
    // The decoy tests/foreign/make-disk.sh prints before its pattern is a ready line.
    assert!(parse_ready(
        "INGOT-READY image=decoy version=0 machine-id=00000000000000000000000000000000 uptime=1"
    )
    .is_some());
    let r = parse_ready("[  3.1] INGOT-READY image=edge version=1.0.0 machine-id=abc agents=hb:ok,x:fail uptime=3.2").unwrap();
    assert_eq!(r.image, "edge");
    assert_eq!(
        r.agents,
        vec![
            ("hb".to_string(), "ok".to_string()),
            ("x".into(), "fail".into())
        ]
    );
    assert!(parse_ready("nothing").is_none());
    assert!(parse_ready("INGOT-READY image").is_none());
}

#[test]
fn a_watchdog_reset_and_a_bios_without_a_loader_are_named() {
    let mut c = Console::new(Arch::X86_64);
    let Seen::Fatal(f) = c.feed("[   21.5] softdog: Initiating system reboot", 21.6) else {
        panic!("a watchdog reset is fatal")
    };
    assert!(matches!(f, Failure::WatchdogReset { .. }));
    assert!(f.to_string().contains("the boot hung"), "{f}");
    let mut c = Console::new(Arch::X86_64);
    assert_eq!(c.feed("Boot failed: not a bootable disk", 1.0), Seen::Line);
    let Seen::Fatal(f) = c.feed("No bootable device.", 1.2) else {
        panic!("SeaBIOS giving up is fatal")
    };
    assert!(f.to_string().contains("legacy-BIOS-bootable"), "{f}");
}

#[test]
fn grub_without_its_kernel_names_the_missing_file() {
    let mut c = Console::new(Arch::X86_64);
    for line in [
        "GRUB loading.",
        "Welcome to GRUB!",
        "Ingot: GRUB (BIOS) loading vm 1.0.0",
        "error: file `/vm/1.0.0/linux' not found.",
        "error: you need to load the kernel first.",
    ] {
        assert_eq!(c.feed(line, 1.0), Seen::Line, "{line}");
    }
    let Seen::Fatal(f) = c.feed("Entering rescue mode...", 1.5) else {
        panic!("GRUB's rescue mode is fatal")
    };
    assert_eq!(
        f.to_string(),
        "the boot ended in a rescue or emergency shell: GRUB: error: file `/vm/1.0.0/linux' not found."
    );
}

#[test]
fn grub_waiting_at_its_prompt_after_a_missing_kernel_is_a_rescue_shell() {
    // GRUB (BIOS) whose configuration did not find the kernel leaves its normal-mode prompt on
    // the console, not "Entering rescue mode...": the boot waited out its timeout.
    match classify_log(
        include_str!("../../../tests/fixtures/console/x86_64-grub-no-kernel.log"),
        Arch::X86_64,
    ) {
        Some(Err(f @ Failure::RescueShell { .. })) => assert_eq!(
            f.to_string(),
            "the boot ended in a rescue or emergency shell: GRUB: error: file `/edge-minimal/1.0.0/linux' not found."
        ),
        other => panic!("expected GRUB's shell, got {other:?}"),
    }
    // The prompt on a line the console has not finished, as the boot test sees it first.
    let grub = |line: &str| waits_at_grub_prompt(&shown_text(line));
    assert!(grub(
        "   device or file completions.                          grub> "
    ));
    assert!(grub("grub rescue> "));
    assert!(!grub("Welcome to GRUB!"));
    assert!(!grub("echo grub> is GRUB's prompt, then more"));
}

#[test]
fn emergency_shells_of_other_distributions_are_named() {
    for line in [
        "[   12.3] dracut: Entering emergency mode. Exit the shell to continue.",
        "Cannot open access to console, the root account is locked.",
        "You are in emergency mode. After logging in, type \"journalctl -xb\" to view",
    ] {
        let mut c = Console::new(Arch::X86_64);
        match c.feed(line, 12.0) {
            Seen::Fatal(Failure::RescueShell { line: l }) => assert_eq!(l, line.trim()),
            other => panic!("{line}: {other:?}"),
        }
    }
    let mut c = Console::new(Arch::X86_64);
    assert_eq!(
        c.feed(
            "[  OK  ] Reached target emergency.target - Emergency Mode.",
            1.0
        ),
        Seen::Line
    );
}

#[test]
fn syslinux_at_its_prompt_after_a_failed_load_is_a_rescue_shell() {
    let mut c = Console::new(Arch::X86_64);
    for raw in include_str!("../../../tests/fixtures/console/x86_64-syslinux-no-kernel.log").lines()
    {
        let line = raw.split_once("] ").map_or(raw, |(_, l)| l);
        assert_eq!(c.feed(line, 0.2), Seen::Line, "{line}");
    }
    // Its prompt, doubled as the rest of the screen, on a line it never ends.
    assert!(c.waits_at_loader_prompt("boot:boot:  "));
    let Seen::Fatal(f) = c.feed("boot:boot:  ", 0.3) else {
        panic!("SYSLINUX's prompt after a failed load is fatal")
    };
    assert_eq!(
        f.to_string(),
        "the boot ended in a rescue or emergency shell: SYSLINUX: cannot load /vmlinuz: No such file or directory"
    );
    // Before any failed load, `boot:` is a prompt counting down to its default.
    let c = Console::new(Arch::X86_64);
    assert!(!c.waits_at_loader_prompt("boot: "));
    assert_eq!(
        syslinux_error("Could not find kernel image: linux"),
        Some("SYSLINUX: cannot load linux: not found".to_string())
    );
    assert_eq!(syslinux_error("Loading /vmlinuz... ok"), None);
    // A slower guest: SeaBIOS's cursor moves fall inside the path (seen with the host loaded).
    let mut c = Console::new(Arch::X86_64);
    c.feed(
        "Loading /\u{1b}[05;09H\u{1b}[05;10Hvmlinuz  failed: No such file or directory",
        0.2,
    );
    let Seen::Fatal(f) = c.feed("boot: ", 0.3) else {
        panic!("SYSLINUX's prompt after a failed load is fatal")
    };
    assert!(
        f.to_string()
            .ends_with("SYSLINUX: cannot load /vmlinuz: No such file or directory"),
        "{f}"
    );
}

#[test]
fn the_first_fatal_line_wins_and_names_the_loader() {
    let mut c = Console::new(Arch::Aarch64);
    assert_eq!(
        c.feed(
            "BdsDxe: failed to load Boot0001 \"UEFI Misc Device\": Not Found",
            3.0
        ),
        Seen::Line
    );
    let Seen::Fatal(f) = c.feed("UEFI Interactive Shell v2.2", 3.5) else {
        panic!("the shell is fatal")
    };
    assert_eq!(
        f.to_string(),
        "UEFI found nothing bootable on the disk and fell back to its shell (BdsDxe: failed to load Boot0001 \"UEFI Misc Device\": Not Found); check that the ESP holds EFI/BOOT/BOOTAA64.EFI (systemd-boot)"
    );
    assert_eq!(c.feed("Kernel panic - not syncing", 4.0), Seen::Line);
    assert_eq!(c.failure(), Some(&f));
}

#[test]
fn recorded_console_logs_of_both_arches_classify_as_they_ended() {
    let ready = |text: &str, arch| match classify_log(text, arch) {
        Some(Ok(r)) => r,
        other => panic!("not ready: {other:?}"),
    };
    let x = ready(
        include_str!("../../../tests/fixtures/console/x86_64-ready.log"),
        Arch::X86_64,
    );
    let a = ready(
        include_str!("../../../tests/fixtures/console/aarch64-ready.log"),
        Arch::Aarch64,
    );
    for r in [&x, &a] {
        assert_eq!(
            (r.image.as_str(), r.version.as_str()),
            ("edge-minimal", "1.0.0")
        );
        assert_eq!(r.machine_id.len(), 32);
        assert!(r.agents.iter().all(|(_, s)| s == "ok"), "{:?}", r.agents);
    }
    assert_ne!(x.machine_id, a.machine_id);
    match classify_log(
        include_str!("../../../tests/fixtures/console/x86_64-root-not-found.log"),
        Arch::X86_64,
    ) {
        Some(Err(Failure::RootNotFound { line })) => {
            assert!(
                line.contains("PARTUUID=deadbeef-0000-4000-8000-000000000000"),
                "{line}"
            )
        }
        other => panic!("expected root not found, got {other:?}"),
    }
}

#[test]
fn recorded_panics_and_uefi_shells_of_both_arches_are_named() {
    for (text, arch) in [
        (
            include_str!("../../../tests/fixtures/console/x86_64-kernel-panic.log"),
            Arch::X86_64,
        ),
        (
            include_str!("../../../tests/fixtures/console/aarch64-kernel-panic.log"),
            Arch::Aarch64,
        ),
    ] {
        match classify_log(text, arch) {
            Some(Err(Failure::KernelPanic { line })) => assert!(
                line.contains("VFS: Unable to mount root fs on unknown-block(0,0)"),
                "{arch:?}: {line}"
            ),
            other => panic!("{arch:?}: expected a kernel panic, got {other:?}"),
        }
    }
    for (text, arch, loader) in [
        (
            include_str!("../../../tests/fixtures/console/x86_64-uefi-shell.log"),
            Arch::X86_64,
            "BOOTX64.EFI",
        ),
        (
            include_str!("../../../tests/fixtures/console/aarch64-uefi-shell.log"),
            Arch::Aarch64,
            "BOOTAA64.EFI",
        ),
    ] {
        match classify_log(text, arch) {
            Some(Err(f @ Failure::NothingBootable { .. })) => {
                let words = f.to_string();
                assert!(words.contains(loader), "{arch:?}: {words}");
                assert!(words.contains("Not Found"), "{arch:?}: {words}");
            }
            other => panic!("{arch:?}: expected nothing bootable, got {other:?}"),
        }
    }
}

#[test]
fn a_firmware_exception_ends_the_boot_at_once() {
    // OVMF on a 128 MiB q35 machine (2026-12-07): the loader hit an invalid opcode and edk2
    // halted; the boot used to wait out its whole timeout.
    match classify_log(
        include_str!("../../../tests/fixtures/console/x86_64-firmware-exception.log"),
        Arch::X86_64,
    ) {
        Some(Err(f @ Failure::FirmwareException { .. })) => {
            let words = f.to_string();
            assert!(
                words.contains("CPU exception") && words.contains("X64 Exception Type - 06(#UD"),
                "{words}"
            );
        }
        other => panic!("expected a firmware exception, got {other:?}"),
    }
    // AAVMF's form of it.
    let mut c = Console::new(Arch::Aarch64);
    match c.feed("Synchronous Exception at 0x000000013F2B1234", 1.0) {
        Seen::Fatal(Failure::FirmwareException { line }) => {
            assert_eq!(line, "Synchronous Exception at 0x000000013F2B1234")
        }
        _ => panic!("AAVMF's exception not seen"),
    }
}

#[test]
fn a_systemd_boot_menu_with_nothing_but_the_firmware_entry_is_named_at_exit() {
    // The ESP lost its loader entry: systemd-boot counted down 10 s on a menu holding only
    // its own firmware entry, took it, and the reset ended QEMU.
    match classify_log(
        include_str!("../../../tests/fixtures/console/x86_64-no-boot-entry.log"),
        Arch::X86_64,
    ) {
        Some(Err(f @ Failure::NoBootEntry)) => {
            let words = f.to_string();
            assert!(
                words.contains("no boot entry") && words.contains("loader/entries/*.conf"),
                "{words}"
            );
        }
        other => panic!("expected no boot entry, got {other:?}"),
    }
    // AAVMF's console draws the menu's rule in ASCII dashes.
    assert_eq!(
        classify_log(
            include_str!("../../../tests/fixtures/console/aarch64-no-boot-entry.log"),
            Arch::Aarch64,
        ),
        Some(Err(Failure::NoBootEntry))
    );
    // A menu that also lists an entry (a disk with a menu timeout) is no such failure: a
    // boot that then ends is QEMU exiting, as before.
    let recorded = include_str!("../../../tests/fixtures/console/x86_64-boot-menu-line.log");
    let menu = recorded.trim_end().split_once("] ").unwrap().1;
    let mut c = Console::new(Arch::X86_64);
    assert_eq!(c.feed(menu, 6.9), Seen::Line);
    assert_eq!(c.exited(), Failure::QemuExited);
    assert!(
        shown_text(menu).contains(&"edge-minimal 1.0.0"),
        "{:?}",
        shown_text(menu)
    );
    // Kernel output after the firmware-only menu (someone chose an entry by hand) clears it,
    // and a line of escape sequences alone (a cleared screen) does not.
    let mut c = Console::new(Arch::X86_64);
    c.feed(
        "\u{1b}[25;23H   Reboot Into Firmware Interface   \u{1b}[27;01H  Boot in 3 s.  ",
        2.0,
    );
    c.feed("\u{1b}[2J\u{1b}[01;01H", 5.0);
    assert_eq!(c.exited(), Failure::NoBootEntry);
    c.feed("[    1.2] EXT4-fs (vda2): mounted filesystem", 6.0);
    assert_eq!(c.exited(), Failure::QemuExited);
}
