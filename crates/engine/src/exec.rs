//! `exec`: another process in a running container, run by its own monitor.
//!
//! An exec is created (a record in memory, as Docker keeps them), then started: the daemon
//! writes the process (the container's OCI `process` with the exec's command, environment,
//! user, working directory and tty) to `<exec-dir>/x/<12 hex>/process.json` and spawns
//! `berth monitor --exec process.json`, which joins the container with the runtime's `exec`
//! and speaks the same socket protocol as a container's monitor (attach, wait, resize, start).
//! Output is not logged. The record keeps the exit code for `GET /exec/{id}/json`.

use crate::daemon::{random_id, Daemon};
use crate::http::{ApiError, ApiResult};
use crate::spec;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct Exec {
    pub id: String,
    pub container: String,
    /// The create request (Cmd, Env, User, WorkingDir, Tty, Attach*).
    pub config: Value,
    pub running: bool,
    pub started: bool,
    pub exit_code: Option<i32>,
    pub pid: i32,
}

impl Exec {
    pub fn tty(&self) -> bool {
        self.config["Tty"].as_bool().unwrap_or(false)
    }
    pub fn inspect(&self) -> Value {
        let cmd = spec::strings(&self.config["Cmd"]);
        json!({
            "ID": self.id,
            "Running": self.running,
            "ExitCode": self.exit_code,
            "ProcessConfig": {
                "tty": self.tty(),
                "entrypoint": cmd.first().cloned().unwrap_or_default(),
                "arguments": cmd.get(1..).unwrap_or_default(),
                "privileged": false,
                "user": self.config["User"].as_str().unwrap_or(""),
            },
            "OpenStdin": self.config["AttachStdin"].as_bool().unwrap_or(false),
            "OpenStderr": self.config["AttachStderr"].as_bool().unwrap_or(false),
            "OpenStdout": self.config["AttachStdout"].as_bool().unwrap_or(false),
            "CanRemove": false,
            "ContainerID": self.container,
            "DetachKeys": "",
            "Pid": self.pid,
        })
    }
}

impl Daemon {
    fn exec_dir_of(&self, e: &Exec) -> PathBuf {
        self.exec_dir(&e.container).join("x").join(&e.id[..12])
    }

