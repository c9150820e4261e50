//! The container's root filesystem: mounts, devices, pivot_root, masked and read-only paths.
//!
//! Invariant: every path inside the rootfs is resolved with `openat2(RESOLVE_IN_ROOT)`
//! from a descriptor of the rootfs, and mounts target `/proc/self/fd/N` of the resolved
//! descriptor, so a symlink in the image can never redirect a mount onto the host.

use crate::bail;
use crate::error::{Context, Error, Result};
use crate::sys::{self, cstr, cstring, RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount, Spec};
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

/// Parsed mount options.
#[derive(Default, Debug)]
pub struct MountOpts {
    pub flags: libc::c_ulong,
    pub clear: libc::c_ulong,
    pub propagation: Vec<libc::c_ulong>,
    pub data: Vec<String>,
    pub bind: bool,
}

pub fn parse_options(opts: &[String]) -> Result<MountOpts> {
    let mut m = MountOpts::default();
    for o in opts {
        let (set, clear): (libc::c_ulong, libc::c_ulong) = match o.as_str() {
            "ro" => (libc::MS_RDONLY, 0),
            "rw" => (0, libc::MS_RDONLY),
            "nosuid" => (libc::MS_NOSUID, 0),
            "suid" => (0, libc::MS_NOSUID),
            "nodev" => (libc::MS_NODEV, 0),
            "dev" => (0, libc::MS_NODEV),
            "noexec" => (libc::MS_NOEXEC, 0),
            "exec" => (0, libc::MS_NOEXEC),
            "sync" => (libc::MS_SYNCHRONOUS, 0),
            "async" => (0, libc::MS_SYNCHRONOUS),
            "dirsync" => (libc::MS_DIRSYNC, 0),
            "mand" => (libc::MS_MANDLOCK, 0),
            "nomand" => (0, libc::MS_MANDLOCK),
            "noatime" => (libc::MS_NOATIME, 0),
            "atime" => (0, libc::MS_NOATIME),
            "nodiratime" => (libc::MS_NODIRATIME, 0),
            "diratime" => (0, libc::MS_NODIRATIME),
            "relatime" => (libc::MS_RELATIME, 0),
            "norelatime" => (0, libc::MS_RELATIME),
            "strictatime" => (libc::MS_STRICTATIME, 0),
            "nostrictatime" => (0, libc::MS_STRICTATIME),
            "remount" => (libc::MS_REMOUNT, 0),
            "bind" => {
                m.bind = true;
                (libc::MS_BIND, 0)
            }
            "rbind" => {
                m.bind = true;
                (libc::MS_BIND | libc::MS_REC, 0)
            }
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable" | "runbindable" => {
                let rec = if o.starts_with('r') { libc::MS_REC } else { 0 };
                let p = match o.trim_start_matches('r') {
                    "private" => libc::MS_PRIVATE,
                    "shared" => libc::MS_SHARED,
                    "slave" => libc::MS_SLAVE,
                    _ => libc::MS_UNBINDABLE,
                };
                m.propagation.push(p | rec);
                (0, 0)
            }
            "rro" | "rrw" | "rnosuid" | "rsuid" | "rnodev" | "rdev" | "rnoexec" | "rexec" | "rnoatime" | "ratime"
            | "rrelatime" | "rnorelatime" | "rstrictatime" | "rnostrictatime" | "idmap" | "ridmap" => {
                bail!("mount option {o:?} is not supported yet")
            }
            "tmpcopyup" => bail!("mount option \"tmpcopyup\" is not supported"),
            "defaults" => (0, 0),
            other => {
                m.data.push(other.to_string());
                (0, 0)
            }
        };
        m.flags |= set;
        m.flags &= !clear;
        m.clear |= clear;
    }
    Ok(m)
}

