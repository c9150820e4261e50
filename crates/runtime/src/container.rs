//! Container lifecycle: create, start, run, exec, kill, delete, pause, resume.
//!
//! Process tree of `create` (see ARCHITECTURE.md):
//!
//! ```text
//! berth (parent) --fork--> stage-1 --setns/unshare, fork--> init (pid 1 of the container)
//!   writes id maps,          exits after reporting          mounts, pivot_root, user, caps,
//!   joins cgroups,           init's host pid                seccomp; blocks on exec.fifo;
//!   runs createRuntime hooks                                 execs the user process
//! ```

use crate::channel::{tag, Channel};
use crate::error::{Context, Error, Result};
use crate::process::{self, Prepared};
use crate::rootfs::Rootfs;
use crate::spec::{self, ns_flag, ns_proc_name};
use crate::state::{now_rfc3339, State, StateDir, Status};
use crate::{bail, hooks, sys};
use berth_cgroups::Manager;
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Spec};
use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

/// Options shared by `create` and `run`.
#[derive(Default, Clone)]
pub struct CreateOpts {
    pub root: PathBuf,
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: u32,
    pub no_pivot: bool,
    /// `run --detach`: return once the process has started.
    pub detach: bool,
    /// `run`: once the process has started (exec done, poststart hooks run), its pid and a
    /// newline are written to this fd, which is then closed (the engine's monitor learns that
    /// the start succeeded while `run` goes on waiting).
    pub notify_started: Option<RawFd>,
}

/// How the init learns that it may exec the user process.
enum StartVia {
    /// `create`: block opening exec.fifo until `start` reads it.
    Fifo(OwnedFd),
    /// `run`: wait for a START message on the channel.
    Channel,
}

struct Launch<'a> {
    id: &'a str,
    spec: &'a Spec,
    bundle: &'a Path,
    rootfs: PathBuf,
    join: Vec<(LinuxNamespaceType, OwnedFd)>,
    new_flags: libc::c_int,
    new_userns: bool,
    userns: bool,
    prepared: Prepared,
    cgroup_mounts: Vec<(String, PathBuf)>,
    console: Option<OwnedFd>,
    no_pivot: bool,
    preserve_fds: u32,
    start_via: StartVia,
}

/// Own a raw fd just returned by the kernel.
pub(crate) fn owned(fd: RawFd) -> OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: callers pass a descriptor the kernel just created for us.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let tmp = path.with_extension("berth-tmp");
    std::fs::write(&tmp, pid.to_string()).ctx(format!("write pid file {}", tmp.display()))?;
    std::fs::rename(&tmp, path).ctx(format!("write pid file {}", path.display()))
}

fn effective_seccomp(spec: &Spec) -> Result<Option<berth_seccomp::Program>> {
    match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(s) => Ok(Some(berth_seccomp::compile(s)?)),
        None => Ok(None),
    }
}

/// Keep fds 3..3+n occupied so none of our own descriptors land there and leak.
fn reserve_preserved(n: u32) -> Result<()> {
    for fd in 3..3 + n as RawFd {
        // SAFETY: F_GETFD on an fd number only queries it.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            let null = sys::open(&sys::cstring("/dev/null")?, libc::O_RDWR, 0).ctx("open /dev/null")?;
            sys::dup2(null.as_raw_fd(), fd).ctx("reserve preserved fd")?;
        }
        sys::set_cloexec(fd, false).ctx("preserve fd")?;
    }
    Ok(())
}

fn connect_console(path: &Path) -> Result<OwnedFd> {
    let s = std::os::unix::net::UnixStream::connect(path)
        .map_err(|e| Error::os(format!("connect to console socket {}", path.display()), e))?;
    Ok(OwnedFd::from(s))
}

/// Resources with the default device rules appended as runc does.
///
/// dockerd and podman send a device list that starts with "deny all" and count on the runtime
/// to allow the devices it creates itself (runc's `AllowedDevices`) and the spec's
/// `linux.devices`; the defaults go last so that they win over the spec's rules.
fn effective_resources(spec: &Spec) -> Option<oci_spec::runtime::LinuxResources> {
    use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};
    let linux = spec.linux().as_ref()?;
    let mut r = linux.resources().clone()?;
    let Some(mut rules) = r.devices().clone().filter(|d| !d.is_empty()) else {
        return Some(r);
    };
    let rule = |typ: LinuxDeviceType, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut d = LinuxDeviceCgroup::default();
        d.set_allow(true);
        d.set_typ(Some(typ));
        d.set_major(major);
        d.set_minor(minor);
        d.set_access(Some(access.to_string()));
        d
    };
    for d in linux.devices().iter().flatten() {
        let typ = match d.typ() {
            LinuxDeviceType::B => LinuxDeviceType::B,
            LinuxDeviceType::P => continue, // FIFOs are not subject to the device controller
            _ => LinuxDeviceType::C,
        };
        rules.push(rule(typ, Some(d.major()), Some(d.minor()), "rwm"));
    }
    use LinuxDeviceType::{B, C};
    rules.push(rule(C, None, None, "m"));
    rules.push(rule(B, None, None, "m"));
    for (major, minor) in [(1, Some(3)), (1, Some(8)), (1, Some(7)), (5, Some(0)), (1, Some(5)), (1, Some(9))] {
        rules.push(rule(C, Some(major), minor, "rwm"));
    }
    rules.push(rule(C, Some(136), None, "rwm")); // /dev/pts/*
    rules.push(rule(C, Some(5), Some(2), "rwm")); // /dev/ptmx
    rules.push(rule(C, Some(10), Some(200), "rwm")); // /dev/net/tun
    r.set_devices(Some(rules));
    Some(r)
}