    pub fn exec_find(&self, id: &str) -> ApiResult<Exec> {
        let all = self.execs.lock().unwrap_or_else(|e| e.into_inner());
        all.get(id)
            .or_else(|| {
                let m: Vec<&Exec> = all.values().filter(|e| !id.is_empty() && e.id.starts_with(id)).collect();
                if m.len() == 1 {
                    Some(m[0])
                } else {
                    None
                }
            })
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("No such exec instance: {id}")))
    }

    /// `GET /exec/{id}/json`. A finished process whose end the watcher has not recorded yet
    /// is seen through its `exit.json` (written before the client's stream ends).
    pub fn exec_inspect(&self, id: &str) -> ApiResult<Value> {
        let mut e = self.exec_find(id)?;
        // Started but its outcome not recorded yet (the start is still being settled): wait.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while e.started && !e.running && e.exit_code.is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(2));
            e = self.exec_find(id)?;
        }
        if e.running {
            if let Some(code) = crate::daemon::read_exit_json(&self.exec_dir_of(&e)) {
                e.running = false;
                e.exit_code = Some(code);
            }
        }
        Ok(e.inspect())
    }

    fn exec_update(&self, id: &str, f: impl FnOnce(&mut Exec)) {
        if let Some(e) = self.execs.lock().unwrap_or_else(|e| e.into_inner()).get_mut(id) {
            f(e);
        }
    }

    /// `POST /containers/{id}/exec`.
    pub fn exec_create(&self, key: &str, body: &Value) -> ApiResult<Exec> {
        let c = self.find(key)?;
        if !c.running() || c.state.status == "restarting" {
            return Err(ApiError::conflict(format!("Container {} is not running", c.id)));
        }
        if c.state.status == "paused" {
            return Err(ApiError::conflict(format!("Container {} is paused, unpause the container before exec", c.id)));
        }
        if spec::strings(&body["Cmd"]).is_empty() {
            return Err(ApiError::bad("No exec command specified"));
        }
        if body["Privileged"].as_bool().unwrap_or(false) {
            return Err(ApiError::bad("exec --privileged is not supported yet"));
        }
        if let Some(w) = body["WorkingDir"].as_str().filter(|w| !w.is_empty()) {
            if !w.starts_with('/') {
                return Err(ApiError::bad(format!(
                    "the working directory '{w}' is invalid, it needs to be an absolute path"
                )));
            }
        }
        let e = Exec {
            id: random_id(),
            container: c.id.clone(),
            config: body.clone(),
            running: false,
            started: false,
            exit_code: None,
            pid: 0,
        };
        let mut all = self.execs.lock().unwrap_or_else(|e| e.into_inner());
        // Finished execs of containers that are gone are forgotten.
        let live: std::collections::BTreeSet<String> = self.list().into_iter().map(|c| c.id).collect();
        all.retain(|_, x| live.contains(&x.container));
        all.insert(e.id.clone(), e.clone());
        drop(all);
        let cmd = spec::strings(&body["Cmd"]).join(" ");
        self.container_event(&c, &format!("exec_create: {cmd}"), json!({"execID": e.id}));
        Ok(e)
    }

    /// The exec's OCI process: the container's, with the exec's command and settings.
    fn exec_process(&self, e: &Exec) -> ApiResult<Value> {
        let bundle = self.exec_dir(&e.container).join("config.json");
        let data = std::fs::read(&bundle)
            .map_err(|err| ApiError::conflict(format!("Container {} is not running: {err}", e.container)))?;
        let spec: Value = serde_json::from_slice(&data).map_err(|err| ApiError::internal(err.to_string()))?;
        let mut p = spec["process"].clone();
        let cfg = &e.config;
        p["args"] = json!(spec::strings(&cfg["Cmd"]));
        p["terminal"] = json!(e.tty());
        let mut env = spec::strings(&p["env"]);
        if e.tty() && !env.iter().any(|x| x.starts_with("TERM=")) {
            env.push("TERM=xterm".into());
        }
        for kv in spec::strings(&cfg["Env"]) {
            let k = kv.split('=').next().unwrap_or("").to_string();
            env.retain(|x| x.split('=').next() != Some(k.as_str()));
            env.push(kv);
        }
        p["env"] = json!(env);
        if let Some(w) = cfg["WorkingDir"].as_str().filter(|w| !w.is_empty()) {
            p["cwd"] = json!(w);
        }
        if let Some(u) = cfg["User"].as_str().filter(|u| !u.is_empty()) {
            let (uid, gid, extra) = spec::resolve_user(&self.dir(&e.container).join("rootfs"), u)?;
            p["user"] = json!({"uid": uid, "gid": gid, "additionalGids": extra});
        }
        if let Some([h, w]) = cfg["ConsoleSize"].as_array().map(|a| a.as_slice()) {
            if let (Some(h), Some(w)) = (h.as_u64(), w.as_u64()) {
                if h > 0 && w > 0 {
                    p["consoleSize"] = json!({"height": h, "width": w});
                }
            }
        }
        Ok(p)
    }

    /// `POST /exec/{id}/start`: run it; `client` (the hijacked connection) is attached first.
    /// Returns once the process has started (its end is recorded by a watcher thread).
    pub fn exec_start(self: &Arc<Self>, id: &str, client: Option<(UnixStream, Vec<u8>)>) -> ApiResult<()> {
        let e = {
            let mut all = self.execs.lock().unwrap_or_else(|e| e.into_inner());
            let e = all.get_mut(id).ok_or_else(|| ApiError::not_found(format!("No such exec instance: {id}")))?;
            if e.started {
                return Err(ApiError::conflict(format!("Error: Exec command {id} has already run")));
            }
            e.started = true;
            e.clone()
        };
        let c = self.find(&e.container)?;
        if !c.running() {
            return Err(ApiError::conflict(format!("Container {} is not running", c.id)));
        }
        let process = self.exec_process(&e)?;
        let dir = self.exec_dir_of(&e);
        let internal = |what: &str, err: &dyn std::fmt::Display| ApiError::internal(format!("{what}: {err}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|err| internal("creating the exec dir", &err))?;
        let pfile = dir.join("process.json");
        std::fs::write(&pfile, process.to_string()).map_err(|err| internal("writing the exec's process", &err))?;
        let stdin = e.config["AttachStdin"].as_bool().unwrap_or(false) && client.is_some();
        let mut cmd = self.berth_command();
        cmd.arg("monitor")
            .arg("--id")
            .arg(&e.container)
            .arg("--bundle")
            .arg(&dir)
            .arg("--runtime-root")
            .arg(self.runtime_root())
            .arg("--dir")
            .arg(&dir)
            .arg("--exec")
            .arg(&pfile);
        if e.tty() {
            cmd.arg("--tty");
        }
        if stdin {
            cmd.arg("--stdin").arg("--stdin-once");
        }
        let (out, err) =
            (e.config["AttachStdout"].as_bool().unwrap_or(false), e.config["AttachStderr"].as_bool().unwrap_or(false));
        let tty = e.tty();
        let r = self.launch_monitor(cmd, &dir, |sock| {
            if let Some((s, early)) = client {
                if let Err(err) = self.bridge(sock, s, early, stdin, out, err, tty) {
                    eprintln!("berth daemon: attach to exec {}: {err}", e.id);
                }
            }
        });
        let pid = match r {
            Ok(pid) => pid,
            Err(err) => {
                let code =
                    if err.message.contains("not found") || err.message.contains("No such file") { 127 } else { 126 };
                self.exec_update(&e.id, |x| x.exit_code = Some(code));
                // The monitor told the attached client (as dockerd does, in its stream).
                std::thread::sleep(std::time::Duration::from_millis(50));
                let _ = std::fs::remove_dir_all(&dir);
                return Err(err);
            }
        };
        self.exec_update(&e.id, |x| {
            x.running = true;
            x.pid = pid;
        });
        let cmd = spec::strings(&e.config["Cmd"]).join(" ");
        self.container_event(&c, &format!("exec_start: {cmd}"), json!({"execID": e.id}));
        let d = self.clone();
        let eid = e.id.clone();
        let cid = e.container.clone();
        std::thread::spawn(move || {
            let code = crate::daemon::wait_monitor(&dir);
            d.exec_update(&eid, |x| {
                x.running = false;
                x.exit_code = Some(code.unwrap_or(137));
            });
            if let Ok(c) = d.find(&cid) {
                d.container_event(&c, "exec_die", json!({"execID": eid, "exitCode": code.unwrap_or(137).to_string()}));
            }
            // The monitor lingers a moment after answering; its directory can go now.
            std::thread::sleep(std::time::Duration::from_millis(100));
            let _ = std::fs::remove_dir_all(&dir);
        });
        Ok(())
    }

    /// `POST /exec/{id}/resize`.
    pub fn exec_resize(&self, id: &str, h: u16, w: u16) -> ApiResult<()> {
        let e = self.exec_find(id)?;
        if let Ok(mut s) = UnixStream::connect(self.exec_dir_of(&e).join("monitor.sock")) {
            let _ = s.write_all(format!("resize {h} {w}\n").as_bytes());
            let mut line = String::new();
            let _ = BufReader::new(&s).read_line(&mut line);
        }
        Ok(())
    }

    /// Ids of the execs of one container (for inspect's `ExecIDs`).
    pub fn exec_ids(&self, container: &str) -> Vec<String> {
        let all = self.execs.lock().unwrap_or_else(|e| e.into_inner());
        all.values().filter(|e| e.container == container && e.running).map(|e| e.id.clone()).collect()
    }
}
