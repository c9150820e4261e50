//! Compiler from an OCI `LinuxSeccomp` to a classic BPF program (see the
//! crate documentation for the layout).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator, LinuxSyscall,
};

use crate::{
    syscalls, Error, Program, SockFilter, BPF_MAXINSNS, SECCOMP_FILTER_FLAG_LOG, SECCOMP_FILTER_FLAG_SPEC_ALLOW,
    SECCOMP_FILTER_FLAG_TSYNC,
};

// Classic BPF opcodes (linux/filter.h), only the ones the compiler emits.
const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const ALU_AND_K: u16 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const JMP_JA: u16 = 0x05; // BPF_JMP | BPF_JA
const JMP_JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JMP_JGT_K: u16 = 0x25; // BPF_JMP | BPF_JGT | BPF_K
const JMP_JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K

// struct seccomp_data (little endian): nr, arch, instruction_pointer, args[6].
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARGS: u32 = 16;

const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_KILL_THREAD: u32 = 0x0000_0000;
const RET_TRAP: u32 = 0x0003_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_TRACE: u32 = 0x7ff0_0000;
const RET_LOG: u32 = 0x7ffc_0000;
const RET_ALLOW: u32 = 0x7fff_0000;

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// Compiles `seccomp` into a BPF program for the running architecture.
///
/// Only x86_64 is supported; see the crate documentation for the semantics
/// (rule order, argument comparisons, i386/x32 handling).
pub fn compile(seccomp: &LinuxSeccomp) -> Result<Program, Error> {
    if cfg!(target_arch = "x86_64") {
        compile_x86_64(seccomp)
    } else {
        Err(Error::UnsupportedArch(std::env::consts::ARCH))
    }
}

/// Comparison operator of one argument condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Op {
    Ne,
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
    MaskedEq,
}

impl From<LinuxSeccompOperator> for Op {
    fn from(op: LinuxSeccompOperator) -> Self {
        match op {
            LinuxSeccompOperator::ScmpCmpNe => Op::Ne,
            LinuxSeccompOperator::ScmpCmpLt => Op::Lt,
            LinuxSeccompOperator::ScmpCmpLe => Op::Le,
            LinuxSeccompOperator::ScmpCmpEq => Op::Eq,
            LinuxSeccompOperator::ScmpCmpGe => Op::Ge,
            LinuxSeccompOperator::ScmpCmpGt => Op::Gt,
            LinuxSeccompOperator::ScmpCmpMaskedEq => Op::MaskedEq,
        }
    }
}

/// `args[index] <op> value`; for `MaskedEq`, `(args[index] & value) == value_two`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Cond {
    index: u8,
    op: Op,
    value: u64,
    value_two: u64,
}

/// One rule as it applies to one syscall: if the conditions
/// `pool[start..start + len]` all hold, return `action`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct Rule {
    action: u32,
    start: u32,
    len: u32,
}

impl Rule {
    fn conds<'a>(&self, pool: &'a [Cond]) -> &'a [Cond] {
        pool.get(self.start as usize..(self.start + self.len) as usize).unwrap_or_default()
    }
}

/// The rules of one architecture, as flat lists (few allocations: this runs
/// on every container start).
struct Section {
    /// 64-bit arguments (x86_64) or 32-bit ones (i386).
    wide: bool,
    /// Conditions referenced by the rules.
    pool: Vec<Cond>,
    /// `(syscall number, rule)` in profile order.
    rules: Vec<(u16, Rule)>,
}

impl Section {
    fn new(wide: bool) -> Self {
        Section { wide, pool: Vec::new(), rules: Vec::new() }
    }
}

