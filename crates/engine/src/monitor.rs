//! The per-container monitor: `berth monitor ...`, one small process per running container.
//!
//! It runs the container in-process with the runtime (`container::run`: create, start, wait,
//! delete), holds the container's stdio (pipes, or the pty master received over a console
//! socket), writes every output line to the json-file log, serves attach/wait/resize requests
//! on `<dir>/monitor.sock`, and records the exit in `<dir>/exit.json`. It is started in its own
//! session, so `berth daemon` stopping or crashing does not touch it; a restarted daemon finds
//! it again through the socket.
//!
//! Protocol on `monitor.sock`: the client sends one line, then:
//! - `attach <stdin> <stdout> <stderr>` (each 0 or 1): the monitor sends output as frames
//!   `[stream, 0, 0, 0, len(u32 BE)] + payload` (stream 1 stdout, 2 stderr; a tty is stream 1);
//!   bytes from the client go to the container's stdin; the client's half-close closes stdin.
//! - `wait`: one line `{"exit_code": N}` when the container exits (at once if it has).
//! - `resize <rows> <cols>`: sets the pty size.
//! - `start`: the container runs (the monitor waits for this, so that clients attached before
//!   the start miss no output); answered `ok`.
//!
//! `<dir>/status` carries the start outcome to whoever spawned the monitor: the container's
//! pid, or `error: <message>`.

use crate::logs::{LogOpts, LogWriter};
use serde_json::json;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

pub struct MonitorOpts {
    pub id: String,
    pub bundle: PathBuf,
    pub runtime_root: PathBuf,
    /// The container's exec directory: monitor.sock, console.sock, status, exit.json.
    pub dir: PathBuf,
    /// The json-file log; none for an exec (Docker does not log exec output).
    pub log: Option<PathBuf>,
    pub log_opts: LogOpts,
    /// Run this process (OCI `process` JSON) in the running container `id` instead of the
    /// container itself: the monitor of one `exec`.
    pub exec_process: Option<PathBuf>,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
}

struct Client {
    stream: UnixStream,
    stdout: bool,
    stderr: bool,
}

#[derive(Default)]
struct Shared {
    clients: Vec<Client>,
    exit: Option<i32>,
    /// Writer of the container's stdin (pipe or a dup of the pty master).
    stdin: Option<File>,
    master: Option<RawFd>,
    /// Set by the `start` request: the container may run.
    go: bool,
    /// What `start` answers once known: the process's pid, or `error: <why>`.
    started: Option<String>,
}

/// Record the start's outcome in `status` (for a daemon that comes back later) and wake the
/// `start` request waiting for it.
fn set_started(state: &State, dir: &std::path::Path, text: &str) {
    write_status(dir, text);
    lock(state).started = Some(text.to_string());
    state.1.notify_all();
}

type State = Arc<(Mutex<Shared>, Condvar)>;

fn lock(s: &State) -> std::sync::MutexGuard<'_, Shared> {
    s.0.lock().unwrap_or_else(|e| e.into_inner())
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid 2-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn dup2(from: RawFd, to: RawFd) {
    // SAFETY: dup2 on fds we own; the target is one of our stdio slots.
    unsafe { libc::dup2(from, to) };
}

fn write_status(dir: &std::path::Path, text: &str) {
    let tmp = dir.join("status.tmp");
    if std::fs::write(&tmp, text).is_ok() {
        let _ = std::fs::rename(&tmp, dir.join("status"));
    }
}

/// Run the monitor; returns the process exit code (0 unless the monitor itself failed).
pub fn main(o: MonitorOpts) -> i32 {
    // Signals are for the runtime's wait loop (it forwards them to the container); block them
    // in every thread before any thread exists.
    // SAFETY: plain sigset manipulation on a local; sigprocmask with valid pointers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        for s in [libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE, libc::SIGKILL, libc::SIGSTOP] {
            libc::sigdelset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    match run(&o) {
        Ok(()) => 0,
        Err(e) => {
            write_status(&o.dir, &format!("error: {e}"));
            1
        }
    }
}

