//! The default bridge network through the engine, with real traffic: a busybox httpd published
//! on 127.0.0.1 answers the host; containers reach each other and the host by address;
//! conflicting ports are refused with nothing left; --add-host/--dns land in the files; after
//! stop, and after kill -9 of the daemon and a restart, no veth, namespace or rule is left that
//! no container needs. Each test daemon has a bridge and subnet of its own.

mod common;

use common::engine::{err, out, Engine};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// GET / from 127.0.0.1:port, retried while the server starts.
fn http_get(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = (|| -> std::io::Result<String> {
            let mut s =
                TcpStream::connect_timeout(&format!("127.0.0.1:{port}").parse().unwrap(), Duration::from_secs(2))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")?;
            let mut body = String::new();
            s.read_to_string(&mut body)?;
            Ok(body)
        })();
        match r {
            Ok(b) if !b.is_empty() => return b,
            _ if Instant::now() > deadline => panic!("no answer on 127.0.0.1:{port}: {r:?}"),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The links enslaved to the test daemon's bridge.
fn veths(e: &Engine) -> Vec<String> {
    let o = Command::new("ip").args(["-o", "link", "show", "master", &e.bridge]).output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1).map(|n| n.trim().split('@').next().unwrap_or("").to_string()))
        .collect()
}

