//! Runs compiled programs in a small classic-BPF interpreter and compares every
//! decision with an independent reading of Docker's JSON profile; checks
//! argument comparisons, long jumps and errors.
#![cfg(target_arch = "x86_64")]

use berth_seccomp::{compile, default_profile, Error, Program, SockFilter};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};
use serde_json::Value;

const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
const AUDIT_ARCH_AARCH64: u32 = 0xC000_00B7;
const X32_BIT: i32 = 0x4000_0000;

const RET_ALLOW: u32 = 0x7fff_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

use berth_seccomp::DOCKER_DEFAULT_CAPS as DOCKER_CAPS;

// ---------------------------------------------------------------------------
// Classic BPF interpreter (the subset seccomp allows, minus the X register).

#[derive(Clone, Copy, Debug)]
struct Data {
    nr: i32,
    arch: u32,
    ip: u64,
    args: [u64; 6],
}

impl Data {
    fn new(arch: u32, nr: i32, args: [u64; 6]) -> Self {
        Data { nr, arch, ip: 0x7fff_dead_beef, args }
    }

    fn bytes(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[0..4].copy_from_slice(&self.nr.to_le_bytes());
        b[4..8].copy_from_slice(&self.arch.to_le_bytes());
        b[8..16].copy_from_slice(&self.ip.to_le_bytes());
        for (i, a) in self.args.iter().enumerate() {
            b[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        b
    }
}

/// Checks what the kernel's verifier checks that matters here: known opcodes,
/// in-bounds jumps and loads, a `ret` at the end.
fn verify(prog: &[SockFilter]) {
    assert!(!prog.is_empty() && prog.len() <= 4096, "length {}", prog.len());
    assert_eq!(prog.last().map(|i| i.code), Some(0x06), "must end with ret");
    for (pc, i) in prog.iter().enumerate() {
        let after = pc + 1;
        match i.code {
            0x20 => assert!(i.k % 4 == 0 && i.k < 64, "bad load at {pc}"),
            0x54 | 0x06 => {}
            0x05 => assert!(after + (i.k as usize) < prog.len(), "ja out of range at {pc}"),
            0x15 | 0x25 | 0x35 | 0x45 => {
                assert!(after + usize::from(i.jt.max(i.jf)) < prog.len(), "jump out at {pc}")
            }
            c => panic!("unexpected opcode {c:#x} at {pc}"),
        }
    }
}

fn run(prog: &[SockFilter], d: &Data) -> u32 {
    run_counted(prog, d).0
}

/// The return value and the number of instructions executed.
fn run_counted(prog: &[SockFilter], d: &Data) -> (u32, usize) {
    let mem = d.bytes();
    let mut a: u32 = 0;
    let mut pc = 0usize;
    let mut steps = 0;
    loop {
        let i = prog[pc];
        pc += 1;
        steps += 1;
        match i.code {
            0x20 => {
                let k = i.k as usize;
                a = u32::from_le_bytes(mem[k..k + 4].try_into().unwrap());
            }
            0x54 => a &= i.k,
            0x05 => pc += i.k as usize,
            0x15 | 0x25 | 0x35 | 0x45 => {
                let taken = match i.code {
                    0x15 => a == i.k,
                    0x25 => a > i.k,
                    0x35 => a >= i.k,
                    _ => a & i.k != 0,
                };
                pc += usize::from(if taken { i.jt } else { i.jf });
            }
            0x06 => return (i.k, steps),
            c => panic!("unexpected opcode {c:#x}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Oracle: Docker's JSON read directly, first matching entry wins.

fn docker_json() -> Value {
    serde_json::from_str(include_str!("../profiles/docker-default.json")).unwrap()
}

fn kernel() -> (u64, u64) {
    let rel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut it = rel.trim().split(['.', '-']);
    (it.next().unwrap().parse().unwrap(), it.next().unwrap().parse().unwrap())
}

fn action_ret(action: &str, errno: Option<u64>) -> u32 {
    let data = errno.unwrap_or(1) as u32;
    match action {
        "SCMP_ACT_ALLOW" => RET_ALLOW,
        "SCMP_ACT_ERRNO" => RET_ERRNO | data,
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => 0,
        "SCMP_ACT_KILL_PROCESS" => 0x8000_0000,
        "SCMP_ACT_TRAP" => 0x0003_0000,
        "SCMP_ACT_TRACE" => 0x7ff0_0000 | data,
        "SCMP_ACT_LOG" => 0x7ffc_0000,
        a => panic!("unknown action {a}"),
    }
}

fn arg_holds(op: &str, arg: u64, value: u64, value_two: u64) -> bool {
    match op {
        "SCMP_CMP_NE" => arg != value,
        "SCMP_CMP_LT" => arg < value,
        "SCMP_CMP_LE" => arg <= value,
        "SCMP_CMP_EQ" => arg == value,
        "SCMP_CMP_GE" => arg >= value,
        "SCMP_CMP_GT" => arg > value,
        "SCMP_CMP_MASKED_EQ" => arg & value == value_two,
        o => panic!("unknown op {o}"),
    }
}

struct Oracle {
    json: Value,
    kernel: (u64, u64),
}

impl Oracle {
    fn new() -> Self {
        Oracle { json: docker_json(), kernel: kernel() }
    }

    /// The action Docker's profile gives syscall `name` with `args` on amd64.
    /// `bits32`: the syscall is a 32-bit one and only sees the low words.
    fn expect(&self, caps: &[&str], name: &str, args: &[u64; 6], bits32: bool) -> u32 {
        let has = |c: &Value| caps.contains(&c.as_str().unwrap());
        let strs = |v: &Value| v.as_array().cloned().unwrap_or_default();
        let kernel_ge = |v: &Value| {
            let (maj, min) = v.as_str().unwrap().split_once('.').unwrap();
            self.kernel >= (maj.parse().unwrap(), min.parse().unwrap())
        };
        for e in self.json["syscalls"].as_array().unwrap() {
            let inc = &e["includes"];
            let exc = &e["excludes"];
            if strs(&exc["arches"]).iter().any(|a| a == "amd64")
                || strs(&exc["caps"]).iter().any(has)
                || (!exc["minKernel"].is_null() && kernel_ge(&exc["minKernel"]))
            {
                continue;
            }
            let arches = strs(&inc["arches"]);
            if (!arches.is_empty() && !arches.iter().any(|a| a == "amd64"))
                || !strs(&inc["caps"]).iter().all(has)
                || (!inc["minKernel"].is_null() && !kernel_ge(&inc["minKernel"]))
            {
                continue;
            }
            if !strs(&e["names"]).iter().any(|n| n == name) {
                continue;
            }
            let matches = strs(&e["args"]).iter().all(|a| {
                let ix = a["index"].as_u64().unwrap() as usize;
                let arg = if bits32 { args[ix] & 0xffff_ffff } else { args[ix] };
                let v2 = a["valueTwo"].as_u64().unwrap_or(0);
                arg_holds(a["op"].as_str().unwrap(), arg, a["value"].as_u64().unwrap(), v2)
            });
            if matches {
                return action_ret(e["action"].as_str().unwrap(), e["errnoRet"].as_u64());
            }
        }
        self.default()
    }

    fn default(&self) -> u32 {
        action_ret(self.json["defaultAction"].as_str().unwrap(), self.json["defaultErrnoRet"].as_u64())
    }
}

fn caps(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn with_sys_admin() -> Vec<&'static str> {
    let mut c = DOCKER_CAPS.to_vec();
    c.push("CAP_SYS_ADMIN");
    c
}

/// Argument values around every constant in Docker's profile, with and
/// without high bits.
fn interesting_values() -> Vec<u64> {
    let mut v = vec![
        0,
        1,
        2,
        8,
        0x11,
        37,
        38,
        39,
        40,
        41,
        0x2_0000,
        0x2_0008,
        0x2_0011,
        0x1000_0000,
        0x4000_0000,
        0x7E02_0000,
        0xffff_ffff,
        0x1_0000_0000,
        0x1_0000_0008,
        0x1_ffff_ffff,
        0xffff_ffff_0000_0000,
        0x8000_0000_0000_0000,
        u64::MAX,
    ];
    let mut extra: Vec<u64> = v.iter().map(|x| x | (1 << 40)).collect();
    v.append(&mut extra);
    v
}

fn profile_program(caps_list: &[&str]) -> Program {
    let p = compile(&default_profile(&caps(caps_list))).unwrap();
    verify(&p.filter);
    p
}

// ---------------------------------------------------------------------------
// Docker's default profile, exhaustively.

fn check_profile_against_json(caps_list: &[&str]) {
    let oracle = Oracle::new();
    let prog = profile_program(caps_list);
    let values = interesting_values();
    let mut checked = 0;
    for (name, nr) in berth_seccomp::x86_64_syscalls() {
        for &v in &values {
            let args = [v; 6];
            let got = run(&prog.filter, &Data::new(AUDIT_ARCH_X86_64, nr as i32, args));
            let want = oracle.expect(caps_list, name, &args, false);
            assert_eq!(got, want, "x86_64 {name} ({nr}) args {v:#x}: got {got:#x}, want {want:#x}");
            checked += 1;
        }
    }
    for (name, nr) in berth_seccomp::i386_syscalls() {
        for &v in &values {
            let args = [v; 6];
            let got = run(&prog.filter, &Data::new(AUDIT_ARCH_I386, nr as i32, args));
            let want = oracle.expect(caps_list, name, &args, true);
            assert_eq!(got, want, "i386 {name} ({nr}) args {v:#x}: got {got:#x}, want {want:#x}");
            checked += 1;
        }
    }
    // Unknown numbers, x32 and foreign architectures: the default action.
    let default = oracle.default();
    assert_eq!(default, RET_ERRNO | EPERM);
    for nr in [471, 500, 511, 512, 547, 1000, 4095, 0x3fff_ffff, i32::MAX, -1, i32::MIN] {
        let got = run(&prog.filter, &Data::new(AUDIT_ARCH_X86_64, nr, [0; 6]));
        assert_eq!(got, default, "unknown x86_64 nr {nr}");
    }
    for nr in [471, 1000, -1] {
        let got = run(&prog.filter, &Data::new(AUDIT_ARCH_I386, nr, [0; 6]));
        assert_eq!(got, default, "unknown i386 nr {nr}");
    }
    for (_, nr) in berth_seccomp::x86_64_syscalls() {
        let x32 = Data::new(AUDIT_ARCH_X86_64, nr as i32 | X32_BIT, [0; 6]);
        assert_eq!(run(&prog.filter, &x32), default, "x32 {nr}");
        let foreign = Data::new(AUDIT_ARCH_AARCH64, nr as i32, [0; 6]);
        assert_eq!(run(&prog.filter, &foreign), default, "aarch64 {nr}");
    }
    assert!(checked > 19_000);
}

#[test]
fn docker_profile_matches_json_default_caps() {
    check_profile_against_json(DOCKER_CAPS);
}

#[test]
fn docker_profile_matches_json_with_sys_admin() {
    check_profile_against_json(&with_sys_admin());
}

#[test]
fn docker_profile_size() {
    for c in [DOCKER_CAPS.to_vec(), with_sys_admin()] {
        let prog = profile_program(&c);
        println!("docker default profile ({} caps): {} BPF instructions", c.len(), prog.filter.len());
        assert!(prog.filter.len() < 1024, "{}", prog.filter.len());
        assert_eq!(prog.flags, 0);
        // Instructions executed per syscall: the header, the search tree, and
        // argument checks only where the profile has them.
        let mut longest = (0, "");
        let mut plain = 0;
        for (name, nr) in berth_seccomp::x86_64_syscalls() {
            let (ret, steps) = run_counted(&prog.filter, &Data::new(AUDIT_ARCH_X86_64, nr as i32, [0; 6]));
            longest = longest.max((steps, name));
            if ret == RET_ALLOW && !["personality", "socket", "clone"].contains(&name) {
                plain = plain.max(steps);
            }
        }
        println!("  x86_64: at most {plain} instructions per plain syscall, {longest:?} at most");
        assert!(plain <= 14, "{plain}");
        assert!(longest.0 <= 30, "{longest:?}");
    }
}

fn nr(name: &str) -> i32 {
    berth_seccomp::syscall_number(name).unwrap() as i32
}

fn x64(prog: &Program, name: &str, args: [u64; 6]) -> u32 {
    run(&prog.filter, &Data::new(AUDIT_ARCH_X86_64, nr(name), args))
}

fn i386(prog: &Program, name: &str, args: [u64; 6]) -> u32 {
    let n = berth_seccomp::i386_syscall_number(name).unwrap() as i32;
    run(&prog.filter, &Data::new(AUDIT_ARCH_I386, n, args))
}

const DENY: u32 = RET_ERRNO | EPERM;

#[test]
fn docker_profile_argument_rules() {
    let user = profile_program(DOCKER_CAPS);
    let admin = profile_program(&with_sys_admin());
    let a0 = |v: u64| [v, 0, 0, 0, 0, 0];

    // personality: 0, PER_LINUX32 (8), UNAME26 (0x20000), both, and 0xffffffff (query).
    for v in [0, 8, 0x2_0000, 0x2_0008, 0xffff_ffff] {
        assert_eq!(x64(&user, "personality", a0(v)), RET_ALLOW, "personality({v:#x})");
        assert_eq!(i386(&user, "personality", a0(v)), RET_ALLOW, "i386 personality({v:#x})");
    }
    for v in [1, 0x40_0000, 0x1_0000_0008, u64::MAX] {
        assert_eq!(x64(&user, "personality", a0(v)), DENY, "personality({v:#x})");
    }
    // On i386 only the low word is passed to the syscall.
    assert_eq!(i386(&user, "personality", a0(0x1_0000_0008)), RET_ALLOW);
    assert_eq!(i386(&user, "personality", a0(u64::MAX)), RET_ALLOW);
    assert_eq!(i386(&user, "personality", a0(0x4_0000_0001)), DENY);

    // socket: every family but AF_VSOCK (40) and AF_KCM... i.e. not 38 or 40.
    for v in [1, 2, 10, 16, 17, 37, 39, 41, 45] {
        assert_eq!(x64(&user, "socket", a0(v)), RET_ALLOW, "socket({v})");
    }
    for v in [38, 40] {
        assert_eq!(x64(&user, "socket", a0(v)), DENY, "socket({v})");
    }
    // 64-bit compare: a high word makes the value > 40.
    assert_eq!(x64(&user, "socket", a0(0x1_0000_0026)), RET_ALLOW);

    // clone: namespace flags need CAP_SYS_ADMIN.
    const CLONE_NEWNS: u64 = 0x2_0000;
    const CLONE_NEWUSER: u64 = 0x1000_0000;
    const SIGCHLD: u64 = 17;
    const CLONE_THREAD_FLAGS: u64 = 0x3d0f00;
    for v in [SIGCHLD, CLONE_THREAD_FLAGS, 0, 0x1_0000_0000 | SIGCHLD] {
        assert_eq!(x64(&user, "clone", a0(v)), RET_ALLOW, "clone({v:#x})");
        assert_eq!(i386(&user, "clone", a0(v)), RET_ALLOW, "i386 clone({v:#x})");
    }
    for v in [CLONE_NEWNS | SIGCHLD, CLONE_NEWUSER, 0x4000_0000, 0x7E02_0000] {
        assert_eq!(x64(&user, "clone", a0(v)), DENY, "clone({v:#x})");
        assert_eq!(i386(&user, "clone", a0(v)), DENY, "i386 clone({v:#x})");
        assert_eq!(x64(&admin, "clone", a0(v)), RET_ALLOW, "admin clone({v:#x})");
    }
    assert_eq!(x64(&user, "clone3", a0(0)), RET_ERRNO | ENOSYS);
    assert_eq!(x64(&admin, "clone3", a0(0)), RET_ALLOW);

    for name in ["mount", "umount2", "unshare", "setns", "bpf", "pivot_root"] {
        assert_eq!(x64(&user, name, a0(0)), DENY, "{name}");
    }
    for name in ["mount", "umount2", "unshare", "setns"] {
        assert_eq!(x64(&admin, name, a0(0)), RET_ALLOW, "admin {name}");
    }
    for name in ["keyctl", "add_key", "request_key", "kexec_load", "io_uring_setup", "userfaultfd"] {
        assert_eq!(x64(&user, name, a0(0)), DENY, "{name}");
        assert_eq!(x64(&admin, name, a0(0)), DENY, "admin {name}");
    }
    for name in ["read", "write", "getpid", "execve", "exit_group", "arch_prctl", "ptrace"] {
        assert_eq!(x64(&user, name, a0(0)), RET_ALLOW, "{name}");
    }
    for name in ["socketcall", "_llseek", "mmap2", "getpid", "set_thread_area"] {
        assert_eq!(i386(&user, name, a0(0)), RET_ALLOW, "i386 {name}");
    }
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
    s.set_names(caps(names)).set_action(action).set_errno_ret(errno).set_args(if args.is_empty() {
        None
    } else {
        Some(args)
    });
    s
}

fn profile(default: LinuxSeccompAction, arches: &[Arch], rules: Vec<LinuxSyscall>) -> LinuxSeccomp {
    let mut p = LinuxSeccomp::default();
    p.set_default_action(default)
        .set_default_errno_ret(None)
        .set_architectures(if arches.is_empty() { None } else { Some(arches.to_vec()) })
        .set_syscalls(Some(rules));
    p
}

const OPS: [(LinuxSeccompOperator, &str); 7] = [
    (LinuxSeccompOperator::ScmpCmpNe, "SCMP_CMP_NE"),
    (LinuxSeccompOperator::ScmpCmpLt, "SCMP_CMP_LT"),
    (LinuxSeccompOperator::ScmpCmpLe, "SCMP_CMP_LE"),
    (LinuxSeccompOperator::ScmpCmpEq, "SCMP_CMP_EQ"),
    (LinuxSeccompOperator::ScmpCmpGe, "SCMP_CMP_GE"),
    (LinuxSeccompOperator::ScmpCmpGt, "SCMP_CMP_GT"),
    (LinuxSeccompOperator::ScmpCmpMaskedEq, "SCMP_CMP_MASKED_EQ"),
];

/// Values near `v` in both words, plus extremes.
fn probes(v: u64) -> Vec<u64> {
    let (hi, lo) = (v >> 32, v & 0xffff_ffff);
    let mut out = vec![0, 1, 0xffff_ffff, 0x1_0000_0000, u64::MAX, u64::MAX - 1, 1 << 63];
    for h in [hi.wrapping_sub(1), hi, hi.wrapping_add(1), 0, 0xffff_ffff] {
        for l in [lo.wrapping_sub(1), lo, lo.wrapping_add(1), 0, 0xffff_ffff] {
            out.push(((h & 0xffff_ffff) << 32) | (l & 0xffff_ffff));
        }
    }
    out
}

#[test]
fn argument_comparisons_64bit_and_32bit() {
    let values = [
        0u64,
        1,
        5,
        0x7fff_ffff,
        0x8000_0000,
        0xffff_ffff,
        0x1_0000_0000,
        0x1_0000_0005,
        0x5_0000_0010,
        0xffff_ffff_0000_0000,
        0xdead_beef_cafe_f00d,
        u64::MAX - 1,
        u64::MAX,
    ];
    let masks = [
        (0xffff_0000_0000_00ffu64, 0x1234_0000_0000_0012u64),
        (0xffff_0000_0000_00ff, 0x1234_0000_0000_0000),
        (0xff, 0x12),
        (0x7E02_0000, 0),
        (0xffff_ffff_0000_0000, 0x1_0000_0000),
        (0xf, 0x10), // datum outside the mask: never matches
    ];
    for (op, op_name) in OPS {
        let cases: Vec<(u64, Option<u64>)> = if op == LinuxSeccompOperator::ScmpCmpMaskedEq {
            masks.iter().map(|&(m, d)| (m, Some(d))).collect()
        } else {
            values.iter().map(|&v| (v, None)).collect()
        };
        for (value, value_two) in cases {
            for index in [0usize, 3, 5] {
                let p = profile(
                    LinuxSeccompAction::ScmpActErrno,
                    &[Arch::ScmpArchX86_64, Arch::ScmpArchX86],
                    vec![rule(
                        &["getpid"],
                        LinuxSeccompAction::ScmpActAllow,
                        None,
                        vec![arg(index, op, value, value_two)],
                    )],
                );
                let prog = compile(&p).unwrap();
                verify(&prog.filter);
                let mut probe_values = probes(value);
                probe_values.extend(value_two.map(probes).unwrap_or_default());
                for a in probe_values {
                    let mut args = [0x5555_5555_5555_5555u64; 6];
                    args[index] = a;
                    let v2 = value_two.unwrap_or(0);
                    let want64 = if arg_holds(op_name, a, value, v2) { RET_ALLOW } else { DENY };
                    let got = run(&prog.filter, &Data::new(AUDIT_ARCH_X86_64, 39, args));
                    assert_eq!(got, want64, "x86_64 {op_name} arg{index}={a:#x} value={value:#x} v2={v2:#x}");
                    let want32 = if arg_holds(op_name, a & 0xffff_ffff, value, v2) { RET_ALLOW } else { DENY };
                    let got = run(&prog.filter, &Data::new(AUDIT_ARCH_I386, 20, args));
                    assert_eq!(got, want32, "i386 {op_name} arg{index}={a:#x} value={value:#x} v2={v2:#x}");
                }
            }
        }
    }
}

#[test]
fn rules_and_conditions_order() {
    use LinuxSeccompAction::*;
    use LinuxSeccompOperator::*;
    let p = profile(
        ScmpActErrno,
        &[],
        vec![
            rule(&["getpid"], ScmpActErrno, Some(5), vec![arg(0, ScmpCmpEq, 1, None)]),
            rule(
                &["getpid", "gettid"],
                ScmpActAllow,
                None,
                vec![arg(1, ScmpCmpEq, 2, None), arg(2, ScmpCmpNe, 3, None)],
            ),
            rule(&["getpid"], ScmpActTrace, Some(7), vec![arg(0, ScmpCmpEq, 1, None)]), // shadowed
            rule(&["gettid"], ScmpActKillProcess, None, vec![]),
            rule(&["gettid"], ScmpActAllow, None, vec![]), // unreachable
            // runc: two conditions on the same argument are ORed.
            rule(&["getppid"], ScmpActAllow, None, vec![arg(0, ScmpCmpEq, 10, None), arg(0, ScmpCmpEq, 20, None)]),
            rule(&["no_such_syscall_anywhere"], ScmpActAllow, None, vec![]),
            rule(&["uname"], ScmpActTrap, None, vec![]),
            rule(&["sync"], ScmpActLog, None, vec![]),
            rule(&["kill"], ScmpActKill, None, vec![]),
            rule(&["tkill"], ScmpActKillThread, None, vec![]),
            rule(&["tgkill"], ScmpActTrace, None, vec![]),
            rule(&["umask"], ScmpActErrno, None, vec![]),
        ],
    );
    let prog = compile(&p).unwrap();
    verify(&prog.filter);
    let call = |name: &str, a: [u64; 3]| x64(&prog, name, [a[0], a[1], a[2], 0, 0, 0]);
    assert_eq!(call("getpid", [1, 2, 0]), RET_ERRNO | 5, "first match wins");
    assert_eq!(call("getpid", [0, 2, 0]), RET_ALLOW);
    assert_eq!(call("getpid", [0, 2, 3]), DENY, "conditions are ANDed");
    assert_eq!(call("getpid", [0, 0, 0]), DENY);
    assert_eq!(call("gettid", [0, 2, 0]), RET_ALLOW);
    assert_eq!(call("gettid", [0, 0, 0]), 0x8000_0000);
    assert_eq!(call("getppid", [10, 0, 0]), RET_ALLOW);
    assert_eq!(call("getppid", [20, 0, 0]), RET_ALLOW);
    assert_eq!(call("getppid", [15, 0, 0]), DENY);
    assert_eq!(call("uname", [0; 3]), 0x0003_0000);
    assert_eq!(call("sync", [0; 3]), 0x7ffc_0000);
    assert_eq!(call("kill", [0; 3]), 0);
    assert_eq!(call("tkill", [0; 3]), 0);
    assert_eq!(call("tgkill", [0; 3]), 0x7ff0_0000 | EPERM);
    assert_eq!(call("umask", [0; 3]), DENY);
    assert_eq!(call("read", [0; 3]), DENY);
    // i386 is not listed: default action for every i386 syscall.
    assert_eq!(run(&prog.filter, &Data::new(AUDIT_ARCH_I386, 20, [0; 6])), DENY);
}

#[test]
fn conditions_that_always_or_never_hold() {
    use LinuxSeccompAction::*;
    use LinuxSeccompOperator::*;
    let both = [Arch::ScmpArchX86_64, Arch::ScmpArchX86];
    let errno = |e: u32| RET_ERRNO | e;
    // `getpid` rules, then an unconditional ERRNO(99); x86_64 and i386 alike.
    let check = |cond: LinuxSeccompArg, holds64: Option<bool>, holds32: Option<bool>| {
        let p = profile(
            ScmpActAllow,
            &both,
            vec![
                rule(&["getpid"], ScmpActErrno, Some(10), vec![cond]),
                rule(&["getpid"], ScmpActErrno, Some(99), vec![]),
            ],
        );
        let prog = compile(&p).unwrap();
        verify(&prog.filter);
        let a = [0, 1, 0xffff_ffff, 0x1_0000_0000, 0x100_0000_0000, 0x8000_0000_0000_0000, u64::MAX];
        for (arch, nr, holds) in [(AUDIT_ARCH_X86_64, 39, holds64), (AUDIT_ARCH_I386, 20, holds32)] {
            let got: Vec<u32> = a.iter().map(|&v| run(&prog.filter, &Data::new(arch, nr, [v; 6]))).collect();
            match holds {
                Some(true) => assert!(got.iter().all(|&r| r == errno(10)), "{cond:?} {arch:#x}: {got:x?}"),
                Some(false) => assert!(got.iter().all(|&r| r == errno(99)), "{cond:?} {arch:#x}: {got:x?}"),
                None => assert!(got.contains(&errno(10)) && got.contains(&errno(99)), "{cond:?}"),
            }
        }
        // A condition that always holds needs no instruction at all.
        if holds64 == Some(true) && holds32 == Some(true) {
            assert!(prog.filter.iter().all(|i| i.code != 0x20 || i.k < 16), "{cond:?} loads an argument");
        }
    };
    check(arg(0, ScmpCmpGe, 0, None), Some(true), Some(true));
    check(arg(1, ScmpCmpLt, 0, None), Some(false), Some(false));
    check(arg(2, ScmpCmpLe, u64::MAX, None), Some(true), Some(true));
    check(arg(3, ScmpCmpGt, u64::MAX, None), Some(false), Some(false));
    check(arg(4, ScmpCmpMaskedEq, 0, Some(0)), Some(true), Some(true));
    check(arg(5, ScmpCmpMaskedEq, 0xff, Some(0x100)), Some(false), Some(false));
    // Only the high word is masked: i386 never sees it.
    check(arg(0, ScmpCmpMaskedEq, 0xff00_0000_0000, Some(0)), None, Some(true));
    check(arg(0, ScmpCmpMaskedEq, 0xff00_0000_0000, Some(0x100_0000_0000)), None, Some(false));
    check(arg(0, ScmpCmpEq, 0x1_0000_0000, None), None, Some(false));
    check(arg(0, ScmpCmpNe, 0x1_0000_0000, None), None, Some(true));
    check(arg(0, ScmpCmpGe, 0x1_0000_0000, None), None, Some(false));
    check(arg(0, ScmpCmpLe, 0xffff_ffff, None), None, Some(true));
    check(arg(0, ScmpCmpGt, 0xffff_ffff, None), None, Some(false));

    // An always-true condition makes the rule unconditional: later rules for
    // the syscall are unreachable.
    let p = profile(
        ScmpActErrno,
        &[],
        vec![
            rule(&["getpid"], ScmpActAllow, None, vec![arg(0, ScmpCmpGe, 0, None)]),
            rule(&["getpid"], ScmpActErrno, Some(7), vec![arg(1, ScmpCmpEq, 5, None)]),
        ],
    );
    let prog = compile(&p).unwrap();
    assert!(prog.filter.iter().all(|i| i.code != 0x20 || i.k < 16));
    assert_eq!(run(&prog.filter, &Data::new(AUDIT_ARCH_X86_64, 39, [0, 5, 0, 0, 0, 0])), RET_ALLOW);
}

#[test]
fn deny_list_profiles_are_not_bypassed_through_other_abis() {
    use LinuxSeccompAction::*;
    let p = profile(
        ScmpActAllow,
        &[Arch::ScmpArchX86_64, Arch::ScmpArchX32],
        vec![rule(&["mount"], ScmpActErrno, None, vec![])],
    );
    let prog = compile(&p).unwrap();
    verify(&prog.filter);
    assert_eq!(x64(&prog, "mount", [0; 6]), DENY);
    assert_eq!(x64(&prog, "getpid", [0; 6]), RET_ALLOW);
    let enosys = RET_ERRNO | ENOSYS;
    assert_eq!(run(&prog.filter, &Data::new(AUDIT_ARCH_X86_64, 165 | X32_BIT, [0; 6])), enosys);
    assert_eq!(run(&prog.filter, &Data::new(AUDIT_ARCH_I386, 21, [0; 6])), enosys);
    assert_eq!(run(&prog.filter, &Data::new(AUDIT_ARCH_AARCH64, 40, [0; 6])), enosys);

    // With i386 listed, the deny-list is compiled for i386 as well.
    let p = profile(
        ScmpActAllow,
        &[Arch::ScmpArchX86_64, Arch::ScmpArchX86],
        vec![rule(&["mount"], ScmpActErrno, None, vec![])],
    );
    let prog = compile(&p).unwrap();
    assert_eq!(i386(&prog, "mount", [0; 6]), DENY);
    assert_eq!(i386(&prog, "getpid", [0; 6]), RET_ALLOW);
}

#[test]
fn long_jumps() {
    use LinuxSeccompAction::*;
    use LinuxSeccompOperator::*;
    // 300 syscalls with distinct argument rules and 150 rules on one syscall:
    // many jumps span more than 255 instructions.
    let names: Vec<&str> =
        berth_seccomp::x86_64_syscalls().map(|(n, _)| n).filter(|&n| n != "getpid").take(300).collect();
    let mut rules = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let action = if i % 3 == 0 { ScmpActAllow } else { ScmpActErrno };
        rules.push(rule(
            &[n],
            action,
            Some(i as u32 + 100),
            vec![arg(i % 6, ScmpCmpGe, i as u64 * 0x1_0000_0001, None)],
        ));
    }
    for i in 0..150u64 {
        rules.push(rule(&["getpid"], ScmpActErrno, Some(1000 + i as u32), vec![arg(1, ScmpCmpEq, i * 7, None)]));
    }
    rules.push(rule(&["getpid"], ScmpActAllow, None, vec![]));
    let p = profile(ScmpActKillProcess, &[Arch::ScmpArchX86_64, Arch::ScmpArchX86], rules);
    let prog = compile(&p).unwrap();
    verify(&prog.filter);
    assert!(prog.filter.len() > 2000, "{}", prog.filter.len());
    assert!(prog.filter.iter().any(|i| i.code == 0x05), "expected ja trampolines");

    let getpid = berth_seccomp::syscall_number("getpid").unwrap();
    for (i, n) in names.iter().enumerate() {
        let nr = berth_seccomp::syscall_number(n).unwrap();
        let v = i as u64 * 0x1_0000_0001;
        for (a, hit) in [(v, true), (v.wrapping_sub(1), i == 0), (u64::MAX, true)] {
            let mut args = [0; 6];
            args[i % 6] = a;
            let want = if !hit {
                0x8000_0000
            } else if i % 3 == 0 {
                RET_ALLOW
            } else {
                RET_ERRNO | (i as u32 + 100)
            };
            assert_eq!(run(&prog.filter, &Data::new(AUDIT_ARCH_X86_64, nr as i32, args)), want, "{n} arg={a:#x}");
        }
    }
    for i in 0..150u64 {
        let args = [u64::MAX, i * 7, 0, 0, 0, 0];
        let want = RET_ERRNO | (1000 + i as u32);
        assert_eq!(run(&prog.filter, &Data::new(AUDIT_ARCH_X86_64, getpid as i32, args)), want);
        let i386_getpid = berth_seccomp::i386_syscall_number("getpid").unwrap() as i32;
        assert_eq!(run(&prog.filter, &Data::new(AUDIT_ARCH_I386, i386_getpid, args)), want);
    }
    let args = [u64::MAX, 3, 0, 0, 0, 0];
    assert_eq!(run(&prog.filter, &Data::new(AUDIT_ARCH_X86_64, getpid as i32, args)), RET_ALLOW);
}

// ---------------------------------------------------------------------------
// Random profiles against a direct evaluation of the OCI rules.

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

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    fn value(&mut self) -> u64 {
        let words = [0, 1, 2, 0x7fff_ffff, 0x8000_0000, 0xffff_fffe, 0xffff_ffff];
        let hi = if self.below(2) == 0 { 0 } else { self.pick(&words) };
        let lo = if self.below(3) == 0 { self.next() & 0xffff_ffff } else { self.pick(&words) };
        (hi << 32) | lo
    }
}

fn action_of(a: LinuxSeccompAction, errno: Option<u32>) -> u32 {
    let name = serde_json::to_value(a).unwrap();
    action_ret(name.as_str().unwrap(), errno.map(u64::from))
}

/// What the profile says for one syscall, read straight from the OCI structure.
fn evaluate(p: &LinuxSeccomp, d: &Data) -> u32 {
    let default = action_of(p.default_action(), p.default_errno_ret());
    let other = match default {
        0x7fff_0000 | 0x7ffc_0000 => RET_ERRNO | ENOSYS,
        _ => default,
    };
    let arches = p.architectures().clone().unwrap_or_default();
    let (name, bits32) = match d.arch {
        // x32 (bit 30) and anything above it is not an x86_64 syscall.
        AUDIT_ARCH_X86_64 if (d.nr as u32) < X32_BIT as u32 => (berth_seccomp::syscall_name(d.nr.into()), false),
        AUDIT_ARCH_I386 if arches.contains(&Arch::ScmpArchX86) => (berth_seccomp::i386_syscall_name(d.nr.into()), true),
        _ => return other,
    };
    let Some(name) = name else { return default };
    for r in p.syscalls().iter().flatten() {
        if !r.names().iter().any(|n| n == name) {
            continue;
        }
        let args = r.args().clone().unwrap_or_default();
        let holds = |a: &LinuxSeccompArg| {
            let arg = if bits32 { d.args[a.index()] & 0xffff_ffff } else { d.args[a.index()] };
            let op = serde_json::to_value(a.op()).unwrap();
            arg_holds(op.as_str().unwrap(), arg, a.value(), a.value_two().unwrap_or(0))
        };
        let mut indexes: Vec<usize> = args.iter().map(|a| a.index()).collect();
        indexes.sort_unstable();
        let repeated = indexes.windows(2).any(|w| w[0] == w[1]);
        // runc: a rule comparing one argument twice becomes one rule per comparison.
        let matched = if repeated { args.iter().any(holds) } else { args.iter().all(holds) };
        if matched {
            return action_of(r.action(), r.errno_ret());
        }
    }
    default
}

#[test]
fn random_profiles_match_direct_evaluation() {
    use LinuxSeccompAction::*;
    use LinuxSeccompOperator::*;
    let actions = [
        ScmpActAllow,
        ScmpActErrno,
        ScmpActErrno,
        ScmpActKillProcess,
        ScmpActTrap,
        ScmpActLog,
        ScmpActTrace,
        ScmpActKill,
    ];
    let ops = [ScmpCmpNe, ScmpCmpLt, ScmpCmpLe, ScmpCmpEq, ScmpCmpGe, ScmpCmpGt, ScmpCmpMaskedEq];
    let names: Vec<&str> = berth_seccomp::x86_64_syscalls()
        .chain(berth_seccomp::i386_syscalls())
        .map(|(n, _)| n)
        .chain(["no_such_syscall", "cacheflush"])
        .collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut longest = 0;
    for round in 0..300 {
        let size = if round % 3 == 0 { 1 + rng.below(10) } else { 1 + rng.below(400) };
        // Mostly few distinct names per profile: many rules per syscall, long
        // decision chains; sometimes many names: large search trees.
        let spread = if round % 4 == 3 { 700 } else { 60 };
        let pool: Vec<&str> = (0..1 + rng.below(spread)).map(|_| rng.pick(&names)).collect();
        let mut rules = Vec::new();
        let mut values = vec![0, u64::MAX];
        for _ in 0..size {
            let rule_names: Vec<&str> = (0..1 + rng.below(3)).map(|_| rng.pick(&pool)).collect();
            let args: Vec<LinuxSeccompArg> = (0..rng.below(4))
                .map(|_| {
                    let (v, v2) = (rng.value(), rng.value());
                    values.extend([v, v2, v.wrapping_add(1), v.wrapping_sub(1), v2 & v]);
                    let op = rng.pick(&ops);
                    let v2 = (op == ScmpCmpMaskedEq && rng.below(2) == 0).then_some(v2 & v);
                    arg(rng.below(6), op, v, v2)
                })
                .collect();
            let errno = (rng.below(2) == 0).then(|| rng.below(4096) as u32);
            rules.push(rule(&rule_names, rng.pick(&actions), errno, args));
        }
        let default = rng.pick(&[ScmpActErrno, ScmpActErrno, ScmpActAllow, ScmpActKillProcess, ScmpActLog]);
        let arches: &[Arch] = if rng.below(3) == 0 { &[] } else { &[Arch::ScmpArchX86_64, Arch::ScmpArchX86] };
        let mut p = profile(default, arches, rules);
        p.set_default_errno_ret((rng.below(2) == 0).then(|| rng.below(200) as u32));
        let prog = match compile(&p) {
            Ok(prog) => prog,
            Err(Error::TooLarge { .. }) => continue,
            Err(e) => panic!("round {round}: {e}"),
        };
        verify(&prog.filter);
        longest = longest.max(prog.filter.len());
        for name in &pool {
            let targets = [
                (AUDIT_ARCH_X86_64, berth_seccomp::syscall_number(name)),
                (AUDIT_ARCH_I386, berth_seccomp::i386_syscall_number(name)),
            ];
            for (arch, nr) in targets {
                let Some(nr) = nr else { continue };
                for _ in 0..40 {
                    let mut args = [0; 6];
                    for a in &mut args {
                        *a = if rng.below(4) == 0 { rng.value() } else { rng.pick(&values) };
                    }
                    let d = Data::new(arch, nr as i32, args);
                    let (got, want) = (run(&prog.filter, &d), evaluate(&p, &d));
                    assert_eq!(got, want, "round {round}: {name} on {arch:#x} with {args:x?}");
                }
            }
        }
        // Every number, including those no rule names, on every arch.
        for nr in (0..1100).chain([0x3fff_ffff, 0x4000_0001, i32::MAX, -1, i32::MIN]) {
            for arch in [AUDIT_ARCH_X86_64, AUDIT_ARCH_I386, AUDIT_ARCH_AARCH64] {
                let d = Data::new(arch, nr, [rng.pick(&values); 6]);
                assert_eq!(run(&prog.filter, &d), evaluate(&p, &d), "round {round}: {d:?}");
            }
        }
        for d in [
            Data::new(AUDIT_ARCH_X86_64, 39 | X32_BIT, [0; 6]),
            Data::new(AUDIT_ARCH_X86_64, i32::MIN | 39, [0; 6]),
            Data::new(AUDIT_ARCH_X86_64, 3000, [0; 6]),
            Data::new(AUDIT_ARCH_I386, 20, [0; 6]),
            Data::new(AUDIT_ARCH_AARCH64, 172, [0; 6]),
        ] {
            assert_eq!(run(&prog.filter, &d), evaluate(&p, &d), "round {round}: {d:?}");
        }
    }
    assert!(longest > 1000, "{longest}");
}

#[test]
fn flags() {
    let mut p = default_profile(&caps(DOCKER_CAPS));
    p.set_flags(Some(vec![
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync,
        LinuxSeccompFilterFlag::SeccompFilterFlagLog,
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow,
    ]));
    assert_eq!(compile(&p).unwrap().flags, 7);
}

// ---------------------------------------------------------------------------
// Errors.

fn err(p: &LinuxSeccomp) -> String {
    let e = compile(p).unwrap_err();
    let s = e.to_string();
    assert!(!s.contains('\n'), "{s}");
    s
}

#[test]
fn errors() {
    use LinuxSeccompAction::*;
    use LinuxSeccompOperator::*;
    let allow = |r| profile(ScmpActErrno, &[], vec![r]);

    let p = allow(rule(&["getpid"], ScmpActNotify, None, vec![]));
    assert_eq!(compile(&p), Err(Error::NotifyUnsupported));
    assert_eq!(err(&p), "seccomp: SCMP_ACT_NOTIFY is not supported");
    // Also for names unknown on x86_64, and as the default action.
    assert_eq!(
        err(&allow(rule(&["cacheflush"], ScmpActNotify, None, vec![]))),
        "seccomp: SCMP_ACT_NOTIFY is not supported"
    );
    assert_eq!(err(&profile(ScmpActNotify, &[], vec![])), "seccomp: SCMP_ACT_NOTIFY is not supported");

    let p = allow(rule(&["socket"], ScmpActAllow, None, vec![arg(6, ScmpCmpEq, 1, None)]));
    assert_eq!(err(&p), "seccomp: syscalls[0] (socket): argument index 6 is out of range 0-5");

    let p = allow(rule(&[], ScmpActAllow, None, vec![]));
    assert_eq!(err(&p), "seccomp: syscalls[0]: \"names\" is empty");
    let p = allow(rule(&["read", ""], ScmpActAllow, None, vec![]));
    assert_eq!(err(&p), "seccomp: syscalls[0]: empty syscall name");

    let p = allow(rule(&["read"], ScmpActErrno, Some(70_000), vec![]));
    assert_eq!(err(&p), "seccomp: syscalls[0] (read): errno 70000 is out of range 0-65535");
    let mut p = profile(ScmpActErrno, &[], vec![]);
    p.set_default_errno_ret(Some(1 << 20));
    assert_eq!(err(&p), "seccomp: defaultErrnoRet: errno 1048576 is out of range 0-65535");

    // The later rules are validated too.
    let p = profile(
        ScmpActErrno,
        &[],
        vec![
            rule(&["read"], ScmpActAllow, None, vec![]),
            rule(&["write"], ScmpActAllow, None, vec![arg(9, ScmpCmpEq, 1, None)]),
        ],
    );
    assert_eq!(err(&p), "seccomp: syscalls[1] (write): argument index 9 is out of range 0-5");
}

// ---------------------------------------------------------------------------
// Timing (cargo test --release -p berth-seccomp -- --nocapture timing).

#[test]
fn timing_default_profile_and_compile() {
    use std::time::{Duration, Instant};
    let c = caps(DOCKER_CAPS);
    let t = Instant::now();
    let first = compile(&default_profile(&c)).unwrap();
    let cold = t.elapsed();
    // Best batch of several: the machine may be busy with other builds.
    let best = |f: &mut dyn FnMut()| {
        (0..20)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..20 {
                    f();
                }
                t.elapsed() / 20
            })
            .min()
            .unwrap_or(Duration::ZERO)
    };
    let both = best(&mut || {
        let p = default_profile(&c);
        assert_eq!(compile(&p).unwrap().filter.len(), first.filter.len());
    });
    let profile_only = best(&mut || {
        std::hint::black_box(default_profile(&c));
    });
    let p = default_profile(&c);
    let compile_only = best(&mut || {
        std::hint::black_box(compile(&p).unwrap());
    });
    println!(
        "timing: first call (parses the JSON) {cold:?}; then default_profile+compile {both:?} \
         (default_profile {profile_only:?}, compile {compile_only:?})"
    );
}