/// `create`: set everything up and leave the init blocked until `start`.
pub fn create(opts: &CreateOpts) -> Result<State> {
    launch(opts, false).map(|(st, _, _)| st)
}

/// `run`: create + start, wait for the process and return its exit code (after delete).
pub fn run(opts: &CreateOpts) -> Result<i32> {
    run_outcome(opts).map(|o| o.code)
}

/// How a container run by [`run_outcome`] ended.
pub struct Outcome {
    pub code: i32,
    /// The kernel's OOM killer killed a process in the container's cgroup.
    pub oom_killed: bool,
}

/// [`run`], also telling whether the OOM killer struck (read before the cgroup goes).
pub fn run_outcome(opts: &CreateOpts) -> Result<Outcome> {
    let detach = opts.detach;
    if !detach {
        // Orphans of the container (and its init, once stage-1 exits) are reparented to us.
        sys::prctl(libc::PR_SET_CHILD_SUBREAPER, 1).ctx("prctl(PR_SET_CHILD_SUBREAPER)")?;
    }
    let (st, chan, relay_end) = launch(opts, true)?;
    let sd = StateDir::path(&opts.root, &opts.id)?;
    let chan = chan.expect("run mode keeps the channel");
    let spec = spec::load(&sd.dir)?;
    let relay = match &relay_end {
        Some(fd) => match crate::tty::Relay::start(fd) {
            Ok(r) => Some(r),
            Err(e) => {
                let _ = destroy(&sd, &st, &spec, true);
                return Err(e);
            }
        },
        None => None,
    };
    // Block forwarded signals before the process can exit, so SIGCHLD is not lost.
    let sigset = if detach { None } else { Some(block_signals()) };
    chan.send(tag::START, "")?;
    // EOF = exec succeeded; an ERROR message = it failed.
    match chan.recv()? {
        None => {}
        Some((tag::ERROR, msg)) => {
            let _ = destroy(&sd, &st, &spec, true);
            return Err(Error::new(msg));
        }
        Some(_) => {}
    }
    let mut st = st;
    st.started = true;
    sd.save(&st)?;
    let state_json = st.oci_json(Status::Running).to_string();
    if let Err(e) = hooks::run("poststart", spec.hooks().as_ref().and_then(|h| h.poststart().as_ref()), &state_json) {
        let _ = destroy(&sd, &st, &spec, true);
        return Err(e);
    }
    if let Some(fd) = opts.notify_started {
        let line = format!("{}\n", st.pid);
        // SAFETY: the caller handed us this fd to write the pid to and close.
        unsafe {
            libc::write(fd, line.as_ptr() as *const libc::c_void, line.len());
            libc::close(fd);
        }
    }
    if detach {
        return Ok(Outcome { code: 0, oom_killed: false });
    }
    let code = wait_forwarding(st.pid, sigset.as_ref().expect("blocked"), relay.as_ref());
    drop(relay);
    let oom_killed = Manager::from_state(st.cgroup.clone()).oom_kills() > 0;
    destroy(&sd, &st, &spec, true)?;
    Ok(Outcome { code, oom_killed })
}

fn block_signals() -> libc::sigset_t {
    // SAFETY: plain sigset manipulation on a local; sigprocmask with valid pointers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        for s in [libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE, libc::SIGKILL, libc::SIGSTOP] {
            libc::sigdelset(&mut set, s);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Wait for `pid` (our child or reparented to us), forwarding signals to it; reap other orphans.
pub fn wait_forwarding(pid: i32, set: &libc::sigset_t, relay: Option<&crate::tty::Relay>) -> i32 {
    loop {
        // Reap whatever has exited.
        loop {
            match sys::waitpid(-1, libc::WNOHANG) {
                Ok((0, _)) | Err(_) => break,
                Ok((p, status)) if p == pid => return sys::exit_code(status),
                Ok(_) => {}
            }
        }
        // SAFETY: zeroed siginfo is a valid out-buffer; set is a valid sigset.
        let sig = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::sigwaitinfo(set, &mut info)
        };
        if sig < 0 || sig == libc::SIGCHLD {
            continue;
        }
        if sig == libc::SIGWINCH {
            if let Some(r) = relay {
                r.resize();
                continue;
            }
        }
        let _ = sys::kill(pid, sig);
    }
}

type Launched = (State, Option<Channel>, Option<OwnedFd>);

