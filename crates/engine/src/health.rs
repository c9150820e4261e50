//! Healthchecks: `HEALTHCHECK` / `--health-*`, probed by the daemon as execs.
//!
//! One thread per running container with a check: every interval (the start interval during
//! the start period) the test runs as an exec; its exit code and first 4 KiB of output go into
//! `State.Health` (the last five results), which moves from `starting` to `healthy` on a
//! success and to `unhealthy` after `retries` consecutive failures (failures inside the start
//! period do not count). A probe over its timeout is killed and counts as a failure. The
//! thread ends when the container stops or restarts; a restarted daemon starts it again for
//! the containers it re-adopts.

use crate::daemon::{Container, Daemon};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Serialize, Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    pub status: String,
    pub failing_streak: u64,
    pub log: Vec<Value>,
}

/// The effective check: the container's fields over the image's; `None` when there is none
/// (or `NONE`).
pub fn effective(cfg: &Value, image_cfg: &Value) -> Option<Value> {
    let img = &image_cfg["config"]["Healthcheck"];
    let own = &cfg["Healthcheck"];
    let mut h = if img.is_object() { img.clone() } else { json!({}) };
    if let Some(o) = own.as_object() {
        for (k, v) in o {
            let set = match v {
                Value::Null => false,
                Value::Number(n) => n.as_i64() != Some(0),
                Value::Array(a) => !a.is_empty(),
                _ => true,
            };
            if set {
                h[k] = v.clone();
            }
        }
    }
    let test = crate::spec::strings(&h["Test"]);
    match test.first().map(String::as_str) {
        None | Some("NONE") => None,
        Some("CMD") | Some("CMD-SHELL") if test.len() > 1 => Some(h),
        _ => None,
    }
}

/// Refuse malformed checks at create (Docker's messages).
pub fn validate(cfg: &Value) -> Result<(), String> {
    let h = &cfg["Healthcheck"];
    if h.is_null() {
        return Ok(());
    }
    let test = crate::spec::strings(&h["Test"]);
    match test.first().map(String::as_str) {
        None | Some("NONE") => {}
        Some("CMD") | Some("CMD-SHELL") if test.len() > 1 => {}
        Some(other) => return Err(format!("invalid healthcheck test {other:?}: use CMD, CMD-SHELL or NONE")),
    }
    for (k, min) in
        [("Interval", 1_000_000i64), ("Timeout", 1_000_000), ("StartPeriod", 1_000_000), ("StartInterval", 1_000_000)]
    {
        if let Some(n) = h[k].as_i64() {
            if n < 0 || (n > 0 && n < min) {
                return Err(format!("{k} in Healthcheck cannot be less than 1ms"));
            }
        }
    }
    if h["Retries"].as_i64().is_some_and(|r| r < 0) {
        return Err("Retries in Healthcheck cannot be negative".into());
    }
    Ok(())
}

fn dur(h: &Value, k: &str, default: Duration) -> Duration {
    match h[k].as_i64() {
        Some(n) if n > 0 => Duration::from_nanos(n as u64),
        _ => default,
    }
}

/// Start probing `c` (running, just started or re-adopted) if it has a check.
/// `fresh`: the container has just started (health begins at `starting`); else it was
/// re-adopted by a restarted daemon and keeps its state.
pub fn watch(d: &Arc<Daemon>, c: &Container, image_cfg: &Value, fresh: bool) {
    let Some(h) = effective(&c.config, image_cfg) else { return };
    let d = d.clone();
    let id = c.id.clone();
    let generation = c.state.started_at.clone();
    std::thread::spawn(move || run(&d, &id, &generation, &h, fresh));
}