/// Lexically clean an absolute in-container path (no `..` above the root).
fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Open `path` inside the root `root` (an O_PATH dir fd), never escaping it.
pub fn open_in_root(root: &OwnedFd, path: &Path, flags: u64) -> std::io::Result<OwnedFd> {
    let rel = clean(path);
    let rel = rel.strip_prefix("/").unwrap_or(&rel);
    let c = if rel.as_os_str().is_empty() { cstring(".")? } else { cstr(rel)? };
    sys::openat2(root.as_raw_fd(), &c, flags, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
}

/// Create every missing directory of `path` inside the root; returns an O_PATH fd of it.
pub fn mkdir_all_in_root(root: &OwnedFd, path: &Path, mode: libc::mode_t) -> Result<OwnedFd> {
    let flags = (libc::O_PATH | libc::O_DIRECTORY) as u64;
    if let Ok(fd) = open_in_root(root, path, flags) {
        return Ok(fd);
    }
    let rel = clean(path);
    let mut cur = PathBuf::from("/");
    let mut fd = open_in_root(root, &cur, flags).ctx("open rootfs")?;
    for c in rel.components().skip(1) {
        cur.push(c);
        match open_in_root(root, &cur, flags) {
            Ok(f) => fd = f,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                let name = cstr(Path::new(c.as_os_str()))?;
                match sys::mkdirat(fd.as_raw_fd(), &name, mode) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(e) => return Err(Error::os(format!("mkdir {}", cur.display()), e)),
                }
                fd = open_in_root(root, &cur, flags).ctx(format!("open {}", cur.display()))?;
            }
            Err(e) => return Err(Error::os(format!("open {}", cur.display()), e)),
        }
    }
    Ok(fd)
}

/// Make sure a regular file exists at `path` inside the root (for file bind mounts).
pub fn touch_in_root(root: &OwnedFd, path: &Path) -> Result<OwnedFd> {
    let flags = libc::O_PATH as u64;
    if let Ok(fd) = open_in_root(root, path, flags | libc::O_NOFOLLOW as u64) {
        return Ok(fd);
    }
    let p = clean(path);
    let parent = p.parent().unwrap_or(Path::new("/"));
    let dir = mkdir_all_in_root(root, parent, 0o755)?;
    let name = p.file_name().ok_or_else(|| Error::new(format!("bad mount destination {}", path.display())))?;
    let name = cstr(Path::new(name))?;
    // Reopen the parent as a real directory fd so openat can create in it.
    let dirfd = sys::open(&sys::fd_path(&dir), libc::O_DIRECTORY | libc::O_RDONLY, 0).ctx("open parent")?;
    match sys::openat(dirfd.as_raw_fd(), &name, libc::O_CREAT | libc::O_WRONLY | libc::O_NOFOLLOW, 0o644) {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
        Err(e) => return Err(Error::os(format!("create {}", path.display()), e)),
    }
    open_in_root(root, path, flags | libc::O_NOFOLLOW as u64).ctx(format!("open {}", path.display()))
}

/// Context for setting up one container's mounts (runs in the container's mount namespace).
pub struct Rootfs<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub bundle: &'a Path,
    pub userns: bool,
    /// (name under /sys/fs/cgroup, host dir) for the container's own cgroups.
    pub cgroup_mounts: &'a [(String, PathBuf)],
    pub root_fd: Option<OwnedFd>,
}

fn statvfs_flags(path: &CString) -> libc::c_ulong {
    // SAFETY: zeroed statvfs is a valid out-buffer.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: path is a valid C string, st a valid out-pointer.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return 0;
    }
    let mut f = 0;
    let map = [
        (libc::ST_RDONLY, libc::MS_RDONLY),
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ];
    for (st_f, ms) in map {
        if st.f_flag & st_f != 0 {
            f |= ms;
        }
    }
    f
}