fn launch(opts: &CreateOpts, run_mode: bool) -> Result<Launched> {
    let bundle = opts.bundle.canonicalize().map_err(|e| Error::os(format!("bundle {}", opts.bundle.display()), e))?;
    crate::state::validate_id(&opts.id)?;
    let spec = spec::load(&bundle)?;
    spec::validate(&spec)?;
    let rootfs = spec::rootfs_path(&spec, &bundle)?;
    let process = spec.process().as_ref().expect("validated");
    let terminal = process.terminal().unwrap_or(false);
    if terminal && opts.console_socket.is_none() && (!run_mode || opts.detach) {
        bail!("process.terminal is set: --console-socket is required when detached");
    }
    if !terminal && opts.console_socket.is_some() {
        bail!("--console-socket given but process.terminal is false");
    }
    let linux = spec.linux().as_ref().expect("validated");
    let resources = effective_resources(&spec);
    let mut cg = Manager::new(linux.cgroups_path().as_deref(), &opts.id)?;
    if let Some(r) = &resources {
        cg.validate(r)?;
    }
    let seccomp = effective_seccomp(&spec)?;
    let prepared = Prepared::new(process, seccomp)?;
    reserve_preserved(opts.preserve_fds)?;

    let mut join = Vec::new();
    let mut new_flags = 0;
    let mut new_userns = false;
    for ns in linux.namespaces().iter().flatten() {
        match ns.path() {
            Some(p) => {
                let f = std::fs::File::open(p).map_err(|e| {
                    Error::os(format!("{} namespace path {}", spec::ns_spec_name(ns.typ()), p.display()), e)
                })?;
                join.push((ns.typ(), OwnedFd::from(f)));
            }
            None if ns.typ() == LinuxNamespaceType::User => new_userns = true,
            None => new_flags |= ns_flag(ns.typ()),
        }
    }
    // Join the user namespace first: it grants the rights to join the others.
    join.sort_by_key(|(t, _)| (*t != LinuxNamespaceType::User, *t == LinuxNamespaceType::Mount));
    let userns = new_userns || join.iter().any(|(t, _)| *t == LinuxNamespaceType::User);
    let own_pidns = new_flags & libc::CLONE_NEWPID != 0 || join.iter().any(|(t, _)| *t == LinuxNamespaceType::Pid);
    let mut relay_end = None;
    let console = match &opts.console_socket {
        Some(p) => Some(connect_console(p)?),
        None if terminal => {
            let (ours, theirs) = crate::tty::console_pair()?;
            relay_end = Some(ours);
            Some(theirs)
        }
        None => None,
    };

    // From here on, failures must undo what was made.
    let sd = StateDir::create(&opts.root, &opts.id)?;
    let mut st = State {
        id: opts.id.clone(),
        pid: 0,
        pid_start: 0,
        bundle: bundle.clone(),
        rootfs: rootfs.clone(),
        created: now_rfc3339(),
        owner: String::new(),
        annotations: spec.annotations().clone().unwrap_or_default().into_iter().collect::<BTreeMap<_, _>>(),
        cgroup: cg.state(),
        own_pidns,
        started: false,
    };
    let undo = |st: &State, err: Error| -> Error {
        if st.pid > 0 {
            let _ = sys::kill(st.pid, libc::SIGKILL);
        }
        let mgr = Manager::from_state(st.cgroup.clone());
        if st.pid > 0 {
            wait_gone(st.pid, st.pid_start);
        }
        let _ = mgr.destroy();
        let _ = sd.remove();
        err
    };
    let result = (|| -> Result<Option<Channel>> {
        std::fs::write(sd.config(), serde_json::to_vec(&spec).map_err(|e| Error::new(e.to_string()))?)
            .ctx("save config.json")?;
        cg.create()?;
        st.cgroup = cg.state();
        if let Some(r) = &resources {
            cg.apply(r)?;
        }
        let start_via = if run_mode {
            StartVia::Channel
        } else {
            let fifo = sys::cstr(&sd.fifo())?;
            // SAFETY: mkfifo with a valid C string.
            sys::check(unsafe { libc::mkfifo(fifo.as_ptr(), 0o622) }).ctx("create exec.fifo")?;
            // The process umask (often 022) masks the mode: set it exactly, so that an init running
            // as a non-root user without CAP_DAC_OVERRIDE can still open the fifo for writing.
            sys::chmod(&fifo, 0o622).ctx("chmod exec.fifo")?;
            let root_uid = host_root_id(linux.uid_mappings().as_deref());
            let root_gid = host_root_id(linux.gid_mappings().as_deref());
            sys::chown(&fifo, root_uid, root_gid).ctx("chown exec.fifo")?;
            StartVia::Fifo(sys::open(&sys::cstr(&sd.dir)?, libc::O_PATH | libc::O_DIRECTORY, 0).ctx("open state dir")?)
        };
        st.cgroup = cg.state();
        sd.save(&st)?;
        let launch = Launch {
            id: &opts.id,
            spec: &spec,
            bundle: &bundle,
            rootfs: rootfs.clone(),
            join,
            new_flags,
            new_userns,
            userns,
            prepared,
            cgroup_mounts: cg.container_mounts(),
            console,
            no_pivot: opts.no_pivot,
            preserve_fds: opts.preserve_fds,
            start_via,
        };
        let (parent, child) = sys::seqpacket_pair().ctx("socketpair")?;
        let chan = Channel::new(parent);
        let stage1 = sys::fork().ctx("fork")?;
        if stage1 == 0 {
            drop(chan);
            let c = Channel::new(child);
            let code = match stage1_main(&launch, &c) {
                Ok(()) => 0,
                Err(e) => {
                    let _ = c.send(tag::ERROR, e.message());
                    1
                }
            };
            sys::exit_now(code);
        }
        drop(child);
        let res = parent_side(&chan, stage1, &cg, &spec, &mut st, linux);
        if res.is_err() {
            // Stage-1 may be blocked on the channel waiting for us: never wait on it alive.
            let _ = sys::kill(stage1, libc::SIGKILL);
        }
        // Reap stage-1 in every case.
        let _ = sys::waitpid(stage1, 0);
        res?;
        Ok(Some(chan))
    })();
    match result {
        Ok(chan) => {
            sd.save(&st)?;
            if let Some(p) = &opts.pid_file {
                if let Err(e) = write_pid_file(p, st.pid) {
                    return Err(undo(&st, e));
                }
            }
            if run_mode {
                Ok((st, chan, relay_end))
            } else {
                Ok((st, None, None))
            }
        }
        Err(e) => Err(undo(&st, e)),
    }
}