fn run(o: &MonitorOpts) -> Result<(), String> {
    let sock_path = o.dir.join("monitor.sock");
    let _ = std::fs::remove_file(&sock_path);
    let listener = UnixListener::bind(&sock_path).map_err(|e| format!("listening on {}: {e}", sock_path.display()))?;
    let log = match &o.log {
        Some(p) => Some(Arc::new(Mutex::new(
            LogWriter::open(p, o.log_opts.clone()).map_err(|e| format!("opening log {}: {e}", p.display()))?,
        ))),
        None => None,
    };
    let process = match &o.exec_process {
        Some(p) => {
            let data = std::fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()))?;
            Some(
                serde_json::from_slice::<oci_spec::runtime::Process>(&data)
                    .map_err(|e| format!("the exec's process: {e}"))?,
            )
        }
        None => None,
    };
    let state: State = Arc::new((Mutex::new(Shared::default()), Condvar::new()));
    let null = File::options().read(true).write(true).open("/dev/null").map_err(|e| format!("/dev/null: {e}"))?;
    let mut pumps = Vec::new();
    let mut console_socket = None;
    if o.tty {
        let cpath = o.dir.join("console.sock");
        let _ = std::fs::remove_file(&cpath);
        let cl = UnixListener::bind(&cpath).map_err(|e| format!("console socket: {e}"))?;
        console_socket = Some(cpath);
        let (st, lg) = (state.clone(), log.clone());
        pumps.push(std::thread::spawn(move || {
            let Ok((conn, _)) = cl.accept() else { return };
            let Ok(master) = berth_runtime::sys::recv_fd(conn.as_raw_fd()) else { return };
            let master = File::from(master);
            {
                let mut sh = lock(&st);
                sh.master = Some(master.as_raw_fd());
                sh.stdin = master.try_clone().ok();
            }
            pump(master, 1, &st, &lg);
        }));
        for fd in 0..3 {
            dup2(null.as_raw_fd(), fd);
        }
    } else {
        let (out_r, out_w) = pipe().map_err(|e| format!("pipe: {e}"))?;
        let (err_r, err_w) = pipe().map_err(|e| format!("pipe: {e}"))?;
        if o.open_stdin {
            let (in_r, in_w) = pipe().map_err(|e| format!("pipe: {e}"))?;
            dup2(in_r.as_raw_fd(), 0);
            lock(&state).stdin = Some(File::from(in_w));
        } else {
            dup2(null.as_raw_fd(), 0);
        }
        dup2(out_w.as_raw_fd(), 1);
        dup2(err_w.as_raw_fd(), 2);
        for (r, stream) in [(out_r, 1u8), (err_r, 2u8)] {
            let (st, lg) = (state.clone(), log.clone());
            pumps.push(std::thread::spawn(move || pump(File::from(r), stream, &st, &lg)));
        }
    }
    {
        let st = state.clone();
        let (stdin_once, tty) = (o.stdin_once, o.tty);
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let st = st.clone();
                std::thread::spawn(move || serve(conn, &st, stdin_once, tty));
            }
        });
    }
    {
        let (m, cv) = &*state;
        let sh = m.lock().unwrap_or_else(|e| e.into_inner());
        let (sh, timeout) = cv
            .wait_timeout_while(sh, std::time::Duration::from_secs(120), |sh| !sh.go)
            .unwrap_or_else(|e| e.into_inner());
        drop(sh);
        if timeout.timed_out() {
            let _ = std::fs::remove_file(&sock_path);
            return Err("nobody asked to start the container within 120 s".into());
        }
    }
    let (status_r, status_w) = pipe().map_err(|e| format!("pipe: {e}"))?;
    let dir = o.dir.clone();
    let st = state.clone();
    let reporter = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = File::from(status_r).read_to_string(&mut s);
        if !s.trim().is_empty() {
            set_started(&st, &dir, s.trim());
        }
    });
    // `run`/`exec` close the status fd once the process has started.
    let status_w_raw = status_w.as_raw_fd();
    std::mem::forget(status_w);
    let result = match process {
        Some(process) => berth_runtime::container::exec(&berth_runtime::container::ExecOpts {
            root: o.runtime_root.clone(),
            id: o.id.clone(),
            process,
            console_socket,
            pid_file: None,
            detach: false,
            preserve_fds: 0,
            notify_started: Some(status_w_raw),
        })
        .map(|code| (code, false)),
        None => berth_runtime::container::run_outcome(&berth_runtime::container::CreateOpts {
            root: o.runtime_root.clone(),
            id: o.id.clone(),
            bundle: o.bundle.clone(),
            console_socket,
            notify_started: Some(status_w_raw),
            ..Default::default()
        })
        .map(|o| (o.code, o.oom_killed)),
    };
    if result.is_err() {
        // SAFETY: the start never happened, so `run` did not close the fd; we own it.
        unsafe { libc::close(status_w_raw) };
    }
    let _ = reporter.join();
    // Our copies of the container's stdio ends go, so the pumps see the end of output.
    for fd in 0..3 {
        dup2(null.as_raw_fd(), fd);
    }
    let (code, oom_killed) = match result {
        Ok(r) => r,
        Err(e) => {
            set_started(&state, &o.dir, &format!("error: {e}"));
            if o.exec_process.is_some() {
                // An exec's client hears why, in its stream (as from dockerd), then the end.
                let msg = format!("OCI runtime exec failed: {e}\r\n");
                let mut sh = lock(&state);
                for c in sh.clients.drain(..) {
                    let _ = (&c.stream).write_all(&frame(1, msg.as_bytes()));
                    let _ = c.stream.shutdown(std::net::Shutdown::Both);
                }
            }
            lock(&state).stdin = None;
            drop(pumps);
            return Ok(());
        }
    };
    lock(&state).stdin = None;
    for p in pumps {
        let _ = p.join();
    }
    if let Some(log) = &log {
        log.lock().unwrap_or_else(|e| e.into_inner()).flush();
    }
    let tmp = o.dir.join("exit.json.tmp");
    let body = json!({"exit_code": code, "finished_at": berth_runtime::state::now_rfc3339(), "oom_killed": oom_killed})
        .to_string();
    std::fs::write(&tmp, &body).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, o.dir.join("exit.json")).map_err(|e| format!("writing exit.json: {e}"))?;
    // The socket goes before waiters hear of the exit: a restart may bind a new one at once.
    let _ = std::fs::remove_file(&sock_path);
    let (m, cv) = &*state;
    {
        let mut sh = m.lock().unwrap_or_else(|e| e.into_inner());
        sh.exit = Some(code);
        for c in sh.clients.drain(..) {
            let _ = c.stream.shutdown(std::net::Shutdown::Both);
        }
    }
    cv.notify_all();
    // Give waiters a moment to read their line before the process (and its threads) end.
    std::thread::sleep(std::time::Duration::from_millis(50));
    Ok(())
}

