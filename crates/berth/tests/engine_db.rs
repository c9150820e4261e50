//! The seed's database example, end to end: a Debian root filesystem with mariadb-server
//! (debootstrap, `scripts/rootfs-mariadb.sh`, cached under `target/test-cache`) is imported with
//! `docker import`, run with `-e`, `-p` and `-v` as a user would, and the host's `mariadb` client
//! writes rows through the published port; `docker stop` shuts the server down cleanly (SIGTERM
//! to pid 1, not the timeout's SIGKILL); after `docker rm -f` a new container on the same named
//! volume serves the same rows. At the end nothing is left: containers, volume, image, mounts,
//! veths, NAT rules. Needs `debootstrap` and `mariadb-client` on the host (and the network to a
//! Debian mirror the first time).

mod common;

use common::engine::{err, out, Engine};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const IMAGE: &str = "seed-mariadb:1";
const VOLUME: &str = "seed-data";
/// Quotes, a space and a backslash: the entrypoint must pass them through to SQL intact.
const PASSWORD: &str = "se'cr et\\pw";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// A host tool the test cannot do without: a clear failure, not a silent skip.
fn require(tool: &str, package: &str) {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"])
        .any(|d| !d.is_empty() && Path::new(d).join(tool).is_file());
    assert!(
        found,
        "`{tool}` is missing on the host: install the Debian package `{package}` (apt-get install -y {package})"
    );
}

/// The root filesystem tarball, built once and cached (the script reuses a tarball newer than it).
fn rootfs() -> PathBuf {
    let ws = workspace();
    let tar = ws.join("target/test-cache/mariadb-rootfs.tar");
    let t = Instant::now();
    let o = Command::new(ws.join("scripts/rootfs-mariadb.sh")).arg(&tar).output().unwrap();
    print!("{}", out(&o));
    assert!(o.status.success(), "scripts/rootfs-mariadb.sh failed:\n{}{}", out(&o), err(&o));
    eprintln!("rootfs ready in {:?}", t.elapsed());
    tar
}

/// The host's `mariadb` client, as root, over TCP to the published port.
fn sql(port: u16, db: &str, query: &str) -> Output {
    Command::new("mariadb")
        .arg("--no-defaults")
        .args(["--protocol=tcp", "-h", "127.0.0.1", "-P", &port.to_string(), "-u", "root"])
        .arg(format!("--password={PASSWORD}"))
        .args(["--connect-timeout=2", "--default-character-set=utf8mb4", "--batch", "--raw", "--skip-column-names"])
        .args(["-e", query])
        .args((!db.is_empty()).then_some(db))
        .output()
        .expect("the mariadb client (apt-get install -y mariadb-client)")
}

fn sql_ok(e: &Engine, port: u16, db: &str, query: &str) -> String {
    let o = sql(port, db, query);
    assert!(o.status.success(), "mariadb -e {query:?}: {}{}\ncontainer logs:\n{}", out(&o), err(&o), logs(e, "db"));
    out(&o)
}

fn logs(e: &Engine, name: &str) -> String {
    let o = e.docker(&["logs", name]);
    format!("{}{}", out(&o), err(&o))
}