fn host_root_id(maps: Option<&[LinuxIdMapping]>) -> u32 {
    maps.and_then(|m| m.iter().find(|m| m.container_id() == 0).map(|m| m.host_id())).unwrap_or(0)
}

fn write_id_maps(pid: i32, linux: &oci_spec::runtime::Linux) -> Result<()> {
    let fmt = |m: &Option<Vec<LinuxIdMapping>>| -> String {
        m.iter().flatten().map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size())).collect()
    };
    let uid = fmt(linux.uid_mappings());
    let gid = fmt(linux.gid_mappings());
    std::fs::write(format!("/proc/{pid}/uid_map"), &uid)
        .map_err(|e| Error::os(format!("write uid_map {:?}", uid.trim()), e))?;
    std::fs::write(format!("/proc/{pid}/gid_map"), &gid)
        .map_err(|e| Error::os(format!("write gid_map {:?}", gid.trim()), e))?;
    Ok(())
}

fn parent_side(
    chan: &Channel,
    stage1: i32,
    cg: &Manager,
    spec: &Spec,
    st: &mut State,
    linux: &oci_spec::runtime::Linux,
) -> Result<()> {
    cg.add_pid(stage1)?;
    chan.send(tag::GO, "")?;
    loop {
        let msg = chan.recv()?;
        match msg {
            Some((tag::USERNS, _)) => {
                write_id_maps(stage1, linux)?;
                chan.send(tag::MAPS_DONE, "")?;
            }
            Some((tag::PID, p)) => {
                let pid: i32 = p.parse().map_err(|_| Error::new("sync channel: bad pid"))?;
                st.pid = pid;
                st.pid_start = sys::proc_stat(pid).map(|s| s.0).unwrap_or(0);
            }
            Some((tag::RUN_HOOKS, _)) => {
                let json = st.oci_json(Status::Creating).to_string();
                let h = spec.hooks().as_ref();
                #[allow(deprecated)]
                hooks::run("prestart", h.and_then(|h| h.prestart().as_ref()), &json)?;
                hooks::run("createRuntime", h.and_then(|h| h.create_runtime().as_ref()), &json)?;
                chan.send(tag::HOOKS_DONE, &st.pid.to_string())?;
            }
            Some((tag::READY, _)) => return Ok(()),
            Some((tag::ERROR, m)) => return Err(Error::new(m)),
            Some((t, _)) => bail!("sync channel: unexpected message {:?}", t as char),
            None => bail!("container init exited before it was ready"),
        }
    }
}

/// Stage 1: enter namespaces, then fork the container's init.
fn stage1_main(l: &Launch, c: &Channel) -> Result<()> {
    sys::prctl(libc::PR_SET_DUMPABLE, 0).ctx("prctl(PR_SET_DUMPABLE)")?;
    c.expect(tag::GO)?;
    for (t, fd) in &l.join {
        sys::setns(fd.as_raw_fd(), ns_flag(*t))
            .map_err(|e| Error::os(format!("join {} namespace", ns_proc_name(*t)), e))?;
    }
    if l.new_userns {
        sys::unshare(libc::CLONE_NEWUSER).ctx("create user namespace")?;
        c.send(tag::USERNS, "")?;
        c.expect(tag::MAPS_DONE)?;
    }
    if l.userns {
        // Become root of the user namespace.
        // SAFETY: plain id syscalls.
        sys::check(unsafe { libc::setresgid(0, 0, 0) }).ctx("setgid 0 in user namespace")?;
        // SAFETY: as above.
        sys::check(unsafe { libc::setresuid(0, 0, 0) }).ctx("setuid 0 in user namespace")?;
    }
    if l.new_flags != 0 {
        sys::unshare(l.new_flags).ctx("create namespaces")?;
    }
    let pid = sys::fork().ctx("fork init")?;
    if pid == 0 {
        let code = match init_main(l, c) {
            Ok(never) => match never {},
            Err(e) => {
                let _ = c.send(tag::ERROR, e.message());
                1
            }
        };
        sys::exit_now(code);
    }
    c.send(tag::PID, &pid.to_string())?;
    Ok(())
}

