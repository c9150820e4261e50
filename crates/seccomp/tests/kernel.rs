//! Loads compiled filters into forked children and checks what the real
//! kernel does with them: Docker's default profile, every action, custom
//! errnos, 64-bit argument comparisons, and a large program full of long jumps
//! compared call by call with a direct reading of its rules. Needs Linux
//! x86_64; runs as root or not.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use berth_seccomp::{compile, default_profile, install, Program};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};

use berth_seccomp::DOCKER_DEFAULT_CAPS as DOCKER_CAPS;

fn docker_program() -> Program {
    let caps: Vec<String> = DOCKER_CAPS.iter().map(|s| s.to_string()).collect();
    compile(&default_profile(&caps)).unwrap()
}

/// Runs `f` in a forked child; returns its exit code, or `Err(signal)`.
/// `f` must not allocate or take locks (the parent is multi-threaded).
fn in_child(f: impl FnOnce() -> i32) -> Result<i32, i32> {
    // SAFETY: the child only runs `f`, which makes raw syscalls, then `_exit`s.
    match unsafe { libc::fork() } {
        -1 => panic!("fork: {}", std::io::Error::last_os_error()),
        0 => {
            let code = f();
            // SAFETY: leaves the child without running the parent's atexit handlers.
            unsafe { libc::_exit(code) }
        }
        pid => {
            let mut status = 0;
            // SAFETY: waits for our own child; `status` is a valid out pointer.
            let r = unsafe { libc::waitpid(pid, &mut status, 0) };
            assert_eq!(r, pid, "waitpid: {}", std::io::Error::last_os_error());
            if libc::WIFEXITED(status) {
                Ok(libc::WEXITSTATUS(status))
            } else {
                Err(libc::WTERMSIG(status))
            }
        }
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// `syscall(args)` fails with exactly `EPERM`.
fn eperm(r: libc::c_long) -> bool {
    r == -1 && errno() == libc::EPERM
}

fn enter_seccomp(prog: &Program) -> Option<i32> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Some(200);
    }
    // A child killed by SIGSYS must not leave a core file behind.
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Some(202);
    }
    if install(prog).is_err() {
        return Some(201);
    }
    None
}

const CHECKS: [&str; 7] = [
    "unshare(CLONE_NEWNS) should fail with EPERM",
    "keyctl should fail with EPERM",
    "mount should fail with EPERM",
    "x32 getpid should fail with EPERM",
    "getpid should succeed",
    "write should succeed",
    "uname should succeed",
];

#[test]
fn docker_profile_in_real_kernel() {
    let prog = docker_program();
    let mut pipe = [0; 2];
    // SAFETY: `pipe` has room for two fds.
    assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
    let result = in_child(|| {
        if let Some(code) = enter_seccomp(&prog) {
            return code;
        }
        let mut failed = 0;
        // SAFETY: all calls below are raw syscalls with valid pointers or plain integers.
        unsafe {
            if !eperm(libc::syscall(libc::SYS_unshare, libc::CLONE_NEWNS)) {
                failed |= 1;
            }
            // keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0)
            if !eperm(libc::syscall(libc::SYS_keyctl, 0, -3, 0)) {
                failed |= 2;
            }
            // Without the filter this fails with ENOENT instead.
            let r = libc::syscall(
                libc::SYS_mount,
                c"none".as_ptr(),
                c"/nonexistent-berth-seccomp-test".as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                std::ptr::null::<libc::c_void>(),
            );
            if !eperm(r) {
                failed |= 4;
            }
            if !eperm(libc::syscall(libc::SYS_getpid | 0x4000_0000)) {
                failed |= 8;
            }
            if libc::syscall(libc::SYS_getpid) <= 0 {
                failed |= 16;
            }
            if libc::write(pipe[1], b"ok".as_ptr().cast(), 2) != 2 {
                failed |= 32;
            }
            let mut uts: libc::utsname = std::mem::zeroed();
            if libc::uname(&mut uts) != 0 {
                failed |= 64;
            }
        }
        failed
    });
    let mut buf = [0u8; 2];
    // SAFETY: reads into a 2-byte buffer from our pipe; the child has exited.
    unsafe {
        libc::close(pipe[1]);
        assert_eq!(libc::read(pipe[0], buf.as_mut_ptr().cast(), 2), 2);
        libc::close(pipe[0]);
    }
    assert_eq!(&buf, b"ok");
    match result {
        Ok(0) => {}
        Ok(200) => panic!("prctl(PR_SET_NO_NEW_PRIVS) failed"),
        Ok(201) => panic!("seccomp install failed"),
        Ok(bits) => {
            let failed: Vec<_> =
                CHECKS.iter().enumerate().filter(|(i, _)| bits & (1 << i) != 0).map(|(_, c)| *c).collect();
            panic!("in the filtered child: {failed:?}");
        }
        Err(sig) => panic!("child killed by signal {sig}"),
    }
}