fn nft_table(e: &Engine) -> String {
    let o = Command::new("nft").args(["list", "table", "ip", &format!("berth_{}", e.bridge)]).output().unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

const WEB: &str =
    "mkdir -p /www && echo hello from $(hostname) > /www/index.html && exec busybox httpd -f -p 80 -h /www";

#[test]
fn published_ports_bridge_traffic_and_cleanup() {
    let mut e = Engine::new("net");
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    e.ok(&["run", "-d", "--name", "web", "--hostname", "webhost", "-p", &publish, "bb:1", "sh", "-c", WEB]);
    let body = http_get(port);
    assert!(body.contains("hello from webhost"), "{body}");

    // Inspect, ps and port show the address and the binding.
    let ip = e.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "web"]).trim().to_string();
    let prefix = e.bip.rsplit_once('.').unwrap().0;
    assert!(ip.starts_with(&format!("{prefix}.")), "{ip} not in {}", e.bip);
    let gw =
        e.ok(&["inspect", "-f", "{{.NetworkSettings.Gateway}} {{.NetworkSettings.Networks.bridge.IPAddress}}", "web"]);
    assert_eq!(gw.trim(), format!("{prefix}.1 {ip}"));
    assert_eq!(e.ok(&["port", "web"]).trim(), format!("80/tcp -> 127.0.0.1:{port}"));
    let ps = e.ok(&["ps", "--format", "{{.Ports}}"]);
    assert_eq!(ps.trim(), format!("127.0.0.1:{port}->80/tcp"));
    assert_eq!(veths(&e).len(), 1, "{:?}", veths(&e));
    // Traffic shows in stats (the veth's counters); our CLI's live view redraws the table.
    let io = e.ok(&["stats", "--no-stream", "--format", "{{.NetIO}}", "web"]);
    assert!(io.contains(" / ") && io.trim() != "0B / 0B", "{io}");
    let mut live = Command::new(common::engine::BERTH)
        .args(["-H", e.sock.to_str().unwrap(), "stats", "web"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(3500));
    live.kill().unwrap();
    let shown = String::from_utf8_lossy(&live.wait_with_output().unwrap().stdout).into_owned();
    assert!(shown.matches("CONTAINER ID").count() >= 2 && shown.contains("web"), "{shown}");
    // The networks as docker shows them.
    let ls = e.ok(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    assert_eq!(ls.lines().collect::<Vec<_>>(), ["bridge bridge", "host host", "none null"], "{ls}");
    let subnet =
        e.ok(&["network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}}{{end}} {{len .Containers}}", "bridge"]);
    assert_eq!(subnet.trim(), format!("{prefix}.0/24 1"));
    let ours =
        Command::new(common::engine::BERTH).args(["-H", e.sock.to_str().unwrap(), "network", "ls"]).output().unwrap();
    let ours = out(&ours);
    let one = Command::new(common::engine::BERTH)
        .args(["-H", e.sock.to_str().unwrap(), "port", "web", "80"])
        .output()
        .unwrap();
    assert_eq!(out(&one).trim(), format!("127.0.0.1:{port}"));
    let none = Command::new(common::engine::BERTH)
        .args(["-H", e.sock.to_str().unwrap(), "port", "web", "81/udp"])
        .output()
        .unwrap();
    assert!(!none.status.success() && err(&none).contains("no public port '81/udp'"), "{}", err(&none));
    assert!(ours.starts_with("NETWORK ID") && ours.contains(" bridge ") && ours.lines().count() == 4, "{ours}");
    let o = e.docker(&["network", "create", "--driver", "overlay", "mynet"]);
    assert!(!o.status.success() && err(&o).contains("not supported"), "{}", err(&o));
    assert!(nft_table(&e).contains(&format!("dport {port} dnat to {ip}:80")), "{}", nft_table(&e));

    // Another container reaches it by address; its /etc/hosts names itself; --add-host, --dns.
    let o = e.ok(&[
        "run",
        "--rm",
        "--add-host",
        "db.example:10.1.2.3",
        "--dns",
        "192.0.2.53",
        "bb:1",
        "sh",
        "-c",
        &format!("busybox wget -qO- http://{ip}/ && grep db.example /etc/hosts && cat /etc/resolv.conf && busybox ip -4 -o addr show eth0"),
    ]);
    assert!(o.contains("hello from webhost"), "{o}");
    assert!(o.contains("10.1.2.3\tdb.example"), "{o}");
    assert!(o.contains("nameserver 192.0.2.53"), "{o}");
    assert!(o.contains(&format!("inet {prefix}.")), "{o}");

    // The container reaches the host through the gateway address.
    let host_srv = TcpListener::bind(format!("{prefix}.1:0")).unwrap();
    let hp = host_srv.local_addr().unwrap().port();
    let srv = std::thread::spawn(move || {
        let (mut s, peer) = host_srv.accept().unwrap();
        let mut buf = [0u8; 512];
        let _ = s.read(&mut buf);
        s.write_all(b"HTTP/1.0 200 OK\r\n\r\nfrom the host").unwrap();
        peer.ip().to_string()
    });
    let o = e.ok(&["run", "--rm", "bb:1", "busybox", "wget", "-qO-", &format!("http://{prefix}.1:{hp}/")]);
    assert_eq!(o, "from the host");
    assert!(srv.join().unwrap().starts_with(&format!("{prefix}.")));

    // The same host port again: refused at start, and nothing of that container's network stays.
    let o = e.docker(&["run", "-d", "--name", "clash", "-p", &publish, "bb:1", "sleep", "100"]);
    assert!(!o.status.success());
    assert!(err(&o).contains("port is already allocated"), "{}", err(&o));
    assert_eq!(veths(&e).len(), 1, "{:?}", veths(&e));
    e.ok(&["rm", "-f", "clash"]);
    // A random host port (-p 80) and -P.
    let id = e.ok(&["run", "-d", "-p", "80", "bb:1", "sh", "-c", WEB]).trim().to_string();
    let hp: u16 = e
        .ok(&["inspect", "-f", "{{(index (index .NetworkSettings.Ports \"80/tcp\") 0).HostPort}}", &id])
        .trim()
        .parse()
        .unwrap();
    assert!(hp >= 32768, "{hp}");
    assert!(http_get(hp).contains("hello from"));
    e.ok(&["rm", "-f", &id]);
    // Publishing with --network none is refused at create.
    let o = e.docker(&["create", "--network", "none", "-p", "8080:80", "bb:1", "true"]);
    assert!(!o.status.success() && err(&o).contains("conflicting options"), "{}", err(&o));

    // kill -9 of the daemon: the published server keeps answering, and after a restart too.
    e.kill9_daemon();
    assert!(http_get(port).contains("hello from webhost"));
    e.start_daemon();
    assert!(http_get(port).contains("hello from webhost"));
    assert_eq!(veths(&e).len(), 1);
    // Stop: veth, namespace, rule and address go.
    e.ok(&["stop", "-t", "1", "web"]);
    assert!(veths(&e).is_empty(), "{:?}", veths(&e));
    assert!(!nft_table(&e).contains("dnat"), "{}", nft_table(&e));
    assert!(e.mounts_left().is_empty(), "{:?}", e.mounts_left());
    assert!(TcpStream::connect_timeout(&format!("127.0.0.1:{port}").parse().unwrap(), Duration::from_secs(1)).is_err());
    // Started again: the same service, again reachable.
    e.ok(&["start", "web"]);
    assert!(http_get(port).contains("hello from webhost"));
    e.ok(&["rm", "-f", "web"]);
    assert!(veths(&e).is_empty());
    assert!(e.mounts_left().is_empty(), "{:?}", e.mounts_left());
    assert_eq!(std::fs::read_dir(e.dir.join("run/netns")).map(|r| r.count()).unwrap_or(0), 0);
}

#[test]
fn a_crash_mid_network_leaves_nothing_the_restart_does_not_clean() {
    let mut e = Engine::new("netcrash");
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    e.ok(&["run", "-d", "--name", "web", "-p", &publish, "bb:1", "sh", "-c", WEB]);
    assert!(http_get(port).contains("hello from"));
    // The container dies while the daemon is down: its veth, namespace and rule must go.
    let pid: i32 = e.ok(&["inspect", "-f", "{{.State.Pid}}", "web"]).trim().parse().unwrap();
    e.kill9_daemon();
    // SAFETY: kill(2) of the container process this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(300));
    e.start_daemon();
    let deadline = Instant::now() + Duration::from_secs(10);
    while e.ok(&["inspect", "-f", "{{.State.Status}}", "web"]).trim() != "exited" {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(veths(&e).is_empty(), "{:?}", veths(&e));
    assert!(!nft_table(&e).contains("dnat"), "{}", nft_table(&e));
    assert!(e.mounts_left().is_empty(), "{:?}", e.mounts_left());
    e.ok(&["rm", "web"]);
}

#[test]
fn user_networks_resolve_names_and_go_cleanly() {
    let e = Engine::new("usernet");
    let pid = std::process::id();
    let subnet = format!("10.{}.{}.0/24", 200 + pid % 50, e.bip.split('.').nth(2).unwrap());
    let gw = subnet.replace(".0/24", ".1");
    let id = e.ok(&["network", "create", "--subnet", &subnet, "--label", "purpose=test", "appnet"]).trim().to_string();
    assert_eq!(id.len(), 64);
    let o = e.docker(&["network", "create", "appnet"]);
    assert!(!o.status.success() && err(&o).contains("already exists"), "{}", err(&o));
    let o = e.docker(&["network", "create", "--subnet", &subnet, "other"]);
    assert!(!o.status.success() && err(&o).contains("overlaps"), "{}", err(&o));
    let shown = e.ok(&[
        "network",
        "inspect",
        "-f",
        "{{.Name}} {{.Driver}} {{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}}",
        "appnet",
    ]);
    assert_eq!(shown.trim(), format!("appnet bridge {subnet} {gw}"));
    assert!(e.ok(&["network", "ls", "--filter", "label=purpose=test", "-q"]).trim().len() == 12);

    e.ok(&["run", "-d", "--name", "web", "--network", "appnet", "--network-alias", "site", "bb:1", "sh", "-c", WEB]);
    let o = e.ok(&[
        "run",
        "--rm",
        "--network",
        "appnet",
        "bb:1",
        "sh",
        "-c",
        "cat /etc/resolv.conf; for n in web site; do for i in 1 2 3 4 5; do busybox wget -qO- http://$n/ && break; sleep 0.2; done; done",
    ]);
    assert!(o.contains(&format!("nameserver {gw}")), "{o}");
    assert_eq!(o.matches("hello from").count(), 2, "by name and by alias: {o}");
    let ip = e.ok(&["inspect", "-f", "{{.NetworkSettings.Networks.appnet.IPAddress}}", "web"]);
    assert!(ip.trim().starts_with(&subnet.replace(".0/24", ".")), "{ip}");
    // Our CLI: --network-alias, --add-host, --dns-search on a user network.
    let ours = Command::new(common::engine::BERTH)
        .args(["-H", e.sock.to_str().unwrap(), "run", "-d", "--name", "api", "--network", "appnet"])
        .args(["--network-alias", "backend", "--add-host", "gw:host-gateway", "--dns-search", "example.test"])
        .args(["bb:1", "sh", "-c", WEB])
        .output()
        .unwrap();
    assert!(ours.status.success(), "{}", err(&ours));
    let o = e.ok(&[
        "run",
        "--rm",
        "--network",
        "appnet",
        "bb:1",
        "sh",
        "-c",
        "for i in 1 2 3 4 5; do busybox wget -qO- http://backend/ && break; sleep 0.2; done",
    ]);
    assert!(o.contains("hello from"), "{o}");
    let files = e.ok(&["exec", "api", "sh", "-c", "grep gw /etc/hosts; grep search /etc/resolv.conf"]);
    assert!(files.contains(&format!("{gw}\tgw")) && files.contains("search example.test"), "{files}");
    e.ok(&["rm", "-f", "api"]);
    // A container on the default bridge does not see it by name (no DNS there, as Docker).
    // (busybox's `wget -T` crashes: `timeout` bounds it instead)
    let o = e.docker(&[
        "run",
        "--rm",
        "bb:1",
        "sh",
        "-c",
        "busybox timeout 3 busybox wget -qO- http://web/ 2>&1; echo rc=$?",
    ]);
    assert!(out(&o).contains("bad address 'web'") && out(&o).contains("rc=1"), "{}", out(&o));

    // An --internal network does not reach out: the host's listener on another network's
    // address answers a container on appnet, not one on the internal network.
    let host_ip = e.bip.split('/').next().unwrap().to_string();
    e.ok(&["run", "--rm", "bb:1", "true"]); // the default bridge (and so host_ip) exists now
    let l = TcpListener::bind(format!("{host_ip}:0")).unwrap();
    let lp = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let mut req = [0u8; 1024];
            let _ = s.read(&mut req);
            let _ = s.write_all(b"HTTP/1.0 200 OK\r\n\r\nreached");
        }
    });
    let url = format!("http://{host_ip}:{lp}/");
    assert_eq!(
        e.ok(&[
            "run",
            "--rm",
            "--network",
            "appnet",
            "bb:1",
            "busybox",
            "timeout",
            "5",
            "busybox",
            "wget",
            "-qO-",
            &url
        ]),
        "reached"
    );
    let isub = format!("10.{}.{}.0/24", 250 + std::process::id() % 5, e.bip.split('.').nth(2).unwrap());
    e.ok(&["network", "create", "--internal", "--subnet", &isub, "closed"]);
    let o = e.docker(&[
        "run",
        "--rm",
        "--network",
        "closed",
        "bb:1",
        "sh",
        "-c",
        &format!("busybox timeout 3 busybox wget -qO- {url} 2>&1; echo rc=$?"),
    ]);
    assert!(!out(&o).contains("reached") && !out(&o).contains("rc=0"), "an internal network reached out: {}", out(&o));
    assert!(out(&o).contains("unreachable") || out(&o).contains("rc=143") || out(&o).contains("rc=1"), "{}", out(&o));
    e.ok(&["network", "rm", "closed"]);
    // In use: refused; then removed, with its bridge and rules.
    let o = e.docker(&["network", "rm", "appnet"]);
    assert!(!o.status.success() && err(&o).contains("active endpoints"), "{}", err(&o));
    e.ok(&["rm", "-f", "web"]);
    e.ok(&["network", "rm", "appnet"]);
    let br = format!("br-{}", &id[..12]);
    assert!(!Command::new("ip").args(["link", "show", &br]).output().unwrap().status.success(), "{br} left");
    assert!(!nft_table(&e).contains(&br), "{}", nft_table(&e));
    assert_eq!(e.ok(&["network", "ls", "-q"]).lines().count(), 3);
    let o = e.docker(&["run", "--rm", "--network", "appnet", "bb:1", "true"]);
    assert!(!o.status.success() && err(&o).contains("not found"), "{}", err(&o));
}

