//! Capabilities: the five sets of the OCI process, applied with capset(2) and prctl(2).

use crate::error::{Context, Result};
use crate::sys;
use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

/// The kernel number of a capability.
pub fn number(c: Capability) -> u32 {
    use Capability::*;
    match c {
        Chown => 0,
        DacOverride => 1,
        DacReadSearch => 2,
        Fowner => 3,
        Fsetid => 4,
        Kill => 5,
        Setgid => 6,
        Setuid => 7,
        Setpcap => 8,
        LinuxImmutable => 9,
        NetBindService => 10,
        NetBroadcast => 11,
        NetAdmin => 12,
        NetRaw => 13,
        IpcLock => 14,
        IpcOwner => 15,
        SysModule => 16,
        SysRawio => 17,
        SysChroot => 18,
        SysPtrace => 19,
        SysPacct => 20,
        SysAdmin => 21,
        SysBoot => 22,
        SysNice => 23,
        SysResource => 24,
        SysTime => 25,
        SysTtyConfig => 26,
        Mknod => 27,
        Lease => 28,
        AuditWrite => 29,
        AuditControl => 30,
        Setfcap => 31,
        MacOverride => 32,
        MacAdmin => 33,
        Syslog => 34,
        WakeAlarm => 35,
        BlockSuspend => 36,
        AuditRead => 37,
        Perfmon => 38,
        Bpf => 39,
        CheckpointRestore => 40,
    }
}

/// The canonical name ("CAP_SYS_ADMIN") of a capability.
pub fn name(c: Capability) -> String {
    serde_json::to_value(c).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

fn mask(set: &Option<Capabilities>) -> u64 {
    set.iter().flatten().fold(0u64, |m, c| m | (1u64 << number(*c)))
}

/// The highest capability number the running kernel knows.
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(40)
}

/// Does the calling process hold `cap` in its effective set?
pub fn have_effective(cap: u32) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .is_some_and(|m| m & (1u64 << cap) != 0)
}

/// Masks of the five sets, computed once in the parent before fork.
#[derive(Clone, Copy, Debug, Default)]
pub struct CapSets {
    pub bounding: u64,
    pub effective: u64,
    pub inheritable: u64,
    pub permitted: u64,
    pub ambient: u64,
}

impl CapSets {
    pub fn from_spec(c: Option<&LinuxCapabilities>) -> CapSets {
        match c {
            None => CapSets::default(),
            Some(c) => CapSets {
                bounding: mask(c.bounding()),
                effective: mask(c.effective()),
                inheritable: mask(c.inheritable()),
                permitted: mask(c.permitted()),
                ambient: mask(c.ambient()),
            },
        }
    }
}

/// Drop every capability not in the bounding set (needs CAP_SETPCAP, so call while still root).
pub fn drop_bounding(sets: &CapSets) -> Result<()> {
    for cap in 0..=last_cap() {
        if sets.bounding & (1u64 << cap) == 0 {
            match sys::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong) {
                Ok(_) => {}
                // A capability this kernel does not know.
                Err(e) if sys::errno_of(&e) == libc::EINVAL => {}
                Err(e) => {
                    return Err(crate::error::Error::os(format!("drop capability {cap} from the bounding set"), e))
                }
            }
        }
    }
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Set effective, permitted and inheritable sets with capset(2), then raise the ambient set.
pub fn apply(sets: &CapSets) -> Result<()> {
    const VERSION_3: u32 = 0x2008_0522;
    let hdr = CapHeader { version: VERSION_3, pid: 0 };
    let lo = |m: u64| m as u32;
    let hi = |m: u64| (m >> 32) as u32;
    let data = [
        CapData { effective: lo(sets.effective), permitted: lo(sets.permitted), inheritable: lo(sets.inheritable) },
        CapData { effective: hi(sets.effective), permitted: hi(sets.permitted), inheritable: hi(sets.inheritable) },
    ];
    // SAFETY: hdr and data match the kernel's _LINUX_CAPABILITY_VERSION_3 layout (two data words).
    let r = unsafe { libc::syscall(libc::SYS_capset, &hdr as *const CapHeader, data.as_ptr()) };
    if r < 0 {
        return Err(std::io::Error::last_os_error()).ctx("capset");
    }
    // Clear then raise ambient capabilities (each must be permitted and inheritable).
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) };
    for cap in 0..=last_cap() {
        if sets.ambient & (1u64 << cap) != 0 {
            // SAFETY: prctl with integer arguments.
            let r =
                unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_RAISE, cap as libc::c_ulong, 0, 0) };
            if r < 0 {
                // runc ignores ambient failures (e.g. cap not inheritable); so do we.
                continue;
            }
        }
    }
    Ok(())
}