/// A 32-bit syscall from a 64-bit process (`int 0x80`).
///
/// # Safety
/// The syscall must not touch memory through its arguments.
unsafe fn int80(nr: u32, a0: u32, a1: u32) -> i32 {
    let ret: i32;
    // SAFETY: rbx is reserved by LLVM, so it is swapped in and out around the
    // call; the kernel preserves every register but eax (r8-r11 are zeroed).
    unsafe {
        std::arch::asm!(
            "xchg {a0:r}, rbx",
            "int 0x80",
            "xchg {a0:r}, rbx",
            a0 = inout(reg) u64::from(a0) => _,
            inlateout("eax") nr => ret,
            in("ecx") a1,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
        );
    }
    ret
}

#[test]
fn i386_syscalls_in_real_kernel() {
    const GETPID: u32 = 20;
    const MOUNT: u32 = 21;
    const PERSONALITY: u32 = 136;
    const UNSHARE: u32 = 310;
    // Is IA32 emulation available at all?
    // SAFETY: getpid takes no arguments.
    let probe = in_child(|| i32::from(unsafe { int80(GETPID, 0, 0) } == std::process::id() as i32));
    if probe != Ok(1) {
        println!("skipped: no IA32 emulation (probe: {probe:?})");
        return;
    }
    let prog = docker_program();
    let result = in_child(|| {
        if let Some(code) = enter_seccomp(&prog) {
            return code;
        }
        let eperm = -libc::EPERM;
        let mut failed = 0;
        // SAFETY: none of the syscalls below dereference their arguments
        // (mount gets NULL pointers and fails in the filter).
        unsafe {
            if int80(GETPID, 0, 0) <= 0 {
                failed |= 1;
            }
            if int80(MOUNT, 0, 0) != eperm {
                failed |= 2;
            }
            if int80(UNSHARE, libc::CLONE_NEWNS as u32, 0) != eperm {
                failed |= 4;
            }
            // personality(0xffffffff) queries, personality(1) is refused.
            if int80(PERSONALITY, 0xffff_ffff, 0) < 0 {
                failed |= 8;
            }
            if int80(PERSONALITY, 1, 0) != eperm {
                failed |= 16;
            }
        }
        failed
    });
    assert_eq!(result, Ok(0), "failed checks bitmask (1 getpid, 2 mount, 4 unshare, 8/16 personality)");
}

// ---------------------------------------------------------------------------
// Hand-written profiles.

fn arg(index: usize, op: LinuxSeccompOperator, value: u64, value_two: Option<u64>) -> LinuxSeccompArg {
    let b = LinuxSeccompArgBuilder::default().index(index).op(op).value(value);
    match value_two {
        Some(v2) => b.value_two(v2),
        None => b,
    }
    .build()
    .unwrap()
}