/// The container's init: set up the root filesystem and process, wait for start, exec.
fn init_main(l: &Launch, c: &Channel) -> Result<std::convert::Infallible> {
    sys::prctl(libc::PR_SET_DUMPABLE, 0).ctx("prctl(PR_SET_DUMPABLE)")?;
    // SAFETY: setsid has no arguments; a new session for the container.
    unsafe { libc::setsid() };
    let has_mntns = l.new_flags & libc::CLONE_NEWNS != 0 || l.join.iter().any(|(t, _)| *t == LinuxNamespaceType::Mount);
    let mut rfs = Rootfs {
        spec: l.spec,
        rootfs: &l.rootfs,
        bundle: l.bundle,
        userns: l.userns,
        cgroup_mounts: &l.cgroup_mounts,
        root_fd: None,
    };
    let fresh_mntns = l.new_flags & libc::CLONE_NEWNS != 0;
    if fresh_mntns {
        rfs.prepare()?;
    }
    c.send(tag::RUN_HOOKS, "")?;
    let pid = c.expect(tag::HOOKS_DONE)?;
    let hooks = l.spec.hooks().as_ref();
    if hooks.and_then(|h| h.create_container().as_ref()).is_some() {
        let json = hook_state(l, &pid, "created");
        hooks::run("createContainer", hooks.and_then(|h| h.create_container().as_ref()), &json)?;
    }
    if fresh_mntns {
        rfs.pivot(l.no_pivot)?;
    } else if !has_mntns {
        bail!("config: a mount namespace is required");
    }
    if let Some(cs) = &l.console {
        process::setup_console(cs.as_raw_fd(), l.prepared.console_size, l.prepared.uid, l.prepared.gid)?;
    }
    if fresh_mntns {
        rfs.finish()?;
    }
    if let Some(h) = l.spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        // SAFETY: valid pointer/length pair.
        sys::check(unsafe { libc::sethostname(h.as_ptr().cast(), h.len()) }).ctx(format!("set hostname {h:?}"))?;
    }
    if let Some(d) = l.spec.domainname().as_deref().filter(|h| !h.is_empty()) {
        // SAFETY: valid pointer/length pair.
        sys::check(unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) }).ctx(format!("set domainname {d:?}"))?;
    }
    let p = &l.prepared;
    p.apply_oom_score()?;
    p.apply_rlimits()?;
    let exe = p.resolve_executable()?;
    sys::cloexec_from(3 + l.preserve_fds).ctx("close inherited fds")?;
    p.finalize()?;
    match &l.start_via {
        StartVia::Channel => {
            c.send(tag::READY, "")?;
            c.expect(tag::START)?;
        }
        StartVia::Fifo(dir) => {
            c.send(tag::READY, "")?;
            let name = sys::cstring(crate::state::FIFO_FILE)?;
            // Blocks until `start` opens the fifo for reading.
            let f = sys::openat(dir.as_raw_fd(), &name, libc::O_WRONLY, 0).ctx("open exec.fifo")?;
            sys::write_all(f.as_raw_fd(), b"0").ctx("write exec.fifo")?;
        }
    }
    if let Some(h) = hooks.and_then(|h| h.start_container().as_ref()) {
        hooks::run("startContainer", Some(h), &hook_state(l, &pid, "running"))?;
    }
    let init = l.spec.annotations().as_ref().and_then(|a| a.get(INIT_ANNOTATION)).is_some_and(|v| v == "true");
    if init {
        mini_init(c.raw_fd());
    }
    Err(p.exec(&exe))
}

/// Overwrite our command line in place (what `ps` and /proc/1/cmdline show in the
/// container): the host's paths and arguments are not the container's business.
fn set_process_title(title: &str) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return };
    // Fields after the command name (which may hold spaces) start at field 3.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else { return };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // arg_start and arg_end are fields 48 and 49 (1-based), i.e. rest[45] and rest[46].
    let (Some(start), Some(end)) =
        (f.get(45).and_then(|x| x.parse::<usize>().ok()), f.get(46).and_then(|x| x.parse::<usize>().ok()))
    else {
        return;
    };
    if end <= start {
        return;
    }
    let len = end - start;
    let bytes = title.as_bytes();
    let n = bytes.len().min(len - 1);
    // SAFETY: [arg_start, arg_end) is this process's own argument area (on its stack, writable),
    // as the kernel reports it; we write within it and end with NUL bytes.
    unsafe {
        let p = start as *mut u8;
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, n);
        std::ptr::write_bytes(p.add(n), 0, len - n);
    }
}

/// Annotation asking for a minimal init as the container's pid 1 (Docker's `--init`).
pub const INIT_ANNOTATION: &str = "berth.init";

