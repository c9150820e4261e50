//! berth-seccomp: the OCI `linux.seccomp` section compiled to classic BPF in
//! pure Rust (no libseccomp), and a built-in default profile equivalent to
//! Docker's.
//!
//! ```no_run
//! let caps = vec!["CAP_CHOWN".to_string(), "CAP_KILL".to_string()];
//! let profile = berth_seccomp::default_profile(&caps);
//! let program = berth_seccomp::compile(&profile)?;
//! // ... in the container process, after prctl(PR_SET_NO_NEW_PRIVS, 1):
//! berth_seccomp::install(&program)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Semantics
//!
//! * A syscall that no rule names gets `defaultAction` (with `defaultErrnoRet`).
//! * Rules are tried in the order they are listed; the first rule that names
//!   the syscall and whose argument conditions all hold decides the action.
//!   Conditions of one rule are ANDed, rules are therefore ORed. As runc does,
//!   a rule that has two conditions on the same argument is split into one
//!   rule per condition (ORed).
//! * Argument comparisons are unsigned and 64-bit on x86_64 (both 32-bit
//!   halves are checked, as libseccomp does); `SCMP_CMP_MASKED_EQ` is
//!   `(arg & value) == valueTwo`.
//! * Syscall names unknown on an architecture are skipped, like libseccomp
//!   and runc do. Invalid profiles (empty `names`, argument index above 5,
//!   `SCMP_ACT_NOTIFY`, errno above 65535) are rejected with a one-line
//!   [`Error`].
//!
//! # Architectures
//!
//! The filter always covers x86_64. i386 (`int 0x80` and 32-bit processes) is
//! covered when the profile lists `SCMP_ARCH_X86`, with its own syscall table;
//! on i386 only the low 32 bits of an argument are compared, because that is
//! all a 32-bit syscall looks at. x32 syscalls (x86_64 arch with bit
//! `0x40000000` set in the number; any x86_64 number from `0x40000000` up is
//! treated the same) and any other architecture do not get rules of their own: they get the default action, or `ERRNO(ENOSYS)` when the
//! default action is `SCMP_ACT_ALLOW`/`SCMP_ACT_LOG`, so that a deny-list
//! profile cannot be bypassed through another ABI.
//!
//! # BPF layout
//!
//! ```text
//!        ld  [4]                      ; seccomp_data.arch
//!        jeq #AUDIT_ARCH_X86_64, native, next
//!        jeq #AUDIT_ARCH_I386, i386, foreign   ; only if i386 is compiled
//! native:
//!        ld  [0]                      ; seccomp_data.nr
//!        jge #0x40000000, x32, tree   ; x32 ABI (and invalid numbers)
//! tree:  jge #n, ..., ...             ; balanced binary search over the ranges
//!        ...                          ; of syscall numbers that share a decision
//! i386:  ld  [0]
//!        jge #n, ..., ...             ; same, with the i386 numbers
//! decisions:                          ; one block per distinct rule list:
//!        ld  [16 + 8*i + 4]           ; high word of args[i]
//!        jeq #hi, next, fail          ; 64-bit compare = high word, then low word
//!        ld  [16 + 8*i]
//!        jeq #lo, ok, fail
//!        ...
//! rets:  ret #SECCOMP_RET_ALLOW       ; each action value exists once per
//!        ret #SECCOMP_RET_ERRNO|1     ; 256-instruction window
//! ```
//!
//! Every leaf of the search tree jumps straight to its decision block; a
//! syscall that is allowed unconditionally reaches `ret` after about ten
//! instructions. Conditions that hold for every argument value (`SCMP_CMP_GE`
//! 0, an empty mask, ...) are dropped and rules with one that never holds are
//! left out, per architecture (on i386, against 32-bit values); loads and
//! masks whose result is not used are not emitted. The program is assembled back to front, so all jump distances
//! are known when a jump is emitted; a conditional jump whose target lies more
//! than 255 instructions ahead goes through a nearby copy of the target `ret`
//! or a `ja` with a 32-bit offset. Docker's default profile compiles to about
//! 250 instructions, far below the kernel's 4096.

mod bpf;
mod profile;
mod syscalls;

use std::io;

pub use bpf::compile;
pub use profile::{default_profile, DOCKER_DEFAULT_CAPS};

/// One classic BPF instruction, layout-compatible with the kernel's
/// `struct sock_filter`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SockFilter {
    /// Opcode (`BPF_LD | BPF_W | BPF_ABS`, `BPF_JMP | BPF_JEQ | BPF_K`, ...).
    pub code: u16,
    /// Conditional jumps: instructions to skip when the condition holds.
    pub jt: u8,
    /// Conditional jumps: instructions to skip when it does not.
    pub jf: u8,
    /// Immediate operand: offset, constant, jump distance or return value.
    pub k: u32,
}