fn rule(names: &[&str], action: LinuxSeccompAction, errno: Option<u32>, args: Vec<LinuxSeccompArg>) -> LinuxSyscall {
    let mut s = LinuxSyscall::default();
    s.set_names(names.iter().map(|n| n.to_string()).collect())
        .set_action(action)
        .set_errno_ret(errno)
        .set_args(if args.is_empty() { None } else { Some(args) });
    s
}

fn profile(default: LinuxSeccompAction, default_errno: Option<u32>, rules: Vec<LinuxSyscall>) -> LinuxSeccomp {
    let mut p = LinuxSeccomp::default();
    p.set_default_action(default)
        .set_default_errno_ret(default_errno)
        .set_architectures(Some(vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86]))
        .set_syscalls(Some(rules));
    p
}

/// Raw syscall `nr` with one argument (all six registers passed, the rest 0):
/// `-errno` when it fails, else its return value. Only for syscalls that do
/// not dereference their arguments.
fn sys(nr: libc::c_long, a0: u64) -> libc::c_long {
    // SAFETY: callers only pass syscalls that take integers (or none).
    let r = unsafe { libc::syscall(nr, a0, 0u64, 0u64, 0u64, 0u64, 0u64) };
    if r == -1 {
        -libc::c_long::from(errno())
    } else {
        r
    }
}

