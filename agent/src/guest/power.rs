//! The end of the guest: stop every process, flush the disks, reset the machine. With `reboot=k`
//! on the kernel command line the restart goes through the i8042 keyboard controller, which the
//! VMM treats as the VM's exit.

/// Kills every process but PID 1, syncs and resets. Never returns.
pub fn kill_sync_reset() -> ! {
    // SAFETY: kill(-1) signals every process we may signal except ourselves; plain integers.
    unsafe { libc::kill(-1, libc::SIGKILL) };
    // SAFETY: sync takes no arguments and cannot fail.
    unsafe { libc::sync() };
    loop {
        // SAFETY: reboot with a valid command; it only returns on failure.
        unsafe { libc::reboot(libc::LINUX_REBOOT_CMD_RESTART) };
        // Nothing else can be done from PID 1: exiting would panic the kernel, which with
        // panic=-1 also reboots, but say it through the kernel log first.
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}
