//! The last steps before `execve`, shared by a container's init and `exec`:
//! rlimits, user and groups, capabilities, no_new_privs, seccomp, cwd, fds, signals.

use crate::bail;
use crate::caps::{self, CapSets};
use crate::error::{Context, Error, Result};
use crate::spec::rlimit_resource;
use crate::sys::{self, cstr, cstring};
use oci_spec::runtime::Process;
use std::ffi::CString;
use std::path::{Path, PathBuf};

/// Everything needed to become the container process, computed before fork.
pub struct Prepared {
    pub args: Vec<CString>,
    pub env: Vec<CString>,
    pub env_path: Option<String>,
    pub argv0: String,
    pub cwd: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub umask: Option<u32>,
    pub caps: CapSets,
    pub no_new_privs: bool,
    pub seccomp: Option<berth_seccomp::Program>,
    pub rlimits: Vec<(libc::__rlimit_resource_t, u64, u64, String)>,
    pub oom_score_adj: Option<i32>,
    pub terminal: bool,
    pub console_size: Option<(u16, u16)>,
}

impl Prepared {
    pub fn new(p: &Process, seccomp: Option<berth_seccomp::Program>) -> Result<Prepared> {
        let args: Vec<String> = p.args().clone().unwrap_or_default();
        if args.is_empty() {
            bail!("config: process.args must not be empty");
        }
        let env: Vec<String> = p.env().clone().unwrap_or_default();
        let env_path = env.iter().rev().find_map(|e| e.strip_prefix("PATH=").map(str::to_string));
        let to_c = |v: &[String], what: &str| -> Result<Vec<CString>> {
            v.iter()
                .map(|s| {
                    CString::new(s.as_bytes()).map_err(|_| Error::new(format!("config: {what} contains a NUL byte")))
                })
                .collect()
        };
        Ok(Prepared {
            args: to_c(&args, "process.args")?,
            env: to_c(&env, "process.env")?,
            env_path,
            argv0: args[0].clone(),
            cwd: p.cwd().clone(),
            uid: p.user().uid(),
            gid: p.user().gid(),
            groups: p.user().additional_gids().clone().unwrap_or_default(),
            umask: p.user().umask(),
            caps: CapSets::from_spec(p.capabilities().as_ref()),
            no_new_privs: p.no_new_privileges().unwrap_or(false),
            seccomp,
            rlimits: p
                .rlimits()
                .iter()
                .flatten()
                .map(|r| (rlimit_resource(r.typ()), r.soft(), r.hard(), crate::spec::rlimit_name(r.typ())))
                .collect(),
            oom_score_adj: p.oom_score_adj(),
            terminal: p.terminal().unwrap_or(false),
            console_size: p.console_size().map(|b| (b.height() as u16, b.width() as u16)),
        })
    }

    /// Find the executable as `execvp` would, inside the (already entered) root.
    pub fn resolve_executable(&self) -> Result<CString> {
        let name = &self.argv0;
        let check = |p: &Path| -> std::io::Result<()> {
            use std::os::unix::fs::PermissionsExt;
            let m = std::fs::metadata(p)?;
            if m.is_dir() || m.permissions().mode() & 0o111 == 0 {
                return Err(std::io::Error::from_raw_os_error(libc::EACCES));
            }
            Ok(())
        };
        if name.contains('/') {
            let p = if Path::new(name).is_absolute() { PathBuf::from(name) } else { self.cwd.join(name) };
            return match check(&p) {
                Ok(()) => cstr(&p).ctx("executable path"),
                Err(e) if e.raw_os_error() == Some(libc::EACCES) => {
                    bail!("exec: {name:?}: permission denied")
                }
                Err(e) => bail!("exec: {name:?}: stat {name}: {}", io_reason(&e)),
            };
        }
        let path = self
            .env_path
            .clone()
            .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string());
        let mut denied = false;
        for dir in path.split(':') {
            let dir = if dir.is_empty() { "." } else { dir };
            let p = Path::new(dir).join(name);
            match check(&p) {
                Ok(()) => return cstr(&p).ctx("executable path"),
                Err(e) if e.raw_os_error() == Some(libc::EACCES) => denied = true,
                Err(_) => {}
            }
        }
        if denied {
            bail!("exec: {name:?}: permission denied");
        }
        bail!("exec: {name:?}: executable file not found in $PATH")
    }

    pub fn apply_rlimits(&self) -> Result<()> {
        for (res, soft, hard, name) in &self.rlimits {
            let rl = libc::rlimit { rlim_cur: *soft, rlim_max: *hard };
            // SAFETY: rl is a valid rlimit struct.
            if unsafe { libc::setrlimit(*res, &rl) } != 0 {
                return Err(Error::os(
                    format!("rlimit {name} (soft {soft}, hard {hard})"),
                    std::io::Error::last_os_error(),
                ));
            }
        }
        Ok(())
    }

    pub fn apply_oom_score(&self) -> Result<()> {
        if let Some(adj) = self.oom_score_adj {
            std::fs::write("/proc/self/oom_score_adj", adj.to_string())
                .map_err(|e| Error::os(format!("set oom_score_adj to {adj}"), e))?;
        }
        Ok(())
    }

    /// Switch user and capabilities, set cwd, no_new_privs and seccomp, in runc's order.
    pub fn finalize(&self) -> Result<()> {
        // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: do it while we still hold it.
        if !self.no_new_privs {
            if let Some(p) = &self.seccomp {
                berth_seccomp::install(p).ctx("load seccomp filter")?;
            }
        }
        caps::drop_bounding(&self.caps)?;
        sys::prctl(libc::PR_SET_KEEPCAPS, 1).ctx("prctl(PR_SET_KEEPCAPS)")?;
        // SAFETY: setgroups with a valid slice of gids.
        let r = unsafe { libc::setgroups(self.groups.len(), self.groups.as_ptr()) };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            // A user namespace with setgroups denied and no extra groups asked: fine.
            if !(self.groups.is_empty() && e.raw_os_error() == Some(libc::EPERM)) {
                return Err(Error::os("setgroups", e));
            }
        }
        // SAFETY: setresgid/setresuid with plain ids.
        sys::check(unsafe { libc::setresgid(self.gid, self.gid, self.gid) }).ctx(format!("setgid {}", self.gid))?;
        // SAFETY: as above.
        sys::check(unsafe { libc::setresuid(self.uid, self.uid, self.uid) }).ctx(format!("setuid {}", self.uid))?;
        sys::prctl(libc::PR_SET_KEEPCAPS, 0).ctx("prctl(PR_SET_KEEPCAPS)")?;
        caps::apply(&self.caps)?;
        let cwd = cstr(&self.cwd)?;
        match sys::chdir(&cwd) {
            Ok(()) => {}
            Err(e) => return Err(Error::os(format!("chdir to cwd {:?}", self.cwd), e)),
        }
        // CVE-2024-21626: the cwd must be inside the container's root.
        match std::env::current_dir() {
            Ok(p) if p.is_absolute() => {}
            _ => bail!("cwd {:?} is outside the container root", self.cwd),
        }
        if let Some(m) = self.umask {
            // SAFETY: umask only changes the process's file creation mask.
            unsafe { libc::umask(m as libc::mode_t) };
        }
        if self.no_new_privs {
            sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1).ctx("prctl(PR_SET_NO_NEW_PRIVS)")?;
            if let Some(p) = &self.seccomp {
                berth_seccomp::install(p).ctx("load seccomp filter")?;
            }
        }
        Ok(())
    }

    /// Reset signal state and exec. Returns only on failure.
    pub fn exec(&self, path: &CString) -> Error {
        reset_signals();
        let mut argv: Vec<*const libc::c_char> = self.args.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const libc::c_char> = self.env.iter().map(|a| a.as_ptr()).collect();
        envp.push(std::ptr::null());
        // SAFETY: argv/envp are NULL-terminated arrays of valid C strings that outlive the call.
        unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        let e = std::io::Error::last_os_error();
        Error::new(format!("exec: {:?}: {}", self.argv0, io_reason(&e)))
    }
}

fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    // "No such file or directory (os error 2)" -> "no such file or directory"
    let s = s.split(" (os error").next().unwrap_or(&s);
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => s.to_string(),
    }
}

/// Default dispositions and an empty mask, so the container does not inherit ours
/// (Rust ignores SIGPIPE, and the runtime may block signals it forwards).
pub fn reset_signals() {
    for sig in 1..32 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: restoring the default disposition is always valid.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    // SAFETY: an empty set; sigprocmask with valid pointers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// Open a new pty inside the container, send the master over the console socket,
/// and make the slave our stdio and controlling terminal.
pub fn setup_console(console_sock: i32, size: Option<(u16, u16)>, uid: u32, gid: u32) -> Result<()> {
    let ptmx = cstring("/dev/ptmx")?;
    let master = sys::open(&ptmx, libc::O_RDWR | libc::O_NOCTTY, 0).ctx("open /dev/ptmx")?;
    use std::os::fd::AsRawFd;
    let m = master.as_raw_fd();
    let mut unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK takes a pointer to an int.
    sys::check(unsafe { libc::ioctl(m, libc::TIOCSPTLCK, &mut unlock) }).ctx("unlock pty")?;
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes the pty number to an unsigned int.
    sys::check(unsafe { libc::ioctl(m, libc::TIOCGPTN, &mut n) }).ctx("get pty number")?;
    let slave_path = format!("/dev/pts/{n}");
    let slave =
        sys::open(&cstring(&slave_path)?, libc::O_RDWR | libc::O_NOCTTY, 0).ctx(format!("open {slave_path}"))?;
    // SAFETY: fchown on our fd; failure (e.g. unmapped ids) leaves root ownership.
    unsafe { libc::fchown(slave.as_raw_fd(), uid, gid) };
    if let Some((rows, cols)) = size {
        let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ reads a winsize struct.
        unsafe { libc::ioctl(m, libc::TIOCSWINSZ, &ws) };
    }
    // /dev/console is the pty, as runc does.
    let console = cstring("/dev/console")?;
    if std::fs::metadata("/dev").is_ok() {
        if std::fs::metadata("/dev/console").is_err() {
            let _ = std::fs::File::create("/dev/console");
        }
        let sp = cstring(&slave_path)?;
        let _ = sys::mount(Some(&sp), &console, None, libc::MS_BIND, None);
    }
    sys::send_fd(console_sock, slave_path.as_bytes(), m).ctx("send pty master over the console socket")?;
    drop(master);
    let s = slave.as_raw_fd();
    for fd in 0..3 {
        sys::dup2(s, fd).ctx("dup pty to stdio")?;
    }
    // SAFETY: TIOCSCTTY on our session's terminal; arg 0 = do not steal.
    sys::check(unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) }).ctx("set controlling terminal")?;
    Ok(())
}