fn compile_x86_64(seccomp: &LinuxSeccomp) -> Result<Program, Error> {
    let default =
        action_value(seccomp.default_action(), seccomp.default_errno_ret(), || "defaultErrnoRet".to_string())?;
    let flags = seccomp.flags().iter().flatten().fold(0, |acc, f| {
        acc | match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => SECCOMP_FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            // Only meaningful together with a notification listener.
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => 0,
        }
    });
    let arches = seccomp.architectures().as_deref().unwrap_or_default();
    let with_i386 = arches.contains(&Arch::ScmpArchX86);
    // ABIs without rules of their own (x32, foreign arches, i386 unless listed)
    // get the default action, unless that would let a deny-list be bypassed.
    let other = match default {
        RET_ALLOW | RET_LOG => RET_ERRNO | ENOSYS,
        _ => default,
    };

    let mut native = Section::new(true);
    let mut i386 = Section::new(false);
    // Conditions of the current entry as written, then its rules as they apply
    // to 64-bit and to 32-bit syscalls.
    let mut raw_pool = Vec::new();
    let (mut raw, mut rules64, mut rules32) = (Vec::new(), Vec::new(), Vec::new());
    for (i, syscall) in seccomp.syscalls().iter().flatten().enumerate() {
        raw_pool.clear();
        raw.clear();
        rules64.clear();
        rules32.clear();
        parse_rules(i, syscall, &mut raw_pool, &mut raw)?;
        rules64.extend(raw.iter().filter_map(|r| narrow_rule(r, &raw_pool, &mut native.pool, u64::MAX)));
        if with_i386 {
            let max = u64::from(u32::MAX);
            rules32.extend(raw.iter().filter_map(|r| narrow_rule(r, &raw_pool, &mut i386.pool, max)));
        }
        for name in syscall.names() {
            let Some((nr64, nr32)) = syscalls::find(name) else {
                continue;
            };
            if nr64 != syscalls::NONE {
                native.rules.extend(rules64.iter().map(|&r| (nr64, r)));
            }
            if nr32 != syscalls::NONE {
                i386.rules.extend(rules32.iter().map(|&r| (nr32, r)));
            }
        }
    }

    // Emitted back to front: the i386 section ends up last, the header first.
    let mut asm = Asm { rev: Vec::with_capacity(512), ..Asm::default() };
    let i386_entry = if with_i386 {
        let tree = section(&mut asm, i386, default);
        Some(asm.ld(OFF_NR, tree))
    } else {
        None
    };
    let tree = section(&mut asm, native, default);
    let x32 = asm.ret(other);
    let native_entry = asm.jump(JMP_JGE_K, X32_SYSCALL_BIT, x32, tree);
    let native_entry = asm.ld(OFF_NR, native_entry);
    let foreign = asm.ret(other);
    let not_native = match i386_entry {
        Some(entry) => asm.jump(JMP_JEQ_K, AUDIT_ARCH_I386, entry, foreign),
        None => foreign,
    };
    let start = asm.jump(JMP_JEQ_K, AUDIT_ARCH_X86_64, native_entry, not_native);
    asm.ld(OFF_ARCH, start);

    let filter = asm.finish();
    if filter.len() > BPF_MAXINSNS {
        return Err(Error::TooLarge { len: filter.len() });
    }
    Ok(Program { filter, flags })
}

/// The seccomp return value of an OCI action (runc's mapping: `SCMP_ACT_KILL`
/// kills the thread; `ERRNO` and `TRACE` default to `EPERM`).
fn action_value(
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    what: impl FnOnce() -> String,
) -> Result<u32, Error> {
    let data = || match errno_ret {
        None => Ok(EPERM),
        Some(v) if v <= 0xffff => Ok(v),
        Some(value) => Err(Error::ErrnoRange { what: what(), value }),
    };
    Ok(match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => RET_KILL_THREAD,
        LinuxSeccompAction::ScmpActKillProcess => RET_KILL_PROCESS,
        LinuxSeccompAction::ScmpActTrap => RET_TRAP,
        LinuxSeccompAction::ScmpActErrno => RET_ERRNO | data()?,
        LinuxSeccompAction::ScmpActTrace => RET_TRACE | data()?,
        LinuxSeccompAction::ScmpActLog => RET_LOG,
        LinuxSeccompAction::ScmpActAllow => RET_ALLOW,
        LinuxSeccompAction::ScmpActNotify => return Err(Error::NotifyUnsupported),
    })
}

/// Validates `syscalls[i]`, adds its conditions to `pool` and its rules to
/// `out` (more than one only when an argument is compared twice, which runc
/// splits into ORed rules).
fn parse_rules(i: usize, syscall: &LinuxSyscall, pool: &mut Vec<Cond>, out: &mut Vec<Rule>) -> Result<(), Error> {
    let names = syscall.names();
    let Some(first) = names.first() else {
        return Err(Error::EmptyNames { rule: i });
    };
    if names.iter().any(String::is_empty) {
        return Err(Error::EmptyName { rule: i });
    }
    let action = action_value(syscall.action(), syscall.errno_ret(), || format!("syscalls[{i}] ({first})"))?;
    let start = pool.len();
    let mut seen = 0u8;
    let mut repeated = false;
    for arg in syscall.args().iter().flatten() {
        let index = match u8::try_from(arg.index()) {
            Ok(ix) if ix <= 5 => ix,
            _ => {
                pool.truncate(start);
                return Err(Error::ArgIndex { rule: i, name: first.clone(), index: arg.index() });
            }
        };
        repeated |= seen & (1 << index) != 0;
        seen |= 1 << index;
        pool.push(Cond { index, op: arg.op().into(), value: arg.value(), value_two: arg.value_two().unwrap_or(0) });
    }
    // Profiles are far below 2^32 conditions; `Vec` would fail first.
    let (start, end) = (start as u32, pool.len() as u32);
    if repeated {
        out.extend((start..end).map(|s| Rule { action, start: s, len: 1 }));
    } else {
        out.push(Rule { action, start, len: end - start });
    }
    Ok(())
}