/// Runs `ip` with these arguments; panics with its stderr on failure.
fn ip(args: &[&str]) {
    let o = Command::new("ip").args(args).output().unwrap();
    assert!(o.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn another_host_reaches_a_published_port() {
    let e = Engine::new("nethost");
    // "Another host": a network namespace of this test's own, a veth to the host, a /30.
    let pid = std::process::id();
    let (ns, hv, pv) = (format!("bpeer{pid}"), format!("bh{pid}"), format!("bp{pid}"));
    let net = format!("10.{}.{}", 200 + pid % 50, 250 + pid % 5);
    let (host_addr, peer_addr) = (format!("{net}.1"), format!("{net}.2"));
    struct Cleanup(String, String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["link", "del", &self.1]).status();
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let _c = Cleanup(ns.clone(), hv.clone());
    ip(&["netns", "add", &ns]);
    ip(&["link", "add", &hv, "type", "veth", "peer", "name", &pv]);
    ip(&["link", "set", &pv, "netns", &ns]);
    ip(&["addr", "add", &format!("{host_addr}/30"), "dev", &hv]);
    ip(&["link", "set", &hv, "up"]);
    ip(&["-n", &ns, "addr", "add", &format!("{peer_addr}/30"), "dev", &pv]);
    ip(&["-n", &ns, "link", "set", &pv, "up"]);
    ip(&["-n", &ns, "link", "set", "lo", "up"]);

    let port = free_port();
    e.ok(&["run", "-d", "--name", "web", "--hostname", "pub", "-p", &format!("{port}:80"), "bb:1", "sh", "-c", WEB]);
    assert!(http_get(port).contains("hello from pub"));
    // From the other host, to the host's address on the link between them.
    let url = format!("http://{host_addr}:{port}/");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let o = Command::new("ip")
            .args(["netns", "exec", &ns, "busybox", "timeout", "3", "busybox", "wget", "-qO-", &url])
            .output()
            .unwrap();
        let body = String::from_utf8_lossy(&o.stdout).into_owned();
        if body.contains("hello from pub") {
            break;
        }
        assert!(Instant::now() < deadline, "{url} from {ns}: {body}{}", String::from_utf8_lossy(&o.stderr));
        std::thread::sleep(Duration::from_millis(200));
    }
    e.ok(&["rm", "-f", "web"]);
    let o = Command::new("ip")
        .args(["netns", "exec", &ns, "busybox", "timeout", "3", "busybox", "wget", "-qO-", &url])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&o.stdout).contains("hello"), "still published after rm");
}