/// `--init`: fork; the child goes on to exec the container's process, this process stays pid
/// 1, reaping every orphan and passing signals on to the child, and exits as the child does
/// (its code, or 128 + the signal that killed it), as tini does. Returns in the child only.
fn mini_init(channel_fd: RawFd) {
    // SAFETY: plain sigset manipulation on a local; sigprocmask with valid pointers.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    let child = match sys::fork() {
        Ok(0) => return, // the child execs (its signal mask is reset before exec)
        Ok(pid) => pid,
        Err(_) => return, // no init then: exec directly rather than fail the start
    };
    // Every descriptor beyond stdio goes: the start protocol waits for the sync channel's end
    // (our copy closes now, the child's at exec), the caller's status pipe likewise, and the
    // container's pid 1 must hold nothing of the host's.
    let _ = channel_fd;
    // SAFETY: close_range(3, ~0, 0) closes our own descriptors above stdio; nothing after
    // this point uses any of them.
    if unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) } != 0 {
        for fd in 3..1024 {
            // SAFETY: as above, one descriptor at a time.
            unsafe { libc::close(fd) };
        }
    }
    set_process_title("berth-init");
    loop {
        // SAFETY: a zeroed siginfo_t is a valid out-buffer; set is a valid sigset.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let sig = unsafe { libc::sigwaitinfo(&set, &mut info) };
        if sig < 0 {
            continue;
        }
        if sig != libc::SIGCHLD {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(child, sig) };
            continue;
        }
        loop {
            let mut status = 0;
            // SAFETY: waitpid with a valid status pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            if pid == child {
                let code =
                    if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 + libc::WTERMSIG(status) };
                sys::exit_now(code);
            }
        }
    }
}

fn hook_state(l: &Launch, pid: &str, status: &str) -> String {
    serde_json::json!({
        "ociVersion": "1.2.0",
        "id": l.id,
        "status": status,
        "pid": pid.parse::<i32>().unwrap_or(0),
        "bundle": l.bundle,
    })
    .to_string()
}

/// Wait until a process is gone (or a zombie), up to ~5 s.
fn wait_gone(pid: i32, start: u64) {
    for i in 0..5000 {
        match sys::proc_stat(pid) {
            Some((s, st)) if s == start && st != 'Z' && st != 'X' => {}
            _ => return,
        }
        // Our own child: reap it.
        let _ = sys::waitpid(pid, libc::WNOHANG);
        std::thread::sleep(std::time::Duration::from_micros(if i < 100 { 100 } else { 1000 }));
    }
}

/// Open a container's state.
pub fn load(root: &Path, id: &str) -> Result<(StateDir, State)> {
    let sd = StateDir::path(root, id)?;
    let st = sd.load(id)?;
    Ok((sd, st))
}

/// `start`: let a created container's init exec the user process.
pub fn start(root: &Path, id: &str) -> Result<()> {
    let (sd, mut st) = load(root, id)?;
    match st.status(&sd) {
        Status::Created => {}
        s => bail!("cannot start container {id:?}: it is {}, not created", s.as_str()),
    }
    let fifo = sys::cstr(&sd.fifo())?;
    let f = sys::open(&fifo, libc::O_RDONLY, 0).ctx("open exec.fifo")?;
    let mut b = [0u8; 1];
    let n = sys::read(f.as_raw_fd(), &mut b).ctx("read exec.fifo")?;
    let _ = std::fs::remove_file(sd.fifo());
    if n == 0 {
        bail!("cannot start container {id:?}: its init exited");
    }
    st.started = true;
    sd.save(&st)?;
    let spec = spec::parse(&std::fs::read(sd.config()).ctx("read saved config.json")?)?;
    let json = st.oci_json(Status::Running).to_string();
    hooks::run("poststart", spec.hooks().as_ref().and_then(|h| h.poststart().as_ref()), &json)?;
    Ok(())
}

/// Parse a signal given as "KILL", "SIGKILL" or "9".
pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        bail!("invalid signal {s:?}");
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    let n = match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "ILL" => libc::SIGILL,
        "TRAP" => libc::SIGTRAP,
        "ABRT" | "IOT" => libc::SIGABRT,
        "BUS" => libc::SIGBUS,
        "FPE" => libc::SIGFPE,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "SEGV" => libc::SIGSEGV,
        "USR2" => libc::SIGUSR2,
        "PIPE" => libc::SIGPIPE,
        "ALRM" => libc::SIGALRM,
        "TERM" => libc::SIGTERM,
        "STKFLT" => libc::SIGSTKFLT,
        "CHLD" => libc::SIGCHLD,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "TSTP" => libc::SIGTSTP,
        "TTIN" => libc::SIGTTIN,
        "TTOU" => libc::SIGTTOU,
        "URG" => libc::SIGURG,
        "XCPU" => libc::SIGXCPU,
        "XFSZ" => libc::SIGXFSZ,
        "VTALRM" => libc::SIGVTALRM,
        "PROF" => libc::SIGPROF,
        "WINCH" => libc::SIGWINCH,
        "IO" | "POLL" => libc::SIGIO,
        "PWR" => libc::SIGPWR,
        "SYS" => libc::SIGSYS,
        _ => {
            if let Some(rest) = name.strip_prefix("RTMIN+") {
                if let Ok(k) = rest.parse::<i32>() {
                    return Ok(libc::SIGRTMIN() + k);
                }
            }
            bail!("unknown signal {s:?}")
        }
    };
    Ok(n)
}