/// The rule as it applies to a syscall whose arguments range over `0..=max`
/// (`u64::MAX`, or `u32::MAX` for a 32-bit syscall, which only sees the low
/// words): conditions that always hold are dropped, a rule with a condition
/// that can never hold disappears, the rest compare `value & max`. The
/// remaining conditions are appended to `out`.
fn narrow_rule(rule: &Rule, pool: &[Cond], out: &mut Vec<Cond>, max: u64) -> Option<Rule> {
    let start = out.len();
    for &c in rule.conds(pool) {
        match fold(&c, max) {
            Some(true) => {}
            Some(false) => {
                out.truncate(start);
                return None;
            }
            None => out.push(Cond { value: c.value & max, ..c }),
        }
    }
    // Profiles are far below 2^32 conditions; `Vec` would fail first.
    Some(Rule { action: rule.action, start: start as u32, len: (out.len() - start) as u32 })
}

/// `Some(true)` if `c` holds for every argument in `0..=max`, `Some(false)` if
/// for none, `None` if it has to be compared.
fn fold(c: &Cond, max: u64) -> Option<bool> {
    let v = c.value;
    match c.op {
        Op::Eq => (v > max).then_some(false),
        Op::Ne => (v > max).then_some(true),
        Op::Gt => (v >= max).then_some(false),
        Op::Ge if v == 0 => Some(true),
        Op::Ge => (v > max).then_some(false),
        Op::Lt if v == 0 => Some(false),
        Op::Lt => (v > max).then_some(true),
        Op::Le => (v >= max).then_some(true),
        // Bits of `value_two` outside the mask can never be matched; with an
        // empty mask (and so `value_two` 0) it always matches.
        Op::MaskedEq if c.value_two & !(v & max) != 0 => Some(false),
        Op::MaskedEq => (v & max == 0).then_some(true),
    }
}

/// The rules of one syscall that can decide anything: nothing after an
/// unconditional rule is reachable (first match wins), and trailing rules
/// that return the default action change nothing.
fn effective(mut rules: &[Rule], default: u32) -> &[Rule] {
    if let Some(p) = rules.iter().position(|r| r.len == 0) {
        rules = &rules[..=p];
    }
    while let [rest @ .., last] = rules {
        if last.action != default {
            break;
        }
        rules = rest;
    }
    rules
}

/// Emits the decision blocks for one architecture and the binary search over
/// syscall numbers that leads to them. Expects the number in A; returns the
/// entry of the search.
fn section(asm: &mut Asm, sec: Section, default: u32) -> Label {
    // Counting sort by syscall number; stable, so each syscall's rules stay
    // in profile order: rules of `nr` are `sorted[starts[nr]..starts[nr + 1]]`.
    let len = sec.rules.iter().map(|&(nr, _)| usize::from(nr) + 1).max().unwrap_or(0);
    let mut starts = vec![0; len + 1];
    for &(nr, _) in &sec.rules {
        starts[usize::from(nr) + 1] += 1;
    }
    for i in 1..starts.len() {
        starts[i] += starts[i - 1];
    }
    let mut fill = starts.clone();
    let mut sorted = vec![Rule::default(); sec.rules.len()];
    for &(nr, rule) in &sec.rules {
        let at = &mut fill[usize::from(nr)];
        sorted[*at] = rule;
        *at += 1;
    }

    let default_label = asm.ret(default);
    let mut blocks: Map<&[Rule], Label> = Map::default();
    // (first syscall number, decision) for each run of numbers with the same
    // decision; the first run starts at 0.
    let mut ranges = vec![(0, default_label)];
    for (nr, bounds) in starts.windows(2).enumerate() {
        let group = effective(&sorted[bounds[0]..bounds[1]], default);
        let label = match group {
            [] => continue,
            [rule] if rule.len == 0 => asm.ret(rule.action),
            _ => match blocks.get(group) {
                Some(&label) => label,
                None => {
                    let label = asm.decision(group, &sec.pool, default, sec.wide);
                    blocks.insert(group, label);
                    label
                }
            },
        };
        // Syscall numbers are below 1024.
        set_range(&mut ranges, nr as u32, label);
        set_range(&mut ranges, nr as u32 + 1, default_label);
    }
    asm.tree(&ranges)
}

