//! The clocks leases and absences are counted on, shared by the agent and the controller.
//!
//! `CLOCK_BOOTTIME` is monotonic and keeps counting while the host is suspended, unlike `Instant`
//! (`CLOCK_MONOTONIC`): a host that wakes up finds its lease gone, and a controller that was
//! suspended finds that it was away. A time kept across a process restart on this clock is
//! meaningful only with the boot id it was taken under.

use nix::time::{clock_gettime, ClockId};

fn clock_ms(id: ClockId) -> u64 {
    // Both clocks exist on every Linux this runs on (2.6.39+); a failure is not recoverable.
    let t = clock_gettime(id).expect("CLOCK_BOOTTIME and CLOCK_MONOTONIC are available");
    t.tv_sec() as u64 * 1000 + t.tv_nsec() as u64 / 1_000_000
}

/// Milliseconds on `CLOCK_BOOTTIME`: monotonic, and counting while the host is suspended.
pub fn boot_ms() -> u64 {
    clock_ms(ClockId::CLOCK_BOOTTIME)
}

/// Milliseconds on `CLOCK_MONOTONIC`, which stops while the host is suspended.
pub fn mono_ms() -> u64 {
    clock_ms(ClockId::CLOCK_MONOTONIC)
}

/// The kernel's id of this boot (empty when unreadable: then nothing kept matches it).
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_string()).unwrap_or_default()
}