/// Remount a bind mount with `flags`, keeping the flags the kernel locks in a user namespace.
fn remount_bind(target: &CString, flags: libc::c_ulong, clear: libc::c_ulong) -> Result<()> {
    let locked = statvfs_flags(target)
        & (libc::MS_NOSUID
            | libc::MS_NODEV
            | libc::MS_NOEXEC
            | libc::MS_NOATIME
            | libc::MS_NODIRATIME
            | libc::MS_RELATIME);
    let f = libc::MS_REMOUNT
        | libc::MS_BIND
        | ((flags | locked) & !clear & !(libc::MS_REC | libc::MS_BIND | libc::MS_REMOUNT));
    match sys::mount(None, target, None, f, None) {
        Ok(()) => Ok(()),
        // Locked flags we tried to clear: retry keeping them.
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            sys::mount(None, target, None, f | locked, None).ctx("remount bind mount")
        }
        Err(e) => Err(Error::os("remount bind mount", e)),
    }
}

impl Rootfs<'_> {
    fn root(&self) -> &OwnedFd {
        self.root_fd.as_ref().expect("rootfs opened")
    }

    /// Everything before pivot_root.
    pub fn prepare(&mut self) -> Result<()> {
        let slash = cstring("/")?;
        // Keep our mounts from propagating back to the host.
        let prop = match self.spec.linux().as_ref().and_then(|l| l.rootfs_propagation().clone()).as_deref() {
            Some("shared") | Some("rshared") => libc::MS_SHARED,
            Some("private") | Some("rprivate") => libc::MS_PRIVATE,
            Some("unbindable") | Some("runbindable") => libc::MS_UNBINDABLE,
            _ => libc::MS_SLAVE,
        };
        let prop = if prop == libc::MS_SHARED { libc::MS_SLAVE } else { prop };
        sys::mount(None, &slash, None, libc::MS_REC | prop, None).ctx("make / a slave mount")?;
        let rootc = cstr(self.rootfs)?;
        sys::mount(Some(&rootc), &rootc, None, libc::MS_BIND | libc::MS_REC, None).ctx("bind mount rootfs")?;
        self.root_fd = Some(sys::open(&rootc, libc::O_PATH | libc::O_DIRECTORY, 0).ctx("open rootfs")?);

        let mut dev_is_tmpfs = false;
        for m in self.spec.mounts().iter().flatten() {
            self.mount_one(m)?;
            if clean(m.destination()) == Path::new("/dev") && !is_bind(m) {
                dev_is_tmpfs = true;
            }
        }
        if dev_is_tmpfs {
            self.default_devices()?;
        }
        if let Some(devs) = self.spec.linux().as_ref().and_then(|l| l.devices().clone()) {
            for d in &devs {
                self.create_device(d)?;
            }
        }
        Ok(())
    }

    fn mount_one(&self, m: &Mount) -> Result<()> {
        let opts = parse_options(m.options().as_deref().unwrap_or(&[]))?;
        let typ = m.typ().clone().unwrap_or_default();
        let dest = m.destination();
        let bind = opts.bind || typ == "bind";
        if typ == "cgroup" || typ == "cgroup2" {
            return self.mount_cgroup(dest, &opts);
        }
        let target_fd = if bind {
            let src = self.bind_source(m)?;
            let meta = std::fs::metadata(&src).map_err(|e| Error::os(format!("mount source {}", src.display()), e))?;
            let fd = if meta.is_dir() {
                mkdir_all_in_root(self.root(), dest, 0o755)?
            } else {
                touch_in_root(self.root(), dest)?
            };
            let target = sys::fd_path(&fd);
            let srcc = cstr(&src)?;
            let flags = libc::MS_BIND | (opts.flags & libc::MS_REC);
            sys::mount(Some(&srcc), &target, None, flags, None)
                .map_err(|e| Error::os(format!("bind mount {} on {}", src.display(), dest.display()), e))?;
            let extra = opts.flags & !(libc::MS_BIND | libc::MS_REC | libc::MS_REMOUNT);
            if extra != 0 || opts.clear != 0 {
                // Reopen: the fd still points at the covered directory, not the new mount.
                let fd =
                    open_in_root(self.root(), dest, libc::O_PATH as u64).ctx(format!("open {}", dest.display()))?;
                remount_bind(&sys::fd_path(&fd), extra, opts.clear)
                    .map_err(|e| Error::new(format!("mount {}: {}", dest.display(), e)))?;
            }
            fd
        } else {
            let fd = mkdir_all_in_root(self.root(), dest, 0o755)?;
            let target = sys::fd_path(&fd);
            let src = cstring(m.source().as_ref().and_then(|s| s.to_str()).unwrap_or(&typ))?;
            let typc = cstring(&typ)?;
            let data = if opts.data.is_empty() { None } else { Some(cstring(&opts.data.join(","))?) };
            let r = sys::mount(Some(&src), &target, Some(&typc), opts.flags & !libc::MS_REMOUNT, data.as_deref());
            match r {
                Ok(()) => {}
                // sysfs cannot be mounted in a user namespace without its own network namespace:
                // bind the host's, read-only, as runc does.
                Err(e) if typ == "sysfs" && e.raw_os_error() == Some(libc::EPERM) && self.userns => {
                    let sys_c = cstring("/sys")?;
                    sys::mount(Some(&sys_c), &target, None, libc::MS_BIND | libc::MS_REC, None).ctx("bind /sys")?;
                    let fd2 = open_in_root(self.root(), dest, libc::O_PATH as u64).ctx("open /sys")?;
                    remount_bind(&sys::fd_path(&fd2), libc::MS_RDONLY | opts.flags, 0)?;
                }
                Err(e) if typ == "mqueue" && e.raw_os_error() == Some(libc::EPERM) && self.userns => {
                    let mq = cstring("/dev/mqueue")?;
                    sys::mount(Some(&mq), &target, None, libc::MS_BIND | libc::MS_REC, None).ctx("bind /dev/mqueue")?;
                }
                Err(e) => {
                    return Err(Error::os(format!("mount {typ} on {}", dest.display()), e));
                }
            }
            fd
        };
        for p in &opts.propagation {
            let fd = open_in_root(self.root(), dest, libc::O_PATH as u64).ctx(format!("open {}", dest.display()))?;
            sys::mount(None, &sys::fd_path(&fd), None, *p, None)
                .map_err(|e| Error::os(format!("set propagation of {}", dest.display()), e))?;
        }
        drop(target_fd);
        Ok(())
    }

    fn bind_source(&self, m: &Mount) -> Result<PathBuf> {
        let src = m
            .source()
            .clone()
            .ok_or_else(|| Error::new(format!("mount {}: bind mount without a source", m.destination().display())))?;
        Ok(if src.is_absolute() { src } else { self.bundle.join(src) })
    }

    /// /sys/fs/cgroup inside the container: the container's own cgroups, bound from the host.
    fn mount_cgroup(&self, dest: &Path, opts: &MountOpts) -> Result<()> {
        let ro = opts.flags & libc::MS_RDONLY;
        let base = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        let fd = mkdir_all_in_root(self.root(), dest, 0o755)?;
        let v2_only = self.cgroup_mounts.len() == 1 && self.cgroup_mounts[0].0.is_empty();
        if v2_only {
            let src = cstr(&self.cgroup_mounts[0].1)?;
            sys::mount(Some(&src), &sys::fd_path(&fd), None, libc::MS_BIND | libc::MS_REC, None)
                .ctx("bind mount the cgroup2 hierarchy")?;
            let fd = open_in_root(self.root(), dest, libc::O_PATH as u64).ctx("open cgroup mount")?;
            return remount_bind(&sys::fd_path(&fd), base | ro, 0);
        }
        let tmpfs = cstring("tmpfs")?;
        let data = cstring("mode=755")?;
        sys::mount(Some(&tmpfs), &sys::fd_path(&fd), Some(&tmpfs), base, Some(&data))
            .ctx("mount tmpfs on /sys/fs/cgroup")?;
        for (name, host) in self.cgroup_mounts {
            let sub = dest.join(name);
            let fd = mkdir_all_in_root(self.root(), &sub, 0o755)?;
            let src = cstr(host)?;
            sys::mount(Some(&src), &sys::fd_path(&fd), None, libc::MS_BIND, None)
                .map_err(|e| Error::os(format!("bind cgroup {}", host.display()), e))?;
            let fd = open_in_root(self.root(), &sub, libc::O_PATH as u64).ctx("open cgroup mount")?;
            remount_bind(&sys::fd_path(&fd), base | ro, 0)?;
            // Co-mounted controllers ("cpu,cpuacct") also get one symlink per controller.
            if name.contains(',') {
                for part in name.split(',') {
                    let link = dest.join(part);
                    if open_in_root(self.root(), &link, (libc::O_PATH | libc::O_NOFOLLOW) as u64).is_err() {
                        let dir = open_in_root(self.root(), dest, libc::O_PATH as u64).ctx("open cgroup dir")?;
                        let target = cstring(name)?;
                        let linkc = CString::new(format!("{}/{}", sys::fd_path(&dir).to_string_lossy(), part))
                            .unwrap_or_default();
                        let _ = sys::symlink(&target, &linkc);
                    }
                }
            }
        }
        if ro != 0 {
            let fd = open_in_root(self.root(), dest, libc::O_PATH as u64).ctx("open cgroup mount")?;
            remount_bind(&sys::fd_path(&fd), base | libc::MS_RDONLY, 0).or_else(|_| {
                sys::mount(None, &sys::fd_path(&fd), None, libc::MS_REMOUNT | base | libc::MS_RDONLY, None)
                    .ctx("remount /sys/fs/cgroup read-only")
            })?;
        }
        Ok(())
    }

    fn default_devices(&self) -> Result<()> {
        let mk = |path: &str, major: i64, minor: i64| {
            let mut d = LinuxDevice::default();
            d.set_path(PathBuf::from(path));
            d.set_typ(LinuxDeviceType::C);
            d.set_major(major);
            d.set_minor(minor);
            d.set_file_mode(Some(0o666));
            d.set_uid(Some(0));
            d.set_gid(Some(0));
            d
        };
        for d in [
            mk("/dev/null", 1, 3),
            mk("/dev/zero", 1, 5),
            mk("/dev/full", 1, 7),
            mk("/dev/random", 1, 8),
            mk("/dev/urandom", 1, 9),
            mk("/dev/tty", 5, 0),
        ] {
            self.create_device(&d)?;
        }
        let dev =
            open_in_root(self.root(), Path::new("/dev"), (libc::O_PATH | libc::O_DIRECTORY) as u64).ctx("open /dev")?;
        let devp = sys::fd_path(&dev).to_string_lossy().into_owned();
        for (link, target) in [
            ("ptmx", "pts/ptmx"),
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
            ("core", "/proc/kcore"),
        ] {
            let l = cstring(&format!("{devp}/{link}"))?;
            let t = cstring(target)?;
            match sys::symlink(&t, &l) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => return Err(Error::os(format!("symlink /dev/{link}"), e)),
            }
        }
        Ok(())
    }

    fn create_device(&self, d: &LinuxDevice) -> Result<()> {
        let path = d.path();
        if !path.is_absolute() || !clean(path).starts_with("/dev") {
            bail!("config: device path {} must be under /dev", path.display());
        }
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
            LinuxDeviceType::B => libc::S_IFBLK,
            LinuxDeviceType::P => libc::S_IFIFO,
            LinuxDeviceType::A => bail!("config: device {}: type \"a\" is not a device node type", path.display()),
        };
        let p = clean(path);
        let parent = p.parent().unwrap_or(Path::new("/dev"));
        let dir = mkdir_all_in_root(self.root(), parent, 0o755)?;
        let name = p.file_name().ok_or_else(|| Error::new(format!("bad device path {}", path.display())))?;
        let full = CString::new(format!("{}/{}", sys::fd_path(&dir).to_string_lossy(), name.to_string_lossy()))
            .map_err(|_| Error::new("bad device path"))?;
        if self.userns {
            // mknod is not allowed in a user namespace: bind the host's node instead.
            let fd = touch_in_root(self.root(), &p)?;
            let src = cstr(&p)?;
            return sys::mount(Some(&src), &sys::fd_path(&fd), None, libc::MS_BIND, None)
                .map_err(|e| Error::os(format!("bind device {}", p.display()), e));
        }
        let mode = d.file_mode().unwrap_or(0o666) & 0o7777;
        let dev = libc::makedev(d.major() as u32, d.minor() as u32);
        // The fd_path string resolves through /proc/self/fd/N of a dir opened inside the root.
        // SAFETY: umask only changes the process's file creation mask.
        let old = unsafe { libc::umask(0) };
        let r = sys::mknod(&full, kind | mode, dev);
        // SAFETY: restore the previous mask.
        unsafe { libc::umask(old) };
        match r {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => return Ok(()),
            Err(e) => return Err(Error::os(format!("mknod {}", p.display()), e)),
        }
        sys::chown(&full, d.uid().unwrap_or(0), d.gid().unwrap_or(0)).ctx(format!("chown {}", p.display()))?;
        Ok(())
    }

    /// pivot_root into the rootfs and detach the old root (or MS_MOVE + chroot with `no_pivot`).
    pub fn pivot(&mut self, no_pivot: bool) -> Result<()> {
        let rootc = cstr(self.rootfs)?;
        let dot = cstring(".")?;
        let slash = cstring("/")?;
        if no_pivot {
            sys::chdir(&rootc).ctx("chdir rootfs")?;
            sys::mount(Some(&dot), &slash, None, libc::MS_MOVE, None).ctx("move rootfs to /")?;
            // SAFETY: chroot with a valid C string.
            sys::check(unsafe { libc::chroot(dot.as_ptr()) }).ctx("chroot")?;
        } else {
            let old = sys::open(&slash, libc::O_DIRECTORY | libc::O_RDONLY, 0).ctx("open old root")?;
            let new = sys::open(&rootc, libc::O_DIRECTORY | libc::O_RDONLY, 0).ctx("open rootfs")?;
            // SAFETY: fchdir on an fd we own.
            sys::check(unsafe { libc::fchdir(new.as_raw_fd()) }).ctx("chdir rootfs")?;
            sys::pivot_root(&dot, &dot).ctx("pivot_root")?;
            // SAFETY: fchdir on an fd we own.
            sys::check(unsafe { libc::fchdir(old.as_raw_fd()) }).ctx("chdir old root")?;
            sys::mount(None, &dot, None, libc::MS_SLAVE | libc::MS_REC, None).ctx("make old root a slave")?;
            sys::umount2(&dot, libc::MNT_DETACH).ctx("detach old root")?;
        }
        sys::chdir(&slash).ctx("chdir /")?;
        self.root_fd = Some(sys::open(&slash, libc::O_PATH | libc::O_DIRECTORY, 0).ctx("open new root")?);
        Ok(())
    }

    /// After pivot_root: masked and read-only paths, sysctls, read-only root, propagation.
    pub fn finish(&self) -> Result<()> {
        let linux = self.spec.linux().as_ref();
        // Sysctls first: /proc/sys becomes read-only below.
        for (k, v) in linux.and_then(|l| l.sysctl().clone()).iter().flatten() {
            let path = format!("/proc/sys/{}", k.replace('.', "/"));
            std::fs::write(&path, v).map_err(|e| Error::os(format!("sysctl {k}={v}"), e))?;
        }
        let devnull = cstring("/dev/null")?;
        for p in linux.and_then(|l| l.masked_paths().clone()).iter().flatten() {
            let fd = match open_in_root(self.root(), Path::new(p), (libc::O_PATH | libc::O_NOFOLLOW) as u64) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                Err(e) => return Err(Error::os(format!("masked path {p}"), e)),
            };
            let target = sys::fd_path(&fd);
            // SAFETY: zeroed stat is a valid out-buffer; fstat on our fd.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: fd is open; st is a valid out-pointer.
            sys::check(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) }).ctx(format!("stat {p}"))?;
            let r = if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                let tmpfs = cstring("tmpfs")?;
                let data = cstring("size=0,mode=0")?;
                sys::mount(Some(&tmpfs), &target, Some(&tmpfs), libc::MS_RDONLY, Some(&data))
            } else {
                sys::mount(Some(&devnull), &target, None, libc::MS_BIND, None)
            };
            r.map_err(|e| Error::os(format!("mask {p}"), e))?;
        }
        for p in linux.and_then(|l| l.readonly_paths().clone()).iter().flatten() {
            let fd = match open_in_root(self.root(), Path::new(p), (libc::O_PATH | libc::O_NOFOLLOW) as u64) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                Err(e) => return Err(Error::os(format!("readonly path {p}"), e)),
            };
            let target = sys::fd_path(&fd);
            sys::mount(Some(&target), &target, None, libc::MS_BIND | libc::MS_REC, None)
                .map_err(|e| Error::os(format!("bind readonly path {p}"), e))?;
            let fd = open_in_root(self.root(), Path::new(p), (libc::O_PATH | libc::O_NOFOLLOW) as u64)
                .ctx(format!("open {p}"))?;
            remount_bind(&sys::fd_path(&fd), libc::MS_RDONLY, 0)
                .map_err(|e| Error::new(format!("readonly path {p}: {e}")))?;
        }
        if self.spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false) {
            let slash = cstring("/")?;
            remount_bind(&slash, libc::MS_RDONLY, 0).map_err(|e| Error::new(format!("make root read-only: {e}")))?;
        }
        if let Some(p) = linux.and_then(|l| l.rootfs_propagation().clone()) {
            let flag = match p.as_str() {
                "shared" => libc::MS_SHARED,
                "rshared" => libc::MS_SHARED | libc::MS_REC,
                "slave" => libc::MS_SLAVE,
                "rslave" => libc::MS_SLAVE | libc::MS_REC,
                "private" => libc::MS_PRIVATE,
                "rprivate" => libc::MS_PRIVATE | libc::MS_REC,
                "unbindable" => libc::MS_UNBINDABLE,
                "runbindable" => libc::MS_UNBINDABLE | libc::MS_REC,
                "" => 0,
                other => bail!("config: linux.rootfsPropagation: unknown value {other:?}"),
            };
            if flag != 0 {
                let slash = cstring("/")?;
                sys::mount(None, &slash, None, flag, None).ctx("set rootfs propagation")?;
            }
        }
        Ok(())
    }
}

fn is_bind(m: &Mount) -> bool {
    m.typ().as_deref() == Some("bind") || m.options().iter().flatten().any(|o| o == "bind" || o == "rbind")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let o = parse_options(&["nosuid".into(), "rbind".into(), "ro".into(), "mode=755".into(), "rprivate".into()])
            .unwrap();
        assert!(o.bind);
        assert_eq!(o.flags & libc::MS_REC, libc::MS_REC);
        assert_eq!(o.flags & libc::MS_RDONLY, libc::MS_RDONLY);
        assert_eq!(o.data, vec!["mode=755".to_string()]);
        assert_eq!(o.propagation, vec![libc::MS_PRIVATE | libc::MS_REC]);
        assert!(parse_options(&["rro".into()]).is_err());
    }

    #[test]
    fn clean_paths() {
        assert_eq!(clean(Path::new("/a/../../b/./c")), PathBuf::from("/b/c"));
        assert_eq!(clean(Path::new("/")), PathBuf::from("/"));
    }
}
