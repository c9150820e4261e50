//! `berth build --progress`: under a pseudo-terminal (`script`), `tty` draws BuildKit's view
//! (`[+] Building`, a line per step, CACHED on a rebuild, the running step's output as
//! `=> => #` lines, and for a failed RUN its output and the error); `plain` (and the default on
//! a pipe) is the legacy builder's text as before; a bad value is a one-line error.

mod common;

use common::engine::{err, out, Engine, BERTH};
use std::path::Path;
use std::process::{Command, Output, Stdio};

const DOCKERFILE: &str = "FROM bb:1
RUN echo first-layer > /f
RUN echo hello-from-run && sleep 1 && echo second-line
COPY a.txt /a.txt
";

fn berth(e: &Engine, args: &[&str]) -> Output {
    Command::new(BERTH).arg("-H").arg(&e.sock).arg("build").args(args).stdin(Stdio::null()).output().unwrap()
}

/// `berth build ARGS` with a terminal as stdin, stdout and stderr: (succeeded, what it showed).
fn berth_tty(e: &Engine, args: &str) -> (bool, String) {
    let cmd = format!("{BERTH} -H {} build {args}", e.sock.display());
    let o = Command::new("script")
        .args(["-qfec", &cmd, "/dev/null"])
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("script (util-linux)");
    (o.status.success(), format!("{}{}", out(&o), err(&o)))
}

fn write(dir: &Path, name: &str, data: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), data).unwrap();
}

#[test]
fn progress_tty_plain_and_bad_values() {
    let e = Engine::new("buildprog");
    let ctx = e.dir.join("ctx");
    write(&ctx, "Dockerfile", DOCKERFILE);
    write(&ctx, "a.txt", "a\n");
    let c = ctx.display();

    // A first build: the view with the RUN's output while it runs, then the final view.
    let (ok, shown) = berth_tty(&e, &format!("--progress=tty -t prog:1 {c}"));
    assert!(ok, "{shown}\n{}", e.log());
    assert!(shown.contains("[+] Building"), "{shown}");
    assert!(shown.contains(" => [1/4] FROM bb:1"), "{shown}");
    assert!(shown.contains(" => [3/4] RUN echo hello-from-run && sleep 1 && echo second-line"), "{shown}");
    assert!(shown.contains("=> => # hello-from-run"), "the running step's output: {shown}");
    assert!(shown.contains("FINISHED") && shown.contains("Successfully tagged prog:1"), "{shown}");
    assert!(!shown.contains("Step 1/4") && !shown.contains("---> Running in"), "{shown}");
    assert!(shown.contains("\x1b[2K"), "drawn in place: {shown}");

    // A rebuild: every step but FROM from the cache; a warning still shown.
    let (ok, shown) = berth_tty(&e, &format!("--progress=tty -t prog:2 --cache-from 127.0.0.1:1/nothere:1 {c}"));
    assert!(ok, "{shown}");
    assert!(shown.contains("WARNING: --cache-from 127.0.0.1:1/nothere:1"), "{shown}");
    for n in 2..=4 {
        assert!(shown.contains(&format!("=> CACHED [{n}/4]")), "{shown}");
    }

    // plain, and the default on a pipe: the legacy builder's lines, unchanged.
    let plain = berth(&e, &["--progress=plain", "-t", "prog:3", ctx.to_str().unwrap()]);
    assert!(plain.status.success(), "{}", err(&plain));
    let text = out(&plain);
    assert!(text.starts_with("Step 1/4 : FROM bb:1\n"), "{text}");
    assert!(text.contains("Step 3/4 : RUN echo hello-from-run") && text.contains(" ---> Using cache\n"), "{text}");
    assert!(!text.contains("[+] Building") && !err(&plain).contains("[+] Building"), "{text}");
    let default = berth(&e, &["-t", "prog:3", ctx.to_str().unwrap()]);
    assert_eq!(out(&default), text);
    // -q: the ID only, even with tty asked for.
    let (ok, shown) = berth_tty(&e, &format!("-q --progress=tty {c}"));
    assert!(ok && shown.trim().starts_with("sha256:") && !shown.contains("[+]"), "{shown}");

    // A failing RUN: its output and the error after the view.
    write(&ctx, "Dockerfile.fail", "FROM bb:1\nRUN echo visible-output; echo more-output; exit 3\n");
    let (ok, shown) = berth_tty(&e, &format!("--progress=tty -f {c}/Dockerfile.fail {c}"));
    assert!(!ok, "{shown}");
    assert!(shown.contains("ERROR [2/2] RUN echo visible-output"), "{shown}");
    let log = shown.rsplit(" > [2/2] RUN echo visible-output").next().unwrap();
    assert!(log.contains("visible-output") && log.contains("more-output"), "the step's output: {shown}");
    assert!(log.contains("returned a non-zero code: 3"), "{shown}");

    // A bad value: one line, before anything is sent.
    let o = berth(&e, &["--progress=bogus", ctx.to_str().unwrap()]);
    assert!(!o.status.success());
    let msg = err(&o);
    assert!(msg.contains("bogus") && msg.trim_end().lines().count() == 1, "{msg}");
}
