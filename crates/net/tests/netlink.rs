//! Real namespaces, real links, real traffic: a "host" namespace with a bridge and two
//! "container" namespaces wired to it by veth pairs, all made by this test (the machine's own
//! network is never touched); TCP between the containers through the bridge.

use berth_net::{netlink::Netlink, netns};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

struct Dir(PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        for e in std::fs::read_dir(&self.0).into_iter().flatten().flatten() {
            let _ = netns::remove(&e.path());
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn nl_in(ns: &Path) -> Netlink {
    netns::run_in(ns, Netlink::open).unwrap()
}

#[test]
fn a_bridge_and_veth_pairs_carry_tcp_between_namespaces() {
    let dir = Dir(std::env::temp_dir().join(format!("berth-net-{}", std::process::id())));
    let (host, c1, c2) = (dir.0.join("host"), dir.0.join("c1"), dir.0.join("c2"));
    for ns in [&host, &c1, &c2] {
        netns::create(ns).unwrap();
    }
    let mut h = nl_in(&host);
    h.create_bridge("br-test", None).unwrap();
    h.add_address("br-test", Ipv4Addr::new(10, 99, 0, 1), 24).unwrap();
    h.set_up("br-test").unwrap();
    // Creating it twice names the bridge and the kernel's reason.
    let e = h.create_bridge("br-test", None).unwrap_err().to_string();
    assert!(e.contains("br-test") && e.contains("exists"), "{e}");

    for (i, ns) in [(1u8, &c1), (2u8, &c2)] {
        let (vh, vc) = (format!("vh{i}"), format!("vc{i}"));
        h.create_veth(&vh, &vc, None).unwrap();
        h.set_master(&vh, "br-test").unwrap();
        h.set_up(&vh).unwrap();
        let f = std::fs::File::open(ns).unwrap();
        h.move_to_netns(&vc, &f).unwrap();
        assert!(h.link(&vc).unwrap().is_none(), "{vc} left in the host namespace");
        let mut c = nl_in(ns);
        c.rename(&vc, "eth0").unwrap();
        c.add_address("eth0", Ipv4Addr::new(10, 99, 0, 10 + i), 24).unwrap();
        c.set_up("eth0").unwrap();
        c.set_up("lo").unwrap();
        c.add_route(Ipv4Addr::UNSPECIFIED, 0, Some(Ipv4Addr::new(10, 99, 0, 1)), "eth0").unwrap();
        let eth0 = c.link("eth0").unwrap().unwrap();
        assert!(eth0.up);
        assert_eq!(eth0.mac.len(), 6);
    }
    let br = h.link("br-test").unwrap().unwrap();
    let links = h.links().unwrap();
    for vh in ["vh1", "vh2"] {
        let l = links.iter().find(|l| l.name == vh).unwrap();
        assert_eq!(l.master, Some(br.index), "{vh} is not on the bridge");
        assert!(l.up);
    }

    // TCP from c1 to c2 through the bridge.
    let listener = netns::run_in(&c2, || TcpListener::bind("10.99.0.12:7777")).unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        s.write_all(b"world").unwrap();
        (buf, peer)
    });
    let addr: SocketAddr = "10.99.0.12:7777".parse().unwrap();
    let mut s = netns::run_in(&c1, move || TcpStream::connect_timeout(&addr, Duration::from_secs(5))).unwrap();
    s.write_all(b"hello").unwrap();
    let mut back = [0u8; 5];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"world");
    let (got, peer) = server.join().unwrap();
    assert_eq!(&got, b"hello");
    assert_eq!(peer.ip().to_string(), "10.99.0.11");
    // The host side reaches a container too (the bridge's address is its gateway).
    let mut c1nl = nl_in(&c1);
    assert!(c1nl.link("eth0").unwrap().is_some());

    // Deleting the host end deletes the pair.
    h.delete_link("vh1").unwrap();
    assert!(c1nl.link("eth0").unwrap().is_none(), "the peer outlived its veth");
    h.delete_link("vh1").unwrap(); // already gone: fine
    h.delete_link("br-test").unwrap();
    assert!(h.link("br-test").unwrap().is_none());
}

#[test]
fn pinned_namespaces_are_removed_without_a_trace() {
    let dir = Dir(std::env::temp_dir().join(format!("berth-netns-{}", std::process::id())));
    let ns = dir.0.join("n");
    netns::create(&ns).unwrap();
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(mi.contains(ns.to_str().unwrap()));
    // A fresh namespace has only lo, down.
    let links = nl_in(&ns).links().unwrap();
    assert_eq!(links.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(), ["lo"]);
    assert!(!links[0].up);
    netns::remove(&ns).unwrap();
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mi.contains(ns.to_str().unwrap()));
    assert!(!ns.exists());
    netns::remove(&ns).unwrap(); // twice: fine
                                 // Joining a missing namespace names it.
    let e = netns::run_in(&ns, || Ok(())).unwrap_err().to_string();
    assert!(e.contains(ns.to_str().unwrap()), "{e}");
}