/// The links enslaved to bridge `br`.
fn links_on(br: &str) -> Vec<String> {
    let o = Command::new("ip").args(["-o", "link", "show", "master", br]).output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1).map(|n| n.trim().split('@').next().unwrap_or("").to_string()))
        .collect()
}

/// `busybox wget -qO- http://<host>/` from inside `ctr`, bounded (busybox's `wget -T` crashes).
fn fetch_in(e: &Engine, ctr: &str, host: &str) -> String {
    let cmd = format!("busybox timeout 3 busybox wget -qO- http://{host}/ 2>&1; echo rc=$?");
    out(&e.docker(&["exec", ctr, "sh", "-c", &cmd]))
}

#[test]
fn connect_disconnect_and_a_shared_namespace() {
    let mut e = Engine::new("connect");
    let n = e.bip.split('.').nth(2).unwrap().to_string();
    let pid = std::process::id();
    let (sa, sb) = (format!("10.{}.{n}.0/24", 200 + pid % 50), format!("10.{}.{n}.0/24", 250 + pid % 5));
    let a_id = e.ok(&["network", "create", "--subnet", &sa, "neta"]).trim().to_string();
    let b_id = e.ok(&["network", "create", "--subnet", &sb, "netb"]).trim().to_string();
    let (bra, brb) = (format!("br-{}", &a_id[..12]), format!("br-{}", &b_id[..12]));
    e.ok(&["run", "-d", "--name", "one", "-h", "one", "--network", "neta", "bb:1", "sh", "-c", WEB]);
    e.ok(&["run", "-d", "--name", "two", "-h", "two", "--network", "netb", "bb:1", "sh", "-c", WEB]);
    assert!(fetch_in(&e, "one", "two").contains("bad address"), "two is on another network");

    // Connect a running container: a second interface, names of both networks resolve.
    e.ok(&["network", "connect", "--alias", "uno", "netb", "one"]);
    let addrs = e.ok(&["exec", "one", "busybox", "ip", "-4", "-o", "addr"]);
    assert!(addrs.contains("eth0") && addrs.contains("eth1"), "{addrs}");
    assert!(addrs.contains(&sb.replace(".0/24", ".")), "{addrs}");
    let routes = e.ok(&["exec", "one", "busybox", "ip", "route"]);
    assert_eq!(routes.matches("default").count(), 1, "one default route, through neta: {routes}");
    assert!(fetch_in(&e, "one", "two").contains("hello from two"));
    assert!(fetch_in(&e, "two", "uno").contains("hello from one"), "the alias on netb");
    let nets =
        e.ok(&["inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}={{$v.IPAddress}} {{end}}", "one"]);
    assert!(nets.contains("neta=10.") && nets.contains("netb=10."), "{nets}");
    assert_eq!(links_on(&brb).len(), 2, "two veths on netb: {:?}", links_on(&brb));
    let o = e.docker(&["network", "connect", "netb", "one"]);
    assert!(!o.status.success() && err(&o).contains("already exists"), "{}", err(&o));

    // Another container in one's network namespace: its hostname, its addresses, its lo.
    let o = e.ok(&[
        "run",
        "--rm",
        "--network",
        "container:one",
        "bb:1",
        "sh",
        "-c",
        "hostname; busybox ip -4 -o addr | grep -c eth; busybox timeout 3 busybox wget -qO- http://127.0.0.1/",
    ]);
    assert_eq!(o.lines().collect::<Vec<_>>(), ["one", "2", "hello from one"], "{o}");
    let o = e.docker(&["run", "--rm", "--network", "container:one", "-p", "81:80", "bb:1", "true"]);
    assert!(!o.status.success() && err(&o).contains("conflicting options"), "{}", err(&o));
    let o = e.docker(&["run", "--rm", "--network", "container:nosuch", "bb:1", "true"]);
    assert!(!o.status.success() && err(&o).contains("No such container"), "{}", err(&o));

    // Disconnect: the interface, the name and the veth go.
    e.ok(&["network", "disconnect", "netb", "one"]);
    assert!(!e.ok(&["exec", "one", "busybox", "ip", "-4", "-o", "addr"]).contains("eth1"));
    assert!(fetch_in(&e, "one", "two").contains("bad address"));
    let o = fetch_in(&e, "two", "uno");
    assert!(o.contains("bad address"), "{o}");
    assert_eq!(links_on(&brb).len(), 1, "{:?}", links_on(&brb));
    let o = e.docker(&["network", "disconnect", "netb", "one"]);
    assert!(!o.status.success() && err(&o).contains("not connected"), "{}", err(&o));

    // A created container connected before it starts gets both at start, and keeps them
    // across a kill -9 of the daemon.
    e.ok(&["create", "--name", "three", "--network", "neta", "bb:1", "sleep", "1000"]);
    e.ok(&["network", "connect", "netb", "three"]);
    e.ok(&["start", "three"]);
    e.kill9_daemon();
    e.start_daemon();
    assert!(fetch_in(&e, "three", "two").contains("hello from two"));
    assert!(fetch_in(&e, "three", "one").contains("hello from one"));
    assert_eq!(links_on(&brb).len(), 2, "{:?}", links_on(&brb));
    let o = e.docker(&["network", "rm", "netb"]);
    assert!(!o.status.success() && err(&o).contains("active endpoints"), "{}", err(&o));

    e.ok(&["rm", "-f", "one", "two", "three"]);
    assert!(links_on(&bra).is_empty() && links_on(&brb).is_empty(), "{:?} {:?}", links_on(&bra), links_on(&brb));
    e.ok(&["network", "rm", "neta", "netb"]);
    assert!(veths(&e).is_empty(), "{:?}", veths(&e));
    assert!(e.mounts_left().is_empty(), "{:?}", e.mounts_left());
}

