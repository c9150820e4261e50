//! OCI hooks: run a list of hooks with the container state on stdin.

use crate::error::{Error, Result};
use oci_spec::runtime::Hook;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Run each hook in order; the first failure stops the list.
pub fn run(kind: &str, hooks: Option<&Vec<Hook>>, state_json: &str) -> Result<()> {
    for h in hooks.into_iter().flatten() {
        run_one(kind, h, state_json)?;
    }
    Ok(())
}

fn run_one(kind: &str, h: &Hook, state_json: &str) -> Result<()> {
    let path = h.path();
    let mut cmd = Command::new(path);
    if let Some(args) = h.args() {
        if let Some((argv0, rest)) = args.split_first() {
            use std::os::unix::process::CommandExt;
            cmd.arg0(argv0);
            cmd.args(rest);
        }
    }
    cmd.env_clear();
    for kv in h.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped()).stdout(Stdio::inherit()).stderr(Stdio::piped());
    let what = format!("{kind} hook {}", path.display());
    let mut child = cmd.spawn().map_err(|e| Error::os(&what, e))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook may exit without reading stdin; EPIPE is not an error then.
        let _ = stdin.write_all(state_json.as_bytes());
    }
    let deadline = h.timeout().map(|t| Instant::now() + Duration::from_secs(t.max(1) as u64));
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                if status.success() {
                    return Ok(());
                }
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                let err = err.trim();
                return Err(Error::new(format!(
                    "{what} failed: {status}{}{}",
                    if err.is_empty() { "" } else { ": " },
                    err.lines().last().unwrap_or("")
                )));
            }
            Ok(None) => {}
            Err(e) => return Err(Error::os(&what, e)),
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::new(format!("{what} timed out after {}s", h.timeout().unwrap_or(0))));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