#[test]
fn the_bridge_driver_attaches_and_detaches_containers_cleanly() {
    use berth_net::bridge::{self, Endpoint};
    use berth_net::ipam::{Pool, Subnet};
    let dir = Dir(std::env::temp_dir().join(format!("berth-br-{}", std::process::id())));
    let (host, a, b) = (dir.0.join("host"), dir.0.join("a"), dir.0.join("b"));
    for ns in [&host, &a, &b] {
        netns::create(ns).unwrap();
    }
    let subnet: Subnet = "10.77.0.0/24".parse().unwrap();
    let pool = Pool::open(&dir.0.join("pool"), subnet, subnet.first_host()).unwrap();
    let mut h = nl_in(&host);
    bridge::ensure_bridge(&mut h, "berth-t0", pool.gateway, subnet).unwrap();
    bridge::ensure_bridge(&mut h, "berth-t0", pool.gateway, subnet).unwrap(); // idempotent
    let mut ips = Vec::new();
    for (id, ns) in [("aaaaaaaaaaaaaaaa", &a), ("bbbbbbbbbbbbbbbb", &b)] {
        let ip = pool.allocate(id, None).unwrap();
        let host_if = bridge::host_ifname(id);
        let ep = Endpoint {
            bridge: "berth-t0",
            host_if: &host_if,
            ifname: "eth0",
            address: ip,
            subnet,
            gateway: Some(pool.gateway),
            mtu: None,
        };
        bridge::attach(&mut h, ns, &ep).unwrap();
        let eth0 = nl_in(ns).link("eth0").unwrap().unwrap();
        assert_eq!(eth0.mac, berth_net::ipam::mac_for(ip).to_vec());
        ips.push(ip);
    }
    assert_eq!(ips, [Ipv4Addr::new(10, 77, 0, 2), Ipv4Addr::new(10, 77, 0, 3)]);

    // a -> b, and the host (the gateway address) -> a.
    let to_b = SocketAddr::new(ips[1].into(), 7001);
    let lb = netns::run_in(&b, move || TcpListener::bind(to_b)).unwrap();
    let to_a = SocketAddr::new(ips[0].into(), 7002);
    let la = netns::run_in(&a, move || TcpListener::bind(to_a)).unwrap();
    let sb = std::thread::spawn(move || lb.accept().map(|(_, p)| p.ip()).unwrap());
    let sa = std::thread::spawn(move || la.accept().map(|(_, p)| p.ip()).unwrap());
    netns::run_in(&a, move || TcpStream::connect_timeout(&to_b, Duration::from_secs(5))).unwrap();
    netns::run_in(&host, move || TcpStream::connect_timeout(&to_a, Duration::from_secs(5))).unwrap();
    assert_eq!(sb.join().unwrap().to_string(), "10.77.0.2");
    assert_eq!(sa.join().unwrap().to_string(), "10.77.0.1");

    // A failed attach (no such namespace) leaves no veth behind.
    let before = h.links().unwrap().len();
    let ep = Endpoint {
        bridge: "berth-t0",
        host_if: "vethcccccccccc",
        ifname: "eth0",
        address: Ipv4Addr::new(10, 77, 0, 9),
        subnet,
        gateway: None,
        mtu: None,
    };
    let e = bridge::attach(&mut h, &dir.0.join("missing"), &ep).unwrap_err().to_string();
    assert!(e.contains("missing"), "{e}");
    assert_eq!(h.links().unwrap().len(), before);

    for id in ["aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"] {
        bridge::detach(&mut h, &bridge::host_ifname(id)).unwrap();
        pool.release(id).unwrap();
    }
    let names: Vec<String> = h.links().unwrap().into_iter().map(|l| l.name).collect();
    assert_eq!(names, ["lo", "berth-t0"], "only the bridge is left");
    assert!(nl_in(&a).link("eth0").unwrap().is_none());
}

#[test]
fn published_ports_reach_a_container_through_nftables_dnat() {
    use berth_net::bridge::{self, Endpoint};
    use berth_net::firewall::{self, Network, Published};
    use berth_net::ipam::Subnet;
    let dir = Dir(std::env::temp_dir().join(format!("berth-fw-{}", std::process::id())));
    let (host, c) = (dir.0.join("host"), dir.0.join("c"));
    netns::create(&host).unwrap();
    netns::create(&c).unwrap();
    let subnet: Subnet = "10.78.0.0/24".parse().unwrap();
    let mut h = nl_in(&host);
    h.set_up("lo").unwrap();
    bridge::ensure_bridge(&mut h, "berth-f0", subnet.first_host(), subnet).unwrap();
    let ip = Ipv4Addr::new(10, 78, 0, 2);
    let ep = Endpoint {
        bridge: "berth-f0",
        host_if: "vethffffffffff",
        ifname: "eth0",
        address: ip,
        subnet,
        gateway: Some(subnet.first_host()),
        mtu: None,
    };
    bridge::attach(&mut h, &c, &ep).unwrap();
    let nets = vec![Network { bridge: "berth-f0".into(), subnet, internal: false }];
    let ports = vec![Published {
        proto: "tcp".into(),
        host_ip: Some(Ipv4Addr::LOCALHOST),
        host_port: 8080,
        container_ip: ip,
        container_port: 80,
    }];
    let (n2, p2) = (nets.clone(), ports.clone());
    netns::run_in(&host, move || firewall::apply("berth_test", &n2, &p2)).unwrap();
    // Applying again replaces the table (no duplicate rules, no error).
    let (n2, p2) = (nets.clone(), ports.clone());
    netns::run_in(&host, move || firewall::apply("berth_test", &n2, &p2)).unwrap();

    let listen = SocketAddr::new(ip.into(), 80);
    let l = netns::run_in(&c, move || TcpListener::bind(listen)).unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.write_all(b"from the container").unwrap();
    });
    let to: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    let mut s = netns::run_in(&host, move || TcpStream::connect_timeout(&to, Duration::from_secs(5))).unwrap();
    let mut got = String::new();
    s.read_to_string(&mut got).unwrap();
    assert_eq!(got, "from the container");
    server.join().unwrap();

    // Removing the table ends the forwarding.
    netns::run_in(&host, || firewall::remove("berth_test")).unwrap();
    netns::run_in(&host, || firewall::remove("berth_test")).unwrap(); // twice: fine
    let r = netns::run_in(&host, move || TcpStream::connect_timeout(&to, Duration::from_secs(2)));
    assert!(r.is_err(), "port 8080 still forwarded after the table went");
}