fn run(d: &Arc<Daemon>, id: &str, generation: &str, h: &Value, fresh: bool) {
    let interval = dur(h, "Interval", Duration::from_secs(30));
    let timeout = dur(h, "Timeout", Duration::from_secs(30));
    let start_period = dur(h, "StartPeriod", Duration::ZERO);
    let start_interval = dur(h, "StartInterval", Duration::from_secs(5));
    let retries = h["Retries"].as_u64().filter(|r| *r > 0).unwrap_or(3);
    let test = crate::spec::strings(&h["Test"]);
    let cmd: Vec<String> = if test[0] == "CMD-SHELL" {
        vec!["/bin/sh".into(), "-c".into(), test[1..].join(" ")]
    } else {
        test[1..].to_vec()
    };
    let started = Instant::now();
    let current = |d: &Daemon| d.find(id).ok().filter(|c| c.state.started_at == generation && c.running());
    let _ = d.set_health(id, |hs| {
        if fresh || hs.status.is_empty() {
            hs.status = "starting".into();
            hs.failing_streak = 0;
        }
    });
    loop {
        let in_start = started.elapsed() < start_period;
        std::thread::sleep(if in_start { start_interval.min(interval) } else { interval });
        let Some(c) = current(d) else { return };
        if c.state.status == "paused" || c.state.status == "restarting" {
            continue;
        }
        let t0 = berth_runtime::state::now_rfc3339();
        let (code, output) = probe(d, &c, &cmd, timeout);
        let t1 = berth_runtime::state::now_rfc3339();
        if current(d).is_none() {
            return;
        }
        let in_start = started.elapsed() < start_period;
        let entry = json!({"Start": t0, "End": t1, "ExitCode": code, "Output": output});
        let mut changed_to = None;
        let _ = d.set_health(id, |hs| {
            hs.log.push(entry);
            while hs.log.len() > 5 {
                hs.log.remove(0);
            }
            let before = hs.status.clone();
            if code == 0 {
                hs.failing_streak = 0;
                hs.status = "healthy".into();
            } else if !(in_start && hs.status == "starting") {
                hs.failing_streak += 1;
                if hs.failing_streak >= retries {
                    hs.status = "unhealthy".into();
                }
            }
            if hs.status != before {
                changed_to = Some(hs.status.clone());
            }
        });
        if let (Some(s), Ok(c)) = (changed_to, d.find(id)) {
            d.container_event(&c, &format!("health_status: {s}"), json!({}));
        }
    }
}

/// Run the test once as an exec: (exit code, output); -1 when it could not run or timed out.
fn probe(d: &Arc<Daemon>, c: &Container, cmd: &[String], timeout: Duration) -> (i64, String) {
    let body = json!({"Cmd": cmd, "AttachStdout": true, "AttachStderr": true});
    let e = match d.exec_create(&c.id, &body) {
        Ok(e) => e,
        Err(err) => return (-1, err.message),
    };
    let Ok((ours, theirs)) = UnixStream::pair() else { return (-1, "socketpair failed".into()) };
    if let Err(err) = d.exec_start(&e.id, Some((theirs, Vec::new()))) {
        return (-1, err.message);
    }
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut r = ours;
    let mut timed_out = false;
    let mut head = [0u8; 8];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            timed_out = true;
            break;
        }
        let _ = r.set_read_timeout(Some(left));
        match r.read_exact(&mut head) {
            Ok(()) => {}
            Err(err) if matches!(err.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                timed_out = true;
                break;
            }
            Err(_) => break,
        }
        let n = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
        let mut buf = vec![0u8; n];
        if r.read_exact(&mut buf).is_err() {
            break;
        }
        if out.len() < 4096 {
            out.extend_from_slice(&buf[..buf.len().min(4096 - out.len())]);
        }
    }
    if timed_out {
        if let Ok(x) = d.exec_find(&e.id) {
            if x.pid > 0 {
                // SAFETY: kill(2) with a pid the runtime reported for this exec.
                unsafe { libc::kill(x.pid, libc::SIGKILL) };
            }
        }
        return (-1, format!("Health check exceeded timeout ({}s)", timeout.as_secs_f64()));
    }
    let code = d.exec_inspect(&e.id).ok().and_then(|v| v["ExitCode"].as_i64()).unwrap_or(-1);
    (code, String::from_utf8_lossy(&out).into_owned())
}