#[test]
fn udp_ports_are_published() {
    let e = Engine::new("udp");
    // busybox has no UDP server: a static echo server of the test's own goes into the image.
    let root = e.dir.join("bbroot");
    let o = Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(root.join("bin/udpecho"))
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/udpecho.c"))
        .output()
        .expect("gcc (scripts/deps.sh test)");
    assert!(o.status.success(), "gcc: {}", String::from_utf8_lossy(&o.stderr));
    let tar = e.dir.join("udp.tar");
    assert!(Command::new("tar").arg("-C").arg(&root).arg("-cf").arg(&tar).arg(".").status().unwrap().success());
    e.ok(&["import", tar.to_str().unwrap(), "udp:1"]);
    let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    e.ok(&["run", "-d", "--name", "echo", "-p", &format!("127.0.0.1:{port}:7/udp"), "udp:1", "udpecho", "7"]);
    let ports = e.ok(&["port", "echo"]);
    assert_eq!(ports.trim(), format!("7/udp -> 127.0.0.1:{port}"));
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 64];
    let got = loop {
        s.send_to(b"ping over udp", ("127.0.0.1", port)).unwrap();
        if let Ok((n, from)) = s.recv_from(&mut buf) {
            break (buf[..n].to_vec(), from.port());
        }
        assert!(Instant::now() < deadline, "no UDP echo on 127.0.0.1:{port}: {}", e.log());
    };
    assert_eq!(got, (b"ping over udp".to_vec(), port), "the echo comes back from the published port");
    assert!(nft_table(&e).contains(&format!("udp dport {port}")), "{}", nft_table(&e));
    e.ok(&["rm", "-f", "echo"]);
    assert!(!nft_table(&e).contains(&format!("dport {port}")), "{}", nft_table(&e));
    assert!(veths(&e).is_empty(), "{:?}", veths(&e));
}