/// One frame of Docker's multiplexed stream (and of this socket's protocol):
/// `[stream, 0, 0, 0, len (u32 BE)] + data`.
pub fn frame(stream: u8, data: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(data.len() + 8);
    f.extend_from_slice(&[stream, 0, 0, 0]);
    f.extend_from_slice(&(data.len() as u32).to_be_bytes());
    f.extend_from_slice(data);
    f
}

/// Copy one output stream to the log and to every attached client.
fn pump(mut from: File, stream: u8, state: &State, log: &Option<Arc<Mutex<LogWriter>>>) {
    let mut buf = vec![0u8; 32 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break, // EIO from a pty master once the slave side is gone
        };
        let data = &buf[..n];
        if let Some(log) = log {
            log.lock().unwrap_or_else(|e| e.into_inner()).write(stream, data);
        }
        let frame = frame(stream, data);
        let mut sh = lock(state);
        sh.clients.retain_mut(|c| {
            let wanted = if stream == 2 { c.stderr } else { c.stdout };
            !wanted || (&c.stream).write_all(&frame).is_ok()
        });
    }
    if let Some(log) = log {
        log.lock().unwrap_or_else(|e| e.into_inner()).end_stream(stream);
    }
}

fn serve(conn: UnixStream, state: &State, stdin_once: bool, tty: bool) {
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["wait"] => {
            let (m, cv) = &**state;
            let mut sh = m.lock().unwrap_or_else(|e| e.into_inner());
            while sh.exit.is_none() {
                sh = cv.wait(sh).unwrap_or_else(|e| e.into_inner());
            }
            let code = sh.exit.unwrap_or(0);
            drop(sh);
            let _ = (&conn).write_all(format!("{{\"exit_code\":{code}}}\n").as_bytes());
        }
        ["start"] => {
            // Answered once the process runs (its pid) or failed to (`error: ...`).
            let (m, cv) = &**state;
            let mut sh = m.lock().unwrap_or_else(|e| e.into_inner());
            sh.go = true;
            cv.notify_all();
            while sh.started.is_none() && sh.exit.is_none() {
                sh = cv.wait(sh).unwrap_or_else(|e| e.into_inner());
            }
            let answer = sh.started.clone().unwrap_or_else(|| "error: the process ended before it started".into());
            drop(sh);
            let _ = (&conn).write_all(format!("{answer}\n").as_bytes());
        }
        ["resize", rows, cols] => {
            let ws = libc::winsize {
                ws_row: rows.parse().unwrap_or(24),
                ws_col: cols.parse().unwrap_or(80),
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            if let Some(m) = lock(state).master {
                // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer; m is the pty master.
                unsafe { libc::ioctl(m, libc::TIOCSWINSZ, &ws) };
            }
            let _ = (&conn).write_all(b"ok\n");
        }
        ["attach", i, out, err] => {
            let (want_in, want_out, want_err) = (*i == "1", *out == "1", *err == "1");
            if want_out || want_err {
                let Ok(w) = conn.try_clone() else { return };
                let mut sh = lock(state);
                if sh.exit.is_some() {
                    let _ = conn.shutdown(std::net::Shutdown::Both);
                    return;
                }
                sh.clients.push(Client { stream: w, stdout: want_out, stderr: want_err });
            }
            let _ = (&conn).write_all(&[0, 0, 0, 0, 0, 0, 0, 0]); // an empty frame: attached
            if want_in {
                let mut buf = vec![0u8; 32 << 10];
                // Bytes already buffered after the request line come first.
                let early = reader.buffer().to_vec();
                if !early.is_empty() {
                    if let Some(f) = lock(state).stdin.as_mut() {
                        let _ = f.write_all(&early);
                    }
                }
                let mut raw = conn;
                loop {
                    let n = match raw.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let mut sh = lock(state);
                    let written = sh.stdin.as_mut().map(|f| f.write_all(&buf[..n]).is_ok());
                    if written != Some(true) {
                        break;
                    }
                }
                if stdin_once && !tty {
                    lock(state).stdin = None; // EOF for the container
                } else if stdin_once && tty {
                    // A tty has no half-close: send the terminal's EOF character.
                    if let Some(f) = lock(state).stdin.as_mut() {
                        let _ = f.write_all(&[4]);
                    }
                }
            }
        }
        _ => {
            let _ = (&conn).write_all(b"error: unknown request\n");
        }
    }
}
