//! Berth as the OCI runtime of the real engines: runs `tests/docker_podman.sh`, which starts a
//! private dockerd (with its own containerd) and a private podman store, both driving a symlink
//! named `berth-runc` to the binary under test, and asserts every check passes (as root).

use std::path::Path;
use std::process::Command;

const BERTH: &str = env!("CARGO_BIN_EXE_berth");
const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

#[test]
fn docker_and_podman_use_berth_as_runtime() {
    let script = Path::new(WORKSPACE).join("tests/docker_podman.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(BERTH)
        .current_dir(WORKSPACE)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} {BERTH} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        script.display(),
        out.status
    );
    // The script prints one PASS line per check; a run that checked nothing is no proof.
    let passed = stdout.lines().filter(|l| l.starts_with("PASS ")).count();
    assert!(passed >= 40, "only {passed} checks passed:\n{stdout}");
}