// `install` hands `Program::filter` to the kernel as an array of `sock_filter`.
const _: () = {
    assert!(std::mem::size_of::<SockFilter>() == std::mem::size_of::<libc::sock_filter>());
    assert!(std::mem::align_of::<SockFilter>() == std::mem::align_of::<libc::sock_filter>());
};

/// A compiled seccomp filter, ready for [`install`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Program {
    /// The BPF instructions, at most [`BPF_MAXINSNS`].
    pub filter: Vec<SockFilter>,
    /// `SECCOMP_FILTER_FLAG_*` bits for `seccomp(2)`.
    pub flags: u32,
}

/// The kernel's limit on the length of one BPF program.
pub const BPF_MAXINSNS: usize = 4096;

/// `SECCOMP_FILTER_FLAG_TSYNC`: synchronize all threads of the process.
pub const SECCOMP_FILTER_FLAG_TSYNC: u32 = 1;
/// `SECCOMP_FILTER_FLAG_LOG`: log every action except `SECCOMP_RET_ALLOW`.
pub const SECCOMP_FILTER_FLAG_LOG: u32 = 2;
/// `SECCOMP_FILTER_FLAG_SPEC_ALLOW`: keep speculative store bypass enabled.
pub const SECCOMP_FILTER_FLAG_SPEC_ALLOW: u32 = 4;

/// Why a seccomp profile cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The profile uses `SCMP_ACT_NOTIFY` (user-space notification).
    #[error("seccomp: SCMP_ACT_NOTIFY is not supported")]
    NotifyUnsupported,
    /// A rule has an empty `names` list.
    #[error("seccomp: syscalls[{rule}]: \"names\" is empty")]
    EmptyNames {
        /// Index of the rule in `syscalls`.
        rule: usize,
    },
    /// A rule names the empty string as a syscall.
    #[error("seccomp: syscalls[{rule}]: empty syscall name")]
    EmptyName {
        /// Index of the rule in `syscalls`.
        rule: usize,
    },
    /// An argument condition refers to an argument other than 0..=5.
    #[error("seccomp: syscalls[{rule}] ({name}): argument index {index} is out of range 0-5")]
    ArgIndex {
        /// Index of the rule in `syscalls`.
        rule: usize,
        /// First syscall name of the rule.
        name: String,
        /// The offending index.
        index: usize,
    },
    /// An `errnoRet`/`defaultErrnoRet` does not fit the 16-bit return data.
    #[error("seccomp: {what}: errno {value} is out of range 0-65535")]
    ErrnoRange {
        /// `defaultErrnoRet` or `syscalls[i]`.
        what: String,
        /// The offending value.
        value: u32,
    },
    /// The compiled program exceeds the kernel's instruction limit.
    #[error("seccomp: filter needs {len} BPF instructions, the kernel allows {BPF_MAXINSNS}")]
    TooLarge {
        /// Number of instructions generated.
        len: usize,
    },
    /// The crate has no syscall table for the architecture it was built for.
    #[error("seccomp: architecture {0} is not supported (x86_64 only)")]
    UnsupportedArch(&'static str),
}

/// Loads `prog` into the calling thread with
/// `seccomp(SECCOMP_SET_MODE_FILTER, prog.flags, &prog)`.
///
/// The caller must have set `no_new_privs` or hold `CAP_SYS_ADMIN`. The
/// function only allocates to report an error, so it may be called between
/// `fork` and `exec`.
/// With `SECCOMP_FILTER_FLAG_TSYNC`, a thread that cannot be synchronized is
/// reported as an error naming its thread id.
pub fn install(prog: &Program) -> io::Result<()> {
    const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
    let len = match u16::try_from(prog.filter.len()) {
        Ok(n) if n > 0 && usize::from(n) <= BPF_MAXINSNS => n,
        _ => {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "seccomp: filter must have 1 to 4096 instructions"))
        }
    };
    let fprog = libc::sock_fprog {
        len,
        // The kernel only reads through this pointer.
        filter: prog.filter.as_ptr().cast::<libc::sock_filter>().cast_mut(),
    };
    // SAFETY: `fprog` points to `len` initialized `SockFilter`s, which have the
    // layout of `sock_filter` (checked above at compile time) and outlive the
    // call; the kernel copies the program and keeps no reference to it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            libc::c_ulong::from(prog.flags),
            &fprog as *const libc::sock_fprog,
        )
    };
    match ret {
        0 => Ok(()),
        r if r < 0 => Err(io::Error::last_os_error()),
        tid => {
            Err(io::Error::other(format!("seccomp: thread {tid} cannot be synchronized (SECCOMP_FILTER_FLAG_TSYNC)")))
        }
    }
}

