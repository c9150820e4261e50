//! The cgroup v2 device controller: an eBPF program of type
//! `BPF_PROG_TYPE_CGROUP_DEVICE` attached to the container's cgroup.
//!
//! The OCI device rules are a v1-style list in which the last matching rule
//! decides. The program checks the rules from the last to the first and
//! returns the verdict of the first match; a device no rule matches is
//! allowed (the v1 default; a spec that wants deny-by-default starts with
//! "deny a *:* rwm", which matches everything).

use crate::{Error, Result};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// One eBPF instruction (`struct bpf_insn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    code: u8,
    regs: u8, // dst in the low nibble, src in the high nibble
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, regs: dst | (src << 4), off, imm }
}

// Opcodes (linux/bpf.h, linux/bpf_common.h).
const LDX_MEM_W: u8 = 0x61; // dst = *(u32 *)(src + off)
const ALU32_AND_K: u8 = 0x54;
const ALU32_RSH_K: u8 = 0x74;
const ALU64_MOV_K: u8 = 0xb7;
const ALU64_MOV_X: u8 = 0xbf;
const JMP_JNE_K: u8 = 0x55;
const JMP_JNE_X: u8 = 0x5d;
const JMP_EXIT: u8 = 0x95;

const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

/// Compile device rules into an eBPF device program.
/// Registers: r2 = device type, r3 = access, r4 = major, r5 = minor.
pub fn program(rules: &[LinuxDeviceCgroup]) -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),
        insn(ALU32_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_MEM_W, 3, 1, 0, 0),
        insn(ALU32_RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, 4, 0),
        insn(LDX_MEM_W, 5, 1, 8, 0),
    ];
    for r in rules.iter().rev() {
        let mut block = Vec::new();
        let typ = match r.typ() {
            Some(LinuxDeviceType::B) => Some(DEV_BLOCK),
            Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => Some(DEV_CHAR),
            // "p" (fifo) never reaches the device cgroup; "a" or none is any.
            Some(LinuxDeviceType::P) => continue,
            _ => None,
        };
        if let Some(t) = typ {
            block.push(insn(JMP_JNE_K, 2, 0, 0, t)); // offset patched below
        }
        let acc = r.access().as_deref().unwrap_or("rwm");
        let mut mask = 0;
        for c in acc.chars() {
            mask |= match c {
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                'm' => ACC_MKNOD,
                _ => 0,
            };
        }
        if mask != ACC_READ | ACC_WRITE | ACC_MKNOD {
            // Every requested access bit must be in the rule: (r3 & mask) == r3.
            block.push(insn(ALU64_MOV_X, 1, 3, 0, 0));
            block.push(insn(ALU32_AND_K, 1, 0, 0, mask));
            block.push(insn(JMP_JNE_X, 1, 3, 0, 0));
        }
        if let Some(m) = r.major().filter(|m| *m >= 0) {
            block.push(insn(JMP_JNE_K, 4, 0, 0, m as i32));
        }
        if let Some(m) = r.minor().filter(|m| *m >= 0) {
            block.push(insn(JMP_JNE_K, 5, 0, 0, m as i32));
        }
        let matches_all = block.is_empty();
        block.push(insn(ALU64_MOV_K, 0, 0, 0, i32::from(r.allow())));
        block.push(insn(JMP_EXIT, 0, 0, 0, 0));
        // Each "jne" skips to the end of this block.
        let n = block.len();
        for (i, ins) in block.iter_mut().enumerate() {
            if ins.code == JMP_JNE_K || ins.code == JMP_JNE_X {
                ins.off = (n - i - 1) as i16;
            }
        }
        p.extend(block);
        if matches_all {
            // Earlier rules can never be reached, and the verifier refuses
            // unreachable instructions.
            return p;
        }
    }
    p.push(insn(ALU64_MOV_K, 0, 0, 0, 1));
    p.push(insn(JMP_EXIT, 0, 0, 0, 0));
    p
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// `union bpf_attr`, as a zeroed buffer large enough for every command used here.
#[repr(C, align(8))]
struct Attr([u32; 32]);

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> std::io::Result<i64> {
    // SAFETY: attr is a valid, 8-aligned, zero-padded bpf_attr of the size passed.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut Attr, std::mem::size_of::<Attr>()) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn load(prog: &[Insn]) -> Result<OwnedFd> {
    let license = c"Apache-2.0";
    let mut a = Attr([0; 32]);
    a.0[0] = BPF_PROG_TYPE_CGROUP_DEVICE;
    a.0[1] = prog.len() as u32;
    let insns = prog.as_ptr() as u64;
    a.0[2] = insns as u32;
    a.0[3] = (insns >> 32) as u32;
    let lic = license.as_ptr() as u64;
    a.0[4] = lic as u32;
    a.0[5] = (lic >> 32) as u32;
    let fd =
        bpf(BPF_PROG_LOAD, &mut a).map_err(|e| Error::io("load the cgroup v2 device filter (bpf BPF_PROG_LOAD)", e))?;
    // SAFETY: BPF_PROG_LOAD returned a new file descriptor that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Program ids attached to the cgroup for the device hook.
fn attached(cg: &OwnedFd) -> Vec<u32> {
    let mut ids = [0u32; 64];
    let mut a = Attr([0; 32]);
    a.0[0] = cg.as_raw_fd() as u32;
    a.0[1] = BPF_CGROUP_DEVICE;
    let p = ids.as_mut_ptr() as u64;
    a.0[4] = p as u32;
    a.0[5] = (p >> 32) as u32;
    a.0[6] = ids.len() as u32;
    match bpf(BPF_PROG_QUERY, &mut a) {
        Ok(_) => ids[..(a.0[6] as usize).min(ids.len())].to_vec(),
        Err(_) => Vec::new(),
    }
}

/// Replace the device filter of the cgroup at `dir` with one for `rules`.
pub fn apply(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    let prog = program(rules);
    let fd = load(&prog)?;
    let cg: OwnedFd = std::fs::File::open(dir).map_err(|e| Error::io(format!("open {}", dir.display()), e))?.into();
    let old = attached(&cg);
    let mut a = Attr([0; 32]);
    a.0[0] = cg.as_raw_fd() as u32;
    a.0[1] = fd.as_raw_fd() as u32;
    a.0[2] = BPF_CGROUP_DEVICE;
    a.0[3] = BPF_F_ALLOW_MULTI;
    bpf(BPF_PROG_ATTACH, &mut a).map_err(|e| Error::io(format!("attach the device filter to {}", dir.display()), e))?;
    // The new filter is in place: drop the ones it replaces (`update`).
    for id in old {
        let mut g = Attr([0; 32]);
        g.0[0] = id;
        let Ok(ofd) = bpf(BPF_PROG_GET_FD_BY_ID, &mut g) else { continue };
        // SAFETY: BPF_PROG_GET_FD_BY_ID returned a new descriptor that we own.
        let ofd = unsafe { OwnedFd::from_raw_fd(ofd as i32) };
        let mut d = Attr([0; 32]);
        d.0[0] = cg.as_raw_fd() as u32;
        d.0[1] = ofd.as_raw_fd() as u32;
        d.0[2] = BPF_CGROUP_DEVICE;
        let _ = bpf(BPF_PROG_DETACH, &mut d);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        allow: bool,
        typ: Option<LinuxDeviceType>,
        major: Option<i64>,
        minor: Option<i64>,
        acc: &str,
    ) -> LinuxDeviceCgroup {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(allow);
        r.set_typ(typ);
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some(acc.to_string()));
        r
    }

    /// A tiny interpreter for the subset of eBPF the compiler emits.
    fn run(p: &[Insn], typ: i32, access: i32, major: u32, minor: u32) -> u64 {
        let mut r = [0u64; 11];
        let ctx = [((access as u32) << 16) | typ as u32, major, minor];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_MEM_W => r[dst] = u64::from(ctx[i.off as usize / 4]),
                ALU32_AND_K => r[dst] = (r[dst] as u32 & i.imm as u32) as u64,
                ALU32_RSH_K => r[dst] = ((r[dst] as u32) >> i.imm) as u64,
                ALU64_MOV_K => r[dst] = i.imm as i64 as u64,
                ALU64_MOV_X => r[dst] = r[src],
                JMP_JNE_K if r[dst] != i.imm as i64 as u64 => pc += i.off as usize,
                JMP_JNE_X if r[dst] != r[src] => pc += i.off as usize,
                JMP_JNE_K | JMP_JNE_X => {}
                JMP_EXIT => return r[0],
                c => panic!("unknown opcode {c:#x}"),
            }
        }
    }

    #[test]
    fn last_match_wins() {
        let rules = vec![
            rule(false, Some(LinuxDeviceType::A), None, None, "rwm"),
            rule(true, Some(LinuxDeviceType::C), Some(1), Some(3), "rwm"),
            rule(true, Some(LinuxDeviceType::C), Some(5), None, "rw"),
        ];
        let p = program(&rules);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3), 1);
        assert_eq!(run(&p, DEV_CHAR, ACC_MKNOD, 1, 3), 1);
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ, 1, 3), 0);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 5), 0);
        assert_eq!(run(&p, DEV_CHAR, ACC_WRITE, 5, 2), 1);
        assert_eq!(run(&p, DEV_CHAR, ACC_MKNOD, 5, 2), 0);
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ, 8, 0), 0);
        // No rules: allow.
        assert_eq!(run(&program(&[]), DEV_BLOCK, ACC_READ, 8, 0), 1);
    }
}