/// Makes numbers from `start` on (until the next range) go to `label`.
fn set_range(ranges: &mut Vec<(u32, Label)>, start: u32, label: Label) {
    match ranges.last_mut() {
        Some(last) if last.0 == start => {
            last.1 = label;
            let n = ranges.len();
            if n >= 2 && ranges[n - 2].1 == label {
                ranges.pop();
            }
        }
        Some(last) if last.1 == label => {}
        _ => ranges.push((start, label)),
    }
}

/// Hash map with a cheap hasher: the keys are small integers and rule lists
/// from the profile, and SipHash showed up in profiles of this hot path.
type Map<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// The Fx hash (rustc's): one rotate, xor and multiply per word.
#[derive(Default)]
struct FxHasher(u64);

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Position of an instruction counted from the end of the program.
type Label = usize;

/// Largest distance at which a target is used directly; one below 255 so that
/// a second trampoline emitted for the other branch keeps it in reach.
const NEAR: usize = 254;

/// Back-to-front assembler: instructions are pushed in reverse order, so a
/// jump's targets are always already placed and its distance is known.
#[derive(Default)]
struct Asm {
    rev: Vec<SockFilter>,
    /// Nearest copy (of a `ret`) or trampoline (`ja`) for a far target.
    alias: Map<Label, Label>,
    /// The `ret` for each return value.
    rets: Map<u32, Label>,
}

impl Asm {
    /// Label the next pushed instruction will get.
    fn here(&self) -> usize {
        self.rev.len()
    }

    fn push(&mut self, code: u16, jt: u8, jf: u8, k: u32) -> Label {
        self.rev.push(SockFilter { code, jt, jf, k });
        self.rev.len() - 1
    }

    /// Distance from the next instruction to `target`.
    fn distance(&self, target: Label) -> usize {
        self.here() - target - 1
    }

    fn ret(&mut self, value: u32) -> Label {
        if let Some(&label) = self.rets.get(&value) {
            return label;
        }
        let label = self.push(RET_K, 0, 0, value);
        self.rets.insert(value, label);
        label
    }

    /// Makes the next instruction fall through to `next`.
    fn goto(&mut self, next: Label) {
        let distance = self.distance(next);
        if distance != 0 {
            self.push(JMP_JA, 0, 0, distance as u32);
        }
    }

    /// Whether the code at `label` does not read A before overwriting it (a
    /// `ret` or a load, possibly behind `ja`s), so that computing A just
    /// before it is useless.
    fn ignores_a(&self, mut label: Label) -> bool {
        loop {
            let insn = self.rev[label];
            match insn.code {
                RET_K | LD_W_ABS => return true,
                // A `ja k` at `label` continues at `label - k - 1`.
                JMP_JA => label -= insn.k as usize + 1,
                _ => return false,
            }
        }
    }

    /// `A = seccomp_data[offset]`, then continue at `next`.
    fn ld(&mut self, offset: u32, next: Label) -> Label {
        if self.ignores_a(next) {
            return next;
        }
        self.goto(next);
        self.push(LD_W_ABS, 0, 0, offset)
    }

    /// `A &= k`, then continue at `next`.
    fn and(&mut self, k: u32, next: Label) -> Label {
        if k == u32::MAX || self.ignores_a(next) {
            return next;
        }
        self.goto(next);
        self.push(ALU_AND_K, 0, 0, k)
    }

    /// A label equivalent to `target` within [`NEAR`] of the next instruction.
    fn reach(&mut self, target: Label) -> Label {
        if self.distance(target) <= NEAR {
            return target;
        }
        if let Some(&alias) = self.alias.get(&target) {
            if self.distance(alias) <= NEAR {
                return alias;
            }
        }
        let insn = self.rev[target];
        let alias = if insn.code == RET_K {
            self.push(RET_K, 0, 0, insn.k)
        } else {
            let distance = self.distance(target) as u32;
            self.push(JMP_JA, 0, 0, distance)
        };
        self.alias.insert(target, alias);
        alias
    }

    /// `if A <op> k goto jt else goto jf`.
    fn jump(&mut self, code: u16, k: u32, jt: Label, jf: Label) -> Label {
        match (code, k) {
            _ if jt == jf => return jt,
            (JMP_JGE_K, 0) => return jt,
            (JMP_JGT_K, u32::MAX) => return jf,
            _ => {}
        }
        let jt = self.reach(jt);
        let jf = self.reach(jf);
        // Both are within NEAR + 1 <= 255 after at most one trampoline.
        let (dt, df) = (self.distance(jt), self.distance(jf));
        debug_assert!(dt <= 255 && df <= 255);
        self.push(code, dt as u8, df as u8, k)
    }