/// `kill`: send a signal to the init, or with `all` to every process of the container.
pub fn kill(root: &Path, id: &str, sig: i32, all: bool) -> Result<()> {
    let (sd, st) = load(root, id)?;
    let status = st.status(&sd);
    if status == Status::Stopped {
        bail!("container {id:?} is not running");
    }
    if all {
        let mgr = Manager::from_state(st.cgroup.clone());
        for p in mgr.pids()? {
            let _ = sys::kill(p, sig);
        }
        if status == Status::Paused && (sig == libc::SIGKILL || sig == libc::SIGTERM) {
            let _ = mgr.thaw();
        }
        return Ok(());
    }
    sys::kill(st.pid, sig).map_err(|e| Error::os(format!("kill container {id:?}"), e))
}

/// `delete`: remove a stopped (or, with `force`, any) container.
pub fn delete(root: &Path, id: &str, force: bool) -> Result<()> {
    let sd = StateDir::path(root, id)?;
    if force && !sd.dir.join(crate::state::STATE_FILE).exists() {
        // Like runc: `delete --force` of a container that does not exist (or whose create was
        // aborted before its state was written) succeeds and removes whatever directory is left.
        return match std::fs::remove_dir_all(&sd.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::os(format!("remove {}", sd.dir.display()), e))
            }
            _ => Ok(()),
        };
    }
    let (sd, st) = load(root, id)?;
    let status = st.status(&sd);
    match status {
        Status::Stopped | Status::Created | Status::Creating => {}
        s if !force => bail!("cannot delete container {id:?} that is not stopped: {} (use --force)", s.as_str()),
        _ => {}
    }
    let spec = std::fs::read(sd.config()).ok().and_then(|d| spec::parse(&d).ok()).unwrap_or_default();
    destroy(&sd, &st, &spec, status != Status::Stopped)
}

/// Kill what is left, run poststop hooks, remove the cgroup and the state directory.
fn destroy(sd: &StateDir, st: &State, spec: &Spec, kill_first: bool) -> Result<()> {
    let mgr = Manager::from_state(st.cgroup.clone());
    if kill_first && st.init_alive() {
        let _ = mgr.thaw();
        let _ = sys::kill(st.pid, libc::SIGKILL);
        wait_gone(st.pid, st.pid_start);
    }
    if !st.own_pidns || kill_first {
        // Without a pid namespace, children of init survive it: kill them all.
        for _ in 0..100 {
            let pids = mgr.pids().unwrap_or_default();
            if pids.is_empty() {
                break;
            }
            for p in pids {
                let _ = sys::kill(p, libc::SIGKILL);
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
    let json = st.oci_json(Status::Stopped).to_string();
    if let Err(e) = hooks::run("poststop", spec.hooks().as_ref().and_then(|h| h.poststop().as_ref()), &json) {
        eprintln!("berth: warning: {e}");
    }
    mgr.destroy()?;
    sd.remove()
}

pub fn pause(root: &Path, id: &str) -> Result<()> {
    let (sd, st) = load(root, id)?;
    match st.status(&sd) {
        Status::Running | Status::Created => {}
        s => bail!("cannot pause container {id:?}: it is {}", s.as_str()),
    }
    Manager::from_state(st.cgroup).freeze().map_err(Into::into)
}

pub fn resume(root: &Path, id: &str) -> Result<()> {
    let (sd, st) = load(root, id)?;
    match st.status(&sd) {
        Status::Paused => {}
        s => bail!("cannot resume container {id:?}: it is {}, not paused", s.as_str()),
    }
    Manager::from_state(st.cgroup).thaw().map_err(Into::into)
}

/// Every container under `root`, with its current status.
pub fn list(root: &Path) -> Result<Vec<(State, Status)>> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(root) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::os(format!("read {}", root.display()), e)),
    };
    for e in rd.flatten() {
        let id = e.file_name().to_string_lossy().into_owned();
        if let Ok((sd, st)) = load(root, &id) {
            let s = st.status(&sd);
            out.push((st, s));
        }
    }
    out.sort_by(|a, b| a.0.created.cmp(&b.0.created));
    Ok(out)
}

/// Options for `exec`.
pub struct ExecOpts {
    pub root: PathBuf,
    pub id: String,
    pub process: oci_spec::runtime::Process,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub detach: bool,
    pub preserve_fds: u32,
    /// As in [`CreateOpts::notify_started`]: the process's pid is written here, then it is closed.
    pub notify_started: Option<RawFd>,
}

