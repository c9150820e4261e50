//! CVE-2019-5736 defence: never let a container reach a writable berth binary.
//!
//! A process inside a container can execute `/proc/self/exe` of a berth process that
//! joined the container and then reopen that binary for writing once berth exits. Before
//! `create`, `run` and `exec` enter any container, berth re-executes itself from a
//! detached, read-only bind mount of its own binary (`open_tree(OPEN_TREE_CLONE)` +
//! `mount_setattr(MOUNT_ATTR_RDONLY)` + `execveat`). Every `/proc/PID/exe` a container can
//! see then resolves into that read-only mount, and a write fails with EROFS. Cost: one
//! extra exec (about a millisecond), not a copy of the binary. If the kernel lacks the new
//! mount API, berth falls back to a sealed memfd copy (what runc does).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Is our executable already on a read-only mount?
pub fn is_sealed() -> bool {
    let p = CString::new("/proc/self/exe").unwrap_or_default();
    // SAFETY: zeroed statvfs is a valid out-buffer; p is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::statvfs(p.as_ptr(), &mut st) == 0 && st.f_flag & libc::ST_RDONLY != 0 }
}

fn ro_clone_of_self() -> io::Result<OwnedFd> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    const AT_RECURSIVE: libc::c_uint = 0x8000;
    let p = CString::new("/proc/self/exe").unwrap_or_default();
    // SAFETY: open_tree with a valid path; returns a new fd we own.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            p.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by open_tree.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttr { attr_set: libc::MOUNT_ATTR_RDONLY, attr_clr: 0, propagation: 0, userns_fd: 0 };
    let empty = CString::default();
    // SAFETY: attr is a valid mount_attr of the size passed; fd is a detached mount.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint | AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

fn memfd_copy_of_self() -> io::Result<OwnedFd> {
    let name = CString::new("berth").unwrap_or_default();
    // SAFETY: memfd_create with a valid name.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just created.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut src = std::fs::File::open("/proc/self/exe")?;
    let mut dst = std::fs::File::from(fd.try_clone()?);
    io::copy(&mut src, &mut dst)?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl with integer arguments on our fd.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Re-exec from a read-only copy of ourselves unless already running from one.
/// Returns only if that is impossible (the error says why) or not needed.
pub fn ensure_sealed() -> io::Result<()> {
    if is_sealed() {
        return Ok(());
    }
    let fd = match ro_clone_of_self() {
        Ok(fd) => fd,
        Err(_) => memfd_copy_of_self()?,
    };
    let args: Vec<CString> = std::env::args_os()
        .map(|a| {
            use std::os::unix::ffi::OsStrExt;
            CString::new(a.as_bytes()).unwrap_or_default()
        })
        .collect();
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            use std::os::unix::ffi::OsStrExt;
            let mut b = k.as_bytes().to_vec();
            b.push(b'=');
            b.extend_from_slice(v.as_bytes());
            CString::new(b).unwrap_or_default()
        })
        .collect();
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    let empty = CString::default();
    // SAFETY: argv/envp are NULL-terminated arrays of C strings alive for the call.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd.as_raw_fd(),
            empty.as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    Err(io::Error::last_os_error())
}