    /// Balanced binary search over `ranges` (sorted by first number, the
    /// first starting at 0); the syscall number is in A.
    fn tree(&mut self, ranges: &[(u32, Label)]) -> Label {
        match ranges {
            [] => self.ret(RET_KILL_PROCESS), // unreachable: callers pass at least one range
            [(_, label)] => *label,
            _ => {
                let mid = ranges.len() / 2;
                let right = self.tree(&ranges[mid..]);
                let left = self.tree(&ranges[..mid]);
                self.jump(JMP_JGE_K, ranges[mid].0, right, left)
            }
        }
    }

    /// The rules of one syscall tried in order, then the default action.
    fn decision(&mut self, rules: &[Rule], pool: &[Cond], default: u32, wide: bool) -> Label {
        let mut next = self.ret(default);
        for rule in rules.iter().rev() {
            let mut entry = self.ret(rule.action);
            for cond in rule.conds(pool).iter().rev() {
                entry = if wide { self.cond64(cond, entry, next) } else { self.cond32(cond, entry, next) };
            }
            next = entry;
        }
        next
    }

    /// 64-bit comparison: high words first, low words only when they are equal.
    fn cond64(&mut self, c: &Cond, t: Label, f: Label) -> Label {
        let lo_off = OFF_ARGS + 8 * u32::from(c.index);
        let hi_off = lo_off + 4;
        let (hi, lo) = ((c.value >> 32) as u32, c.value as u32);
        let eq = |asm: &mut Self, t: Label, f: Label| {
            let l = asm.jump(JMP_JEQ_K, lo, t, f);
            let l = asm.ld(lo_off, l);
            let h = asm.jump(JMP_JEQ_K, hi, l, f);
            asm.ld(hi_off, h)
        };
        // `args > value` (strict) or `args >= value`.
        let greater = |asm: &mut Self, strict: bool, t: Label, f: Label| {
            let op = if strict { JMP_JGT_K } else { JMP_JGE_K };
            let l = asm.jump(op, lo, t, f);
            let l = asm.ld(lo_off, l);
            // Not above `hi`: equal to it when it is 0.
            let h = if hi == 0 { l } else { asm.jump(JMP_JEQ_K, hi, l, f) };
            let h = asm.jump(JMP_JGT_K, hi, t, h);
            asm.ld(hi_off, h)
        };
        match c.op {
            Op::Eq => eq(self, t, f),
            Op::Ne => eq(self, f, t),
            Op::Gt => greater(self, true, t, f),
            Op::Ge => greater(self, false, t, f),
            Op::Lt => greater(self, false, f, t),
            Op::Le => greater(self, true, f, t),
            Op::MaskedEq => {
                let (dhi, dlo) = ((c.value_two >> 32) as u32, c.value_two as u32);
                let (mhi, mlo) = (hi, lo);
                // A datum bit outside the mask cannot match; a word with an
                // empty mask (its datum word then is 0) always does.
                if dhi & !mhi != 0 || dlo & !mlo != 0 {
                    return f;
                }
                let mut l = t;
                if mlo != 0 {
                    l = self.jump(JMP_JEQ_K, dlo, l, f);
                    l = self.and(mlo, l);
                    l = self.ld(lo_off, l);
                }
                if mhi != 0 {
                    l = self.jump(JMP_JEQ_K, dhi, l, f);
                    l = self.and(mhi, l);
                    l = self.ld(hi_off, l);
                }
                l
            }
        }
    }

    /// 32-bit comparison of the low word (values already narrowed).
    fn cond32(&mut self, c: &Cond, t: Label, f: Label) -> Label {
        let off = OFF_ARGS + 8 * u32::from(c.index);
        let v = c.value as u32;
        let l = match c.op {
            Op::Eq => self.jump(JMP_JEQ_K, v, t, f),
            Op::Ne => self.jump(JMP_JEQ_K, v, f, t),
            Op::Gt => self.jump(JMP_JGT_K, v, t, f),
            Op::Ge => self.jump(JMP_JGE_K, v, t, f),
            Op::Lt => self.jump(JMP_JGE_K, v, f, t),
            Op::Le => self.jump(JMP_JGT_K, v, f, t),
            Op::MaskedEq => {
                let l = self.jump(JMP_JEQ_K, c.value_two as u32, t, f);
                self.and(v, l)
            }
        };
        self.ld(off, l)
    }

    /// The program in execution order.
    fn finish(mut self) -> Vec<SockFilter> {
        self.rev.reverse();
        self.rev
    }
}