/// `exec`: start another process in a running container's namespaces and cgroups.
pub fn exec(o: &ExecOpts) -> Result<i32> {
    let (sd, st) = load(&o.root, &o.id)?;
    match st.status(&sd) {
        Status::Running | Status::Created => {}
        s => bail!("cannot exec in container {:?}: it is {}", o.id, s.as_str()),
    }
    let spec = spec::parse(&std::fs::read(sd.config()).ctx("read saved config.json")?)?;
    let terminal = o.process.terminal().unwrap_or(false);
    if terminal && o.console_socket.is_none() && o.detach {
        bail!("exec --tty --detach needs --console-socket");
    }
    let seccomp = effective_seccomp(&spec)?;
    let prepared = Prepared::new(&o.process, seccomp)?;
    reserve_preserved(o.preserve_fds)?;
    // The container's namespaces: every one that differs from ours, user first, mount last.
    let mut join: Vec<(LinuxNamespaceType, OwnedFd)> = Vec::new();
    use std::os::unix::fs::MetadataExt;
    for t in [
        LinuxNamespaceType::User,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Cgroup,
        LinuxNamespaceType::Time,
        LinuxNamespaceType::Mount,
    ] {
        let name = ns_proc_name(t);
        let theirs = format!("/proc/{}/ns/{name}", st.pid);
        let (Ok(a), Ok(b)) = (std::fs::metadata(&theirs), std::fs::metadata(format!("/proc/self/ns/{name}"))) else {
            continue;
        };
        if a.ino() != b.ino() {
            let f = std::fs::File::open(&theirs).map_err(|e| Error::os(format!("open {theirs}"), e))?;
            join.push((t, OwnedFd::from(f)));
        }
    }
    let mut relay_end = None;
    let console = match &o.console_socket {
        Some(p) => Some(connect_console(p)?),
        None if terminal => {
            let (ours, theirs) = crate::tty::console_pair()?;
            relay_end = Some(ours);
            Some(theirs)
        }
        None => None,
    };
    let mgr = Manager::from_state(st.cgroup.clone());
    if !o.detach {
        sys::prctl(libc::PR_SET_CHILD_SUBREAPER, 1).ctx("prctl(PR_SET_CHILD_SUBREAPER)")?;
    }
    let (parent, child) = sys::seqpacket_pair().ctx("socketpair")?;
    let chan = Channel::new(parent);
    let stage1 = sys::fork().ctx("fork")?;
    if stage1 == 0 {
        drop(chan);
        let c = Channel::new(child);
        let r = (|| -> Result<()> {
            sys::prctl(libc::PR_SET_DUMPABLE, 0).ctx("prctl(PR_SET_DUMPABLE)")?;
            for (t, fd) in &join {
                sys::setns(fd.as_raw_fd(), ns_flag(*t))
                    .map_err(|e| Error::os(format!("join {} namespace", ns_proc_name(*t)), e))?;
            }
            let pid = sys::fork().ctx("fork")?;
            if pid == 0 {
                let r = (|| -> Result<std::convert::Infallible> {
                    sys::prctl(libc::PR_SET_DUMPABLE, 0).ctx("prctl(PR_SET_DUMPABLE)")?;
                    c.expect(tag::GO)?;
                    // SAFETY: setsid has no arguments.
                    unsafe { libc::setsid() };
                    if let Some(cs) = &console {
                        process::setup_console(cs.as_raw_fd(), prepared.console_size, prepared.uid, prepared.gid)?;
                    }
                    prepared.apply_rlimits()?;
                    let exe = prepared.resolve_executable()?;
                    sys::cloexec_from(3 + o.preserve_fds).ctx("close inherited fds")?;
                    prepared.finalize()?;
                    Err(prepared.exec(&exe))
                })();
                let Err(e) = r;
                let _ = c.send(tag::ERROR, e.message());
                sys::exit_now(1);
            }
            c.send(tag::PID, &pid.to_string())
        })();
        if let Err(e) = r {
            let _ = c.send(tag::ERROR, e.message());
            sys::exit_now(1);
        }
        sys::exit_now(0);
    }
    drop(child);
    let res = (|| -> Result<i32> {
        let pid: i32 = chan.expect(tag::PID)?.parse().map_err(|_| Error::new("sync channel: bad pid"))?;
        let _ = sys::waitpid(stage1, 0);
        mgr.add_pid(pid)?;
        let sigset = if o.detach { None } else { Some(block_signals()) };
        chan.send(tag::GO, "")?;
        match chan.recv()? {
            None => {}
            Some((tag::ERROR, m)) => {
                let _ = sys::waitpid(pid, 0);
                return Err(Error::new(m));
            }
            Some(_) => {}
        }
        if let Some(p) = &o.pid_file {
            write_pid_file(p, pid)?;
        }
        if let Some(fd) = o.notify_started {
            let line = format!("{pid}\n");
            // SAFETY: the caller handed us this fd to write the pid to and close.
            unsafe {
                libc::write(fd, line.as_ptr() as *const libc::c_void, line.len());
                libc::close(fd);
            }
        }
        if o.detach {
            return Ok(0);
        }
        let relay = match &relay_end {
            Some(fd) => Some(crate::tty::Relay::start(fd)?),
            None => None,
        };
        let code = wait_forwarding(pid, sigset.as_ref().expect("blocked"), relay.as_ref());
        drop(relay);
        Ok(code)
    })();
    let _ = sys::waitpid(stage1, libc::WNOHANG);
    res
}