/// A named check run in a filtered child.
type Check = (&'static str, fn() -> bool);

#[test]
fn actions_in_real_kernel() {
    use LinuxSeccompAction::*;
    use LinuxSeccompOperator::*;
    const EXDEV: u32 = 18;
    let mut p = profile(
        ScmpActAllow,
        None,
        vec![
            rule(&["getppid"], ScmpActErrno, Some(libc::EOPNOTSUPP as u32), vec![]),
            rule(&["getuid"], ScmpActErrno, None, vec![]),
            rule(&["getgid"], ScmpActTrace, None, vec![]),
            rule(&["getegid"], ScmpActLog, None, vec![]),
            // 64-bit comparisons: the kernel's dup() only looks at the low word.
            rule(&["dup"], ScmpActErrno, Some(EXDEV), vec![arg(0, ScmpCmpGe, 1 << 32, None)]),
            rule(&["dup"], ScmpActErrno, Some(EXDEV + 1), vec![arg(0, ScmpCmpMaskedEq, 0xff, Some(0x42))]),
            rule(&["umask"], ScmpActErrno, Some(0), vec![]),
            rule(&["getpgid"], ScmpActKill, None, vec![arg(0, ScmpCmpEq, 1001, None)]),
            rule(&["getpgid"], ScmpActKillThread, None, vec![arg(0, ScmpCmpEq, 1002, None)]),
            rule(&["getpgid"], ScmpActKillProcess, None, vec![arg(0, ScmpCmpEq, 1003, None)]),
            rule(&["getpgid"], ScmpActTrap, None, vec![arg(0, ScmpCmpEq, 1004, None)]),
        ],
    );
    p.set_flags(Some(vec![LinuxSeccompFilterFlag::SeccompFilterFlagTsync]));
    let prog = compile(&p).unwrap();
    assert_eq!(prog.flags, berth_seccomp::SECCOMP_FILTER_FLAG_TSYNC);

    let checks: [Check; 9] = [
        ("getppid: ERRNO(EOPNOTSUPP)", || sys(libc::SYS_getppid, 0) == -95),
        ("getuid: ERRNO without errnoRet is EPERM", || sys(libc::SYS_getuid, 0) == -1),
        ("getgid: TRACE without a tracer is ENOSYS", || sys(libc::SYS_getgid, 0) == -38),
        ("getegid: LOG runs the syscall", || sys(libc::SYS_getegid, 0) >= 0),
        ("dup(1 | 1 << 32): high word compared", || sys(libc::SYS_dup, (1 << 32) | 1) == -18),
        ("dup(0x142): masked compare", || sys(libc::SYS_dup, 0x142) == -19),
        ("dup(1) allowed", || {
            let fd = sys(libc::SYS_dup, 1);
            fd > 2 && sys(libc::SYS_close, fd as u64) == 0
        }),
        // The umask is 0o022 (set before the filter): a umask that ran would return it.
        ("umask: ERRNO(0) returns 0 without running", || sys(libc::SYS_umask, 0o077) == 0),
        ("getpgid(0) allowed", || sys(libc::SYS_getpgid, 0) > 0),
    ];
    let result = in_child(|| {
        // SAFETY: umask only changes the process's file creation mask.
        unsafe { libc::umask(0o022) };
        if let Some(code) = enter_seccomp(&prog) {
            return code;
        }
        let mut failed = 0;
        for (i, (_, check)) in checks.iter().enumerate() {
            if !check() {
                failed |= 1 << i;
            }
        }
        failed
    });
    let failed: Vec<_> = checks
        .iter()
        .enumerate()
        .filter(|(i, _)| matches!(result, Ok(bits) if bits < 200 && bits & (1 << i) != 0))
        .map(|(_, (name, _))| *name)
        .collect();
    assert!(result == Ok(0), "{result:?}: {failed:?}");

    // Each kill-like action ends the child with SIGSYS.
    for (arg0, what) in [(1001, "KILL"), (1002, "KILL_THREAD"), (1003, "KILL_PROCESS"), (1004, "TRAP")] {
        let result = in_child(|| {
            if let Some(code) = enter_seccomp(&prog) {
                return code;
            }
            sys(libc::SYS_getpgid, arg0);
            100
        });
        assert_eq!(result, Err(libc::SIGSYS), "{what}");
    }
}

#[test]
fn default_errno_in_real_kernel() {
    use LinuxSeccompAction::*;
    // Allow-list: everything else fails with defaultErrnoRet.
    let p = profile(
        ScmpActErrno,
        Some(libc::ENOTTY as u32),
        vec![rule(&["exit_group", "exit", "getpid", "prctl", "seccomp"], ScmpActAllow, None, vec![])],
    );
    let prog = compile(&p).unwrap();
    let result = in_child(|| {
        if let Some(code) = enter_seccomp(&prog) {
            return code;
        }
        let (uid, pid) = (sys(libc::SYS_getuid, 0), sys(libc::SYS_getpid, 0));
        i32::from(uid != -libc::c_long::from(libc::ENOTTY)) | i32::from(pid <= 0) << 1
    });
    assert_eq!(result, Ok(0), "bit 0: getuid not ENOTTY, bit 1: getpid failed");
}

// ---------------------------------------------------------------------------
// A large generated profile, checked call by call against its own rules.

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `(index, op, value, value_two)`: one argument condition.
type Cond = (usize, LinuxSeccompOperator, u64, u64);

fn holds(&(index, op, value, value_two): &Cond, args: &[u64; 6]) -> bool {
    use LinuxSeccompOperator::*;
    let a = args[index];
    match op {
        ScmpCmpNe => a != value,
        ScmpCmpLt => a < value,
        ScmpCmpLe => a <= value,
        ScmpCmpEq => a == value,
        ScmpCmpGe => a >= value,
        ScmpCmpGt => a > value,
        ScmpCmpMaskedEq => a & value == value_two,
    }
}

/// Runs every probe through `call` in a filtered child; returns the outcomes
/// (`0` for allowed, else the errno). The results travel through a shared
/// mapping, since the child must not allocate.
fn probe_in_kernel(prog: &Program, probes: &[[u64; 6]], call: fn(&[u64; 6]) -> libc::c_long) -> Vec<i64> {
    let len = probes.len() * std::mem::size_of::<i64>();
    // SAFETY: a fresh anonymous shared mapping; checked for failure below.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(map, libc::MAP_FAILED, "mmap: {}", std::io::Error::last_os_error());
    let out = map.cast::<i64>();
    let result = in_child(|| {
        if let Some(code) = enter_seccomp(prog) {
            return code;
        }
        for (i, args) in probes.iter().enumerate() {
            let r = call(args);
            let v = if r < 0 { -r } else { 0 };
            // SAFETY: `i < probes.len()`, within the mapping.
            unsafe { out.add(i).write(v) };
        }
        0
    });
    assert_eq!(result, Ok(0), "filtered child failed");
    // SAFETY: the mapping holds `probes.len()` initialized i64s (the child
    // wrote each one; unwritten ones would be zero) and is unmapped after.
    let outcomes = unsafe { std::slice::from_raw_parts(out, probes.len()) }.to_vec();
    // SAFETY: unmaps the mapping created above; `outcomes` is a copy.
    unsafe { libc::munmap(map, len) };
    outcomes
}

#[test]
fn generated_profile_in_real_kernel() {
    use LinuxSeccompAction::*;
    use LinuxSeccompOperator::*;
    let ops = [ScmpCmpNe, ScmpCmpLt, ScmpCmpLe, ScmpCmpEq, ScmpCmpGe, ScmpCmpGt, ScmpCmpMaskedEq];
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let words = [0, 1, 2, 0x7fff_ffff, 0x8000_0000, 0xffff_fffe, 0xffff_ffff];
    let value = |rng: &mut Rng| {
        let hi = if rng.below(2) == 0 { 0 } else { words[rng.below(words.len())] };
        let lo = if rng.below(3) == 0 { rng.next() & 0xffff_ffff } else { words[rng.below(words.len())] };
        (hi << 32) | lo
    };
    // getpid ignores its arguments, so any values can be passed to it. The
    // rules compare arguments 0-4 (int 0x80 below passes those), each at most
    // once per rule (no runc-style splitting). Errnos 1-299 name the rule.
    let mut rules: Vec<(u32, Vec<Cond>)> = Vec::new();
    let mut values = vec![0u64, u64::MAX];
    for i in 0..280u32 {
        let mut indexes = [0usize, 1, 2, 3, 4];
        for k in (1..indexes.len()).rev() {
            indexes.swap(k, rng.below(k + 1));
        }
        // The first condition is a selective one (a random constant), so
        // that each rule matches only a small part of the argument space.
        let conds: Vec<Cond> = indexes[..1 + rng.below(3)]
            .iter()
            .enumerate()
            .map(|(n, &index)| {
                let (op, v) = if n == 0 {
                    // Random 64- or 32-bit constants.
                    ([ScmpCmpEq, ScmpCmpMaskedEq][rng.below(2)], rng.next() >> (32 * rng.below(2)))
                } else {
                    (ops[rng.below(ops.len())], value(&mut rng))
                };
                let v2 = if op == ScmpCmpMaskedEq && rng.below(2) == 0 { v & rng.next() } else { 0 };
                values.extend([v, v2, v.wrapping_add(1), v.wrapping_sub(1)]);
                (index, op, v, v2)
            })
            .collect();
        rules.push((1 + i, conds));
    }
    let p = profile(
        ScmpActAllow,
        None,
        rules
            .iter()
            .map(|(errno, conds)| {
                let args = conds.iter().map(|&(ix, op, v, v2)| arg(ix, op, v, Some(v2))).collect();
                rule(&["getpid"], ScmpActErrno, Some(*errno), args)
            })
            .collect(),
    );
    let prog = compile(&p).unwrap();
    println!("generated profile: {} BPF instructions", prog.filter.len());
    assert!(prog.filter.len() > 1500, "{}", prog.filter.len());
    assert!(prog.filter.iter().any(|i| i.code == 0x05), "expected ja trampolines");

    // Half the probes are built to satisfy one chosen rule (an earlier one
    // may still match first), so that rules deep in the list are reached.
    let probes: Vec<[u64; 6]> = (0..4000)
        .map(|n| {
            let mut a = [0; 6];
            for x in &mut a[..5] {
                *x = if rng.below(4) == 0 { value(&mut rng) } else { values[rng.below(values.len())] };
            }
            if n % 2 == 0 {
                for &(index, op, v, v2) in &rules[rng.below(rules.len())].1 {
                    a[index] = match op {
                        ScmpCmpNe => v ^ 1,
                        ScmpCmpLt => v.saturating_sub(1),
                        ScmpCmpGt => v.saturating_add(1),
                        ScmpCmpMaskedEq => v2 | (rng.next() & !v),
                        ScmpCmpEq | ScmpCmpLe | ScmpCmpGe => v,
                    };
                }
            }
            a
        })
        .collect();
    // The first rule whose conditions hold on `args` (all 64 bits, or only the
    // low words for a 32-bit syscall) decides; no rule: allowed.
    let expect = |args: &[u64; 6]| {
        rules.iter().find(|(_, conds)| conds.iter().all(|c| holds(c, args))).map_or(0, |(e, _)| i64::from(*e))
    };

    fn getpid64(a: &[u64; 6]) -> libc::c_long {
        // SAFETY: getpid does not look at its arguments.
        let r = unsafe { libc::syscall(libc::SYS_getpid, a[0], a[1], a[2], a[3], a[4], a[5]) };
        if r == -1 {
            -libc::c_long::from(errno())
        } else {
            r
        }
    }
    let got = probe_in_kernel(&prog, &probes, getpid64);
    let mut hits = std::collections::BTreeSet::new();
    for (args, got) in probes.iter().zip(got) {
        let want = expect(args);
        assert_eq!(got, want, "x86_64 getpid{args:x?}");
        hits.insert(want);
    }
    println!("x86_64: {} probes reach {} of {} rules", probes.len(), hits.len() - 1, rules.len());
    assert!(hits.len() > 100, "probes reach only {} rules", hits.len());

    // The same rules on i386 (`int 0x80`), where only the low words count.
    // SAFETY: getpid takes no arguments.
    if in_child(|| i32::from(unsafe { int80(20, 0, 0) } == std::process::id() as i32)) != Ok(1) {
        println!("i386 part skipped: no IA32 emulation");
        return;
    }
    fn getpid32(a: &[u64; 6]) -> libc::c_long {
        let w = |i: usize| a[i] as u32;
        // SAFETY: getpid does not look at its arguments.
        libc::c_long::from(unsafe { int80_5(20, [w(0), w(1), w(2), w(3), w(4)]) })
    }
    let got = probe_in_kernel(&prog, &probes, getpid32);
    let mut hits = std::collections::BTreeSet::new();
    for (args, got) in probes.iter().zip(got) {
        let low = args.map(|a| a & 0xffff_ffff);
        let want = expect(&low);
        assert_eq!(got, want, "i386 getpid{low:x?}");
        hits.insert(want);
    }
    println!("i386: {} probes reach {} rules", probes.len(), hits.len() - 1);
}

/// A 32-bit syscall with five arguments (ebx, ecx, edx, esi, edi).
///
/// # Safety
/// The syscall must not touch memory through its arguments.
unsafe fn int80_5(nr: u32, a: [u32; 5]) -> i32 {
    let ret: i32;
    // SAFETY: as in `int80`: rbx is swapped in and out around the call, the
    // kernel preserves every register but eax (r8-r11 are zeroed).
    unsafe {
        std::arch::asm!(
            "xchg {a0:r}, rbx",
            "int 0x80",
            "xchg {a0:r}, rbx",
            a0 = inout(reg) u64::from(a[0]) => _,
            inlateout("eax") nr => ret,
            in("ecx") a[1],
            in("edx") a[2],
            in("esi") a[3],
            in("edi") a[4],
            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
        );
    }
    ret
}
