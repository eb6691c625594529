//! Host facts (static: OS, CPUs, memory, disks) and load (sampled), from `sysinfo`.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use sysinfo::{Disks, Networks, System};
use triad_proto::v1::{HostFacts, HostLoad};

/// Reads the host's static facts.
pub fn host_facts() -> HostFacts {
    let mut sys = System::new();
    sys.refresh_memory();
    sys.refresh_cpu_list(sysinfo::CpuRefreshKind::new());
    let disks = Disks::new_with_refreshed_list();
    HostFacts {
        os: System::long_os_version().unwrap_or_else(|| "unknown".into()),
        kernel: System::kernel_version().unwrap_or_else(|| "unknown".into()),
        cpus: sys.cpus().len() as u32,
        memory_total_bytes: sys.total_memory(),
        disk_total_bytes: disks.iter().map(|d| d.total_space()).sum(),
        addresses: addresses(),
    }
}

/// The host's IP addresses, loopback and link-local left out, sorted (so that the facts compare
/// equal from one start to the next).
fn addresses() -> Vec<String> {
    let networks = Networks::new_with_refreshed_list();
    let mut out: Vec<String> = networks
        .values()
        .flat_map(|n| n.ip_networks().iter().map(|i| i.addr))
        .filter(|a| !a.is_loopback() && !a.is_unspecified())
        .filter(|a| match a {
            std::net::IpAddr::V4(v4) => !v4.is_link_local(),
            std::net::IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
        })
        .map(|a| a.to_string())
        .collect();
    out.sort();
    out.dedup();
    out.truncate(64);
    out
}

/// Samples the host's load every `every` into `out`, forever.
pub async fn sample_load(out: Arc<RwLock<HostLoad>>, every: Duration) {
    let mut sys = System::new();
    let mut disks = Disks::new_with_refreshed_list();
    loop {
        sys.refresh_cpu_usage();
        sys.refresh_memory();
        disks.refresh();
        let load = HostLoad {
            cpu_percent: sys.global_cpu_usage(),
            memory_used_bytes: sys.used_memory(),
            disk_used_bytes: disks.iter().map(|d| d.total_space().saturating_sub(d.available_space())).sum(),
            load_1m: System::load_average().one,
        };
        *out.write().expect("load lock poisoned") = load;
        tokio::time::sleep(every).await;
    }
}