/// Until the server answers the host's client through the published port (the first start
/// initialises the data directory first); the container's logs if it exits or never answers.
fn wait_ready(e: &Engine, port: u16) {
    let t = Instant::now();
    let deadline = t + Duration::from_secs(120);
    loop {
        let o = sql(port, "", "SELECT 1");
        if o.status.success() && out(&o) == "1\n" {
            eprintln!("server answered after {:?}", t.elapsed());
            return;
        }
        let running = e.ok(&["inspect", "-f", "{{.State.Running}}", "db"]);
        assert_eq!(running.trim(), "true", "the database container exited; its logs:\n{}", logs(e, "db"));
        assert!(
            Instant::now() < deadline,
            "no answer on 127.0.0.1:{port} within 120 s: {}\ncontainer logs:\n{}",
            err(&o),
            logs(e, "db")
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn run_db(e: &Engine, port: u16) -> String {
    run_image(e, port, IMAGE)
}

fn run_image(e: &Engine, port: u16, image: &str) -> String {
    let publish = format!("127.0.0.1:{port}:3306");
    let volume = format!("{VOLUME}:/var/lib/mysql");
    let root_pw = format!("MYSQL_ROOT_PASSWORD={PASSWORD}");
    let id = e.ok(&[
        "run",
        "-d",
        "--name",
        "db",
        "-e",
        &root_pw,
        "-e",
        "MYSQL_DATABASE=seed",
        "-p",
        &publish,
        "-v",
        &volume,
        image,
    ]);
    id.trim().to_string()
}

const ROWS: &str = "1\tAda Lovelace\t1815-12-10\n2\tGrace O'Hara\t1906-12-09\n3\tZoë \\ Back\t2000-01-01\n";

/// The three rows, written from the host.
fn write_rows(e: &Engine, port: u16) {
    sql_ok(
        e,
        port,
        "seed",
        "CREATE TABLE crew (id INT PRIMARY KEY, name VARCHAR(64) NOT NULL, born DATE) ENGINE=InnoDB;
         INSERT INTO crew VALUES (1, 'Ada Lovelace', '1815-12-10'), (2, 'Grace O''Hara', '1906-12-09'),
                                 (3, 'Zoë \\\\ Back', '2000-01-01');",
    );
}

fn read_rows(e: &Engine, port: u16) -> String {
    sql_ok(e, port, "seed", "SELECT id, name, born FROM crew ORDER BY id")
}

#[test]
fn mariadb_from_a_debootstrap_image_keeps_its_rows_on_a_volume() {
    let started = Instant::now();
    require("debootstrap", "debootstrap");
    require("mariadb", "mariadb-client");
    let tar = rootfs();
    let e = Engine::new("db");
    let t = Instant::now();
    e.ok(&["import", "--change", r#"ENTRYPOINT ["/usr/local/bin/db-entrypoint"]"#, tar.to_str().unwrap(), IMAGE]);
    eprintln!("docker import in {:?}", t.elapsed());
    let ep = e.ok(&["image", "inspect", "-f", "{{json .Config.Entrypoint}}", IMAGE]);
    assert_eq!(ep.trim(), r#"["/usr/local/bin/db-entrypoint"]"#);

    // First start: an empty named volume, initialised by the entrypoint from -e.
    let port = free_port();
    run_db(&e, port);
    wait_ready(&e, port);
    assert!(logs(&e, "db").contains("db-entrypoint: initialising /var/lib/mysql"), "{}", logs(&e, "db"));
    let dbs = sql_ok(&e, port, "", "SHOW DATABASES");
    assert!(dbs.lines().any(|l| l == "seed"), "MYSQL_DATABASE=seed was not created: {dbs}");
    // The host reached the server through the bridge: as root@'%', not a local account.
    assert_eq!(sql_ok(&e, port, "", "SELECT CURRENT_USER()"), "root@%\n");
    let mounts = e.ok(&["inspect", "-f", "{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}}{{end}}", "db"]);
    assert_eq!(mounts.trim(), format!("volume {VOLUME} /var/lib/mysql"));
    assert_eq!(e.ok(&["port", "db", "3306"]).trim(), format!("127.0.0.1:{port}"));

    // Rows written from the host.
    write_rows(&e, port);
    assert_eq!(read_rows(&e, port), ROWS);

    // docker stop: SIGTERM to mariadbd (pid 1), a clean shutdown well within the 10 s timeout.
    let t = Instant::now();
    e.ok(&["stop", "db"]);
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "docker stop took {took:?}: SIGTERM did not stop mariadbd\n{}",
        logs(&e, "db")
    );
    assert_eq!(e.ok(&["inspect", "-f", "{{.State.Running}} {{.State.ExitCode}}", "db"]).trim(), "false 0");
    assert!(logs(&e, "db").contains("mariadbd: Shutdown complete"), "{}", logs(&e, "db"));
    assert!(TcpStream::connect_timeout(&format!("127.0.0.1:{port}").parse().unwrap(), Duration::from_secs(1)).is_err());
    e.ok(&["start", "db"]);
    wait_ready(&e, port);
    assert_eq!(read_rows(&e, port), ROWS);

    // Removed with -f (SIGKILL): the volume stays, and a new container on it serves the same rows
    // with the same password, without initialising again.
    e.ok(&["rm", "-f", "db"]);
    assert_eq!(e.ok(&["ps", "-aq"]), "");
    assert_eq!(e.ok(&["volume", "ls", "-q"]), format!("{VOLUME}\n"));
    run_db(&e, port);
    wait_ready(&e, port);
    assert!(!logs(&e, "db").contains("initialising"), "the data on the volume was not reused:\n{}", logs(&e, "db"));
    assert_eq!(read_rows(&e, port), ROWS);
    assert_eq!(sql_ok(&e, port, "seed", "SELECT COUNT(*) FROM crew"), "3\n");

    // Everything goes, and nothing is left.
    e.ok(&["rm", "-f", "db"]);
    e.ok(&["volume", "rm", VOLUME]);
    e.ok(&["rmi", IMAGE]);
    assert_eq!(e.ok(&["ps", "-aq"]), "");
    assert_eq!(e.ok(&["volume", "ls", "-q"]), "");
    assert_eq!(e.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]), "bb:1\n");
    assert!(e.mounts_left().is_empty(), "{:?}", e.mounts_left());
    assert!(!e.dir.join("data/volumes").join(VOLUME).exists(), "the volume's directory is left");
    let veths = Command::new("ip").args(["-o", "link", "show", "master", &e.bridge]).output().unwrap();
    assert_eq!(out(&veths), "", "veths left on {}", e.bridge);
    let nft = Command::new("nft").args(["list", "table", "ip", &format!("berth_{}", e.bridge)]).output().unwrap();
    assert!(!out(&nft).contains("dnat"), "{}", out(&nft));
    assert!(TcpStream::connect_timeout(&format!("127.0.0.1:{port}").parse().unwrap(), Duration::from_secs(1)).is_err());
    eprintln!("the database example took {:?}", started.elapsed());
}

/// Build's seed: the same database image built from `examples/mariadb/Dockerfile` (`FROM` a
/// Debian root filesystem imported from debootstrap, `RUN apt-get install mariadb-server` over
/// the build's bridge network, the entrypoint COPYed in) by `DOCKER_BUILDKIT=0 docker build`,
/// then run with -e/-p/-v and used from the host's client; rebuilt from the cache untouched.
#[test]
fn mariadb_image_built_from_the_example_dockerfile() {
    let started = Instant::now();
    require("debootstrap", "debootstrap");
    require("mariadb", "mariadb-client");
    let ws = workspace();
    let tar = ws.join("target/test-cache/debian-minbase.tar");
    let o = Command::new(ws.join("scripts/rootfs-debian.sh")).arg(&tar).output().unwrap();
    assert!(o.status.success(), "scripts/rootfs-debian.sh failed:\n{}{}", out(&o), err(&o));
    let e = Engine::new("dbbuild");
    e.ok(&["import", tar.to_str().unwrap(), "debian-minbase:bookworm"]);
    let build = |extra: &[&str]| {
        Command::new("docker")
            .env("DOCKER_HOST", format!("unix://{}", e.sock.display()))
            .env("DOCKER_BUILDKIT", "0")
            .args(["build", "-t", "seed-mariadb:built"])
            .args(extra)
            .arg(ws.join("examples/mariadb"))
            .output()
            .unwrap()
    };
    let t = Instant::now();
    let o = build(&[]);
    assert!(o.status.success(), "docker build examples/mariadb:\n{}{}", out(&o), err(&o));
    eprintln!("image built in {:?}", t.elapsed());
    assert!(out(&o).contains("Setting up mariadb-server"), "{}", out(&o));
    let cfg = e.ok(&[
        "image",
        "inspect",
        "-f",
        "{{json .Config.Entrypoint}} {{json .Config.ExposedPorts}} {{json .Config.Volumes}}",
        "seed-mariadb:built",
    ]);
    assert_eq!(cfg.trim(), r#"["/usr/local/bin/db-entrypoint"] {"3306/tcp":{}} {"/var/lib/mysql":{}}"#);
    // Untouched: every step from the cache, the same image.
    let id = e.ok(&["image", "inspect", "-f", "{{.Id}}", "seed-mariadb:built"]);
    let o = build(&[]);
    assert!(o.status.success() && !out(&o).contains("Running in"), "{}{}", out(&o), err(&o));
    assert_eq!(e.ok(&["image", "inspect", "-f", "{{.Id}}", "seed-mariadb:built"]), id);

    let port = free_port();
    run_image(&e, port, "seed-mariadb:built");
    wait_ready(&e, port);
    write_rows(&e, port);
    assert_eq!(read_rows(&e, port), ROWS);
    e.ok(&["rm", "-f", "db"]);
    run_image(&e, port, "seed-mariadb:built");
    wait_ready(&e, port);
    assert_eq!(read_rows(&e, port), ROWS);
    e.ok(&["rm", "-f", "db"]);
    e.ok(&["volume", "rm", VOLUME]);
    e.ok(&["rmi", "seed-mariadb:built", "debian-minbase:bookworm"]);
    assert!(e.mounts_left().is_empty(), "{:?}", e.mounts_left());
    eprintln!("the built database example took {:?}", started.elapsed());
}