/// The x86_64 number of the syscall called `name`, if it exists.
pub fn syscall_number(name: &str) -> Option<i64> {
    syscalls::find(name).and_then(|(nr, _)| number(nr))
}

/// The name of x86_64 syscall number `nr`, if it exists.
pub fn syscall_name(nr: i64) -> Option<&'static str> {
    x86_64_syscalls().find(|&(_, n)| n == nr).map(|(name, _)| name)
}

/// The i386 number of the syscall called `name`, if it exists.
pub fn i386_syscall_number(name: &str) -> Option<i64> {
    syscalls::find(name).and_then(|(_, nr)| number(nr))
}

/// The name of i386 syscall number `nr`, if it exists.
pub fn i386_syscall_name(nr: i64) -> Option<&'static str> {
    i386_syscalls().find(|&(_, n)| n == nr).map(|(name, _)| name)
}

/// All x86_64 syscalls as `(name, number)`, in name order.
pub fn x86_64_syscalls() -> impl Iterator<Item = (&'static str, i64)> {
    syscalls::SYSCALLS.iter().filter_map(|&(name, nr, _)| Some((name, number(nr)?)))
}

/// All i386 syscalls as `(name, number)`, in name order.
pub fn i386_syscalls() -> impl Iterator<Item = (&'static str, i64)> {
    syscalls::SYSCALLS.iter().filter_map(|&(name, _, nr)| Some((name, number(nr)?)))
}

fn number(nr: u16) -> Option<i64> {
    (nr != syscalls::NONE).then_some(i64::from(nr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_sorted_and_unique() {
        let t = syscalls::SYSCALLS;
        assert!(t.windows(2).all(|w| w[0].0 < w[1].0), "not sorted by name");
        for numbers in [x86_64_syscalls().map(|e| e.1).collect::<Vec<_>>(), i386_syscalls().map(|e| e.1).collect()] {
            let mut nrs = numbers;
            nrs.sort_unstable();
            assert!(nrs.windows(2).all(|w| w[0] < w[1]), "duplicate number");
            assert!(nrs.len() > 380 && nrs[nrs.len() - 1] == 470);
        }
        for (name, _) in x86_64_syscalls().chain(i386_syscalls()) {
            assert!(syscalls::find(name).is_some(), "{name}");
        }
    }

    #[test]
    fn x86_64_numbers_match_libc() {
        let known: &[(&str, libc::c_long)] = &[
            ("read", libc::SYS_read),
            ("write", libc::SYS_write),
            ("getpid", libc::SYS_getpid),
            ("clone", libc::SYS_clone),
            ("clone3", libc::SYS_clone3),
            ("execve", libc::SYS_execve),
            ("mount", libc::SYS_mount),
            ("umount2", libc::SYS_umount2),
            ("unshare", libc::SYS_unshare),
            ("keyctl", libc::SYS_keyctl),
            ("personality", libc::SYS_personality),
            ("socket", libc::SYS_socket),
            ("ptrace", libc::SYS_ptrace),
            ("seccomp", libc::SYS_seccomp),
            ("rseq", libc::SYS_rseq),
            ("io_uring_setup", libc::SYS_io_uring_setup),
            ("openat2", libc::SYS_openat2),
            ("faccessat2", libc::SYS_faccessat2),
            ("futex_waitv", libc::SYS_futex_waitv),
            ("set_mempolicy_home_node", libc::SYS_set_mempolicy_home_node),
            ("fchmodat2", libc::SYS_fchmodat2),
            ("mseal", libc::SYS_mseal),
            ("newfstatat", libc::SYS_newfstatat),
            ("arch_prctl", libc::SYS_arch_prctl),
            ("_sysctl", libc::SYS__sysctl),
        ];
        for &(name, nr) in known {
            assert_eq!(syscall_number(name), Some(nr), "{name}");
            assert_eq!(syscall_name(nr), Some(name));
        }
        assert_eq!(syscall_number("listns"), Some(470));
        assert_eq!(syscall_number("no_such_syscall"), None);
        assert_eq!(i386_syscall_number("socketcall"), Some(102));
        assert_eq!(i386_syscall_number("personality"), Some(136));
        assert_eq!(i386_syscall_number("mseal"), Some(462));
    }
}
