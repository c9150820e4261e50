//! Networking in the engine: Docker's default `bridge` network (a Linux bridge, `berth0` and
//! 172.29.0.0/16 unless the daemon is told otherwise), a pinned network namespace per running
//! container wired to it by a veth pair, published ports, and the nftables table that always
//! equals the engine's state (rewritten whole on every change and at daemon start).
//!
//! ```text
//! <data-root>/network/bridge.ipam     addresses handed out (berth_net::ipam::Pool)
//! <exec-root>/netns/<id16>            the container's pinned network namespace while it runs
//! host: veth<11 hex of id> on the bridge  <->  container: eth0 (address, 02:42 MAC, default route)
//! ```
//!
//! Invariants: a container's namespace, veth, address and ports exist exactly while its
//! record says it runs with a network (`Container::network`); `teardown` is idempotent and
//! every failure in `setup` tears down what it made; after a crash, `recover` removes what no
//! running container owns and writes the nftables table afresh.

use crate::http::{ApiError, ApiResult};
use berth_net::bridge::{self, Endpoint};
use berth_net::firewall::{self, Published};
use berth_net::ipam::{mac_for, Pool, Subnet};
use berth_net::{netlink::Netlink, netns};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The daemon's choices for its default bridge network.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// The bridge device (`--bridge`).
    pub bridge: String,
    /// The subnet and the bridge's (gateway) address (`--bip 172.29.0.1/16`).
    pub subnet: Subnet,
    pub gateway: Ipv4Addr,
}

impl Default for NetConfig {
    fn default() -> NetConfig {
        let subnet: Subnet = "172.29.0.0/16".parse().expect("a valid default subnet");
        NetConfig { bridge: "berth0".into(), gateway: subnet.first_host(), subnet }
    }
}

impl NetConfig {
    /// From `--bip` (gateway address with prefix, as dockerd's) and `--bridge`.
    pub fn parse(bridge: &str, bip: &str) -> Result<NetConfig, String> {
        let (ip, prefix) =
            bip.split_once('/').ok_or_else(|| format!("invalid --bip {bip:?}: expected ADDRESS/PREFIX"))?;
        let gateway: Ipv4Addr =
            ip.parse().map_err(|_| format!("invalid --bip {bip:?}: {ip:?} is not an IPv4 address"))?;
        let p: u8 = prefix.parse().map_err(|_| format!("invalid --bip {bip:?}: bad prefix length"))?;
        let mask = if p == 0 { 0 } else { u32::MAX << (32 - p.min(32) as u32) };
        let subnet: Subnet = format!("{}/{p}", Ipv4Addr::from(u32::from(gateway) & mask))
            .parse()
            .map_err(|e| format!("invalid --bip {bip:?}: {e}"))?;
        if bridge.is_empty()
            || bridge.len() > 15
            || !bridge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!("invalid --bridge {bridge:?}: 1-15 letters, digits, '-' or '_'"));
        }
        Ok(NetConfig { bridge: bridge.into(), subnet, gateway })
    }

    /// The nftables table of this engine (one per bridge, so engines never share one).
    pub fn table(&self) -> String {
        format!("berth_{}", self.bridge.replace('-', "_"))
    }
}

/// One published port of a container, as recorded.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PortMap {
    pub proto: String,
    /// "" for every local address.
    pub host_ip: String,
    pub host_port: u16,
    pub container_port: u16,
}

/// A running container's place on the network, as recorded in its record.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct Attached {
    pub network: String,
    pub ip: String,
    pub prefix: u8,
    pub gateway: String,
    pub mac: String,
    #[serde(default)]
    pub ports: Vec<PortMap>,
}

pub struct Networking {
    pub cfg: NetConfig,
    exec_root: PathBuf,
    pool: Pool,
    /// Published ports in effect: container id → (its address, its ports).
    ports: Mutex<BTreeMap<String, (Ipv4Addr, Vec<PortMap>)>>,
    /// Serialises bridge creation and table writes.
    lock: Mutex<()>,
}

fn internal(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("{what}: {e}"))
}

impl Networking {
    pub fn open(data_root: &Path, exec_root: &Path, cfg: NetConfig) -> Result<Networking, String> {
        let pool = Pool::open(&data_root.join("network").join("bridge.ipam"), cfg.subnet, cfg.gateway)
            .map_err(|e| format!("opening the address pool: {e}"))?;
        Ok(Networking {
            cfg,
            exec_root: exec_root.to_path_buf(),
            pool,
            ports: Mutex::new(BTreeMap::new()),
            lock: Mutex::new(()),
        })
    }

    pub fn netns_path(&self, id: &str) -> PathBuf {
        self.exec_root.join("netns").join(&id[..16.min(id.len())])
    }

    fn netlink(&self) -> ApiResult<Netlink> {
        Netlink::open().map_err(|e| internal("opening a netlink socket", e))
    }

    /// Write the nftables table from the ports in effect.
    fn write_rules(&self) -> ApiResult<()> {
        let ports = self.ports.lock().unwrap_or_else(|e| e.into_inner());
        let mut published = Vec::new();
        for (ip, maps) in ports.values() {
            for m in maps {
                published.push(Published {
                    proto: m.proto.clone(),
                    host_ip: m.host_ip.parse().ok(),
                    host_port: m.host_port,
                    container_ip: *ip,
                    container_port: m.container_port,
                });
            }
        }
        let nets = [firewall::Network { bridge: self.cfg.bridge.clone(), subnet: self.cfg.subnet, internal: false }];
        firewall::apply(&self.cfg.table(), &nets, &published).map_err(|e| internal("setting up NAT", e))
    }

    /// Wire container `id` to the bridge: namespace, address, veth, published ports.
    pub fn setup(&self, id: &str, host: &Value, exposed: &Value) -> ApiResult<Attached> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let wanted = requested_ports(host, exposed)?;
        let r = self.setup_locked(id, wanted);
        if r.is_err() {
            self.teardown_locked(id);
        }
        r
    }

    fn setup_locked(&self, id: &str, wanted: Vec<PortMap>) -> ApiResult<Attached> {
        let mut nl = self.netlink()?;
        bridge::ensure_bridge(&mut nl, &self.cfg.bridge, self.cfg.gateway, self.cfg.subnet)
            .map_err(|e| internal("setting up the bridge", e))?;
        bridge::enable_forwarding().map_err(|e| internal("setting up the bridge", e))?;
        let ports = self.allocate_ports(id, wanted)?;
        let ip = self.pool.allocate(id, None).map_err(|e| internal("allocating an address", e))?;
        let path = self.netns_path(id);
        let _ = netns::remove(&path);
        netns::create(&path).map_err(|e| internal("creating the network namespace", e))?;
        let host_if = bridge::host_ifname(id);
        let ep = Endpoint {
            bridge: &self.cfg.bridge,
            host_if: &host_if,
            ifname: "eth0",
            address: ip,
            subnet: self.cfg.subnet,
            gateway: Some(self.cfg.gateway),
            mtu: None,
        };
        bridge::attach(&mut nl, &path, &ep).map_err(|e| internal("connecting the container to the bridge", e))?;
        if !ports.is_empty() {
            self.ports.lock().unwrap_or_else(|e| e.into_inner()).insert(id.to_string(), (ip, ports.clone()));
            self.write_rules()?;
        }
        let mac = mac_for(ip).iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
        Ok(Attached {
            network: "bridge".into(),
            ip: ip.to_string(),
            prefix: self.cfg.subnet.prefix,
            gateway: self.cfg.gateway.to_string(),
            mac,
            ports,
        })
    }

    /// Host ports for the requests: conflicts with other containers' ports or with sockets
    /// already bound on the host are refused as Docker does; port 0 gets a free one.
    fn allocate_ports(&self, id: &str, wanted: Vec<PortMap>) -> ApiResult<Vec<PortMap>> {
        let taken: Vec<PortMap> = self
            .ports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(k, _)| k.as_str() != id)
            .flat_map(|(_, (_, m))| m.clone())
            .collect();
        let mut out: Vec<PortMap> = Vec::new();
        for mut w in wanted {
            let clash = |p: u16, out: &[PortMap]| {
                taken.iter().chain(out.iter()).any(|t| {
                    t.proto == w.proto
                        && t.host_port == p
                        && (t.host_ip.is_empty() || w.host_ip.is_empty() || t.host_ip == w.host_ip)
                })
            };
            if w.host_port == 0 {
                w.host_port = (32768..=60999u16)
                    .find(|p| !clash(*p, &out) && bindable(&w.proto, &w.host_ip, *p))
                    .ok_or_else(|| internal("publishing a port", "no free host port left"))?;
            } else if clash(w.host_port, &out) || !bindable(&w.proto, &w.host_ip, w.host_port) {
                let shown = if w.host_ip.is_empty() { "0.0.0.0" } else { &w.host_ip };
                return Err(ApiError::internal(format!(
                    "driver failed programming external connectivity: Bind for {shown}:{} failed: port is already allocated",
                    w.host_port
                )));
            }
            out.push(w);
        }
        Ok(out)
    }

    /// Undo `setup` (whatever of it exists).
    pub fn teardown(&self, id: &str) {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.teardown_locked(id);
    }

    fn teardown_locked(&self, id: &str) {
        if let Ok(mut nl) = Netlink::open() {
            let _ = bridge::detach(&mut nl, &bridge::host_ifname(id));
        }
        let _ = netns::remove(&self.netns_path(id));
        let _ = self.pool.release(id);
        let had = self.ports.lock().unwrap_or_else(|e| e.into_inner()).remove(id).is_some();
        if had {
            if let Err(e) = self.write_rules() {
                eprintln!("berth daemon: {}", e.message);
            }
        }
    }

    /// After a (re)start of the daemon: keep only what the running containers (`running`: id →
    /// their recorded attachment) own, and write the nftables table afresh.
    pub fn recover(&self, running: &BTreeMap<String, Attached>) {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self.pool.retain(|owner| running.contains_key(owner));
        let short = |id: &str| id[..16.min(id.len())].to_string();
        let keep: Vec<String> = running.keys().map(|id| short(id)).collect();
        for e in std::fs::read_dir(self.exec_root.join("netns")).into_iter().flatten().flatten() {
            if !keep.contains(&e.file_name().to_string_lossy().into_owned()) {
                let _ = netns::remove(&e.path());
            }
        }
        if let Ok(mut nl) = Netlink::open() {
            let veths: Vec<String> = running.keys().map(|id| bridge::host_ifname(id)).collect();
            if let Ok(Some(br)) = nl.link(&self.cfg.bridge) {
                for l in nl.links().unwrap_or_default() {
                    if l.master == Some(br.index) && l.name.starts_with("veth") && !veths.contains(&l.name) {
                        let _ = nl.delete_link(&l.name);
                    }
                }
            }
        }
        let mut ports = self.ports.lock().unwrap_or_else(|e| e.into_inner());
        ports.clear();
        for (id, a) in running {
            if let (Ok(ip), false) = (a.ip.parse::<Ipv4Addr>(), a.ports.is_empty()) {
                ports.insert(id.clone(), (ip, a.ports.clone()));
            }
        }
        drop(ports);
        if let Err(e) = self.write_rules() {
            eprintln!("berth daemon: {}", e.message);
        }
    }
}

/// Whether a host port can be bound now (nothing on the host listens there).
fn bindable(proto: &str, host_ip: &str, port: u16) -> bool {
    let ip: Ipv4Addr = host_ip.parse().unwrap_or(Ipv4Addr::UNSPECIFIED);
    match proto {
        "udp" => std::net::UdpSocket::bind((ip, port)).is_ok(),
        _ => std::net::TcpListener::bind((ip, port)).is_ok(),
    }
}

/// `HostConfig.PortBindings` (and, with `PublishAllPorts`, every exposed port) as port maps;
/// a host port of 0 means "any free one".
pub fn requested_ports(host: &Value, exposed: &Value) -> ApiResult<Vec<PortMap>> {
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let parse_key = |k: &str| -> ApiResult<(u16, String)> {
        let (port, proto) = k.split_once('/').unwrap_or((k, "tcp"));
        let proto = proto.to_ascii_lowercase();
        if !matches!(proto.as_str(), "tcp" | "udp") {
            return Err(ApiError::bad(format!("invalid port {k:?}: only tcp and udp can be published")));
        }
        if port.contains('-') {
            return Err(ApiError::bad(format!("invalid port {k:?}: port ranges are not supported yet")));
        }
        let p: u16 =
            port.parse().ok().filter(|p| *p > 0).ok_or_else(|| ApiError::bad(format!("invalid port {k:?}")))?;
        Ok((p, proto))
    };
    if let Some(b) = host["PortBindings"].as_object() {
        for (k, binds) in b {
            let (cport, proto) = parse_key(k)?;
            let list: Vec<Value> = match binds.as_array() {
                Some(a) if !a.is_empty() => a.clone(),
                _ => vec![json!({})],
            };
            for bnd in list {
                let host_ip = bnd["HostIp"].as_str().unwrap_or("").to_string();
                let host_ip = if host_ip == "0.0.0.0" { String::new() } else { host_ip };
                if !host_ip.is_empty() && host_ip.parse::<Ipv4Addr>().is_err() {
                    if host_ip.contains(':') {
                        continue; // an IPv6 binding: IPv6 is not done yet; the IPv4 one stands
                    }
                    return Err(ApiError::bad(format!("invalid host address {host_ip:?} for port {k}")));
                }
                let hp = bnd["HostPort"].as_str().unwrap_or("");
                if hp.contains('-') {
                    return Err(ApiError::bad(format!("invalid host port {hp:?}: port ranges are not supported yet")));
                }
                let host_port: u16 = if hp.is_empty() {
                    0
                } else {
                    hp.parse().map_err(|_| ApiError::bad(format!("invalid host port {hp:?} for port {k}")))?
                };
                seen.insert((cport, proto.clone()));
                out.push(PortMap { proto: proto.clone(), host_ip, host_port, container_port: cport });
            }
        }
    }
    if host["PublishAllPorts"].as_bool().unwrap_or(false) {
        for k in exposed.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default() {
            let (cport, proto) = parse_key(&k)?;
            if seen.insert((cport, proto.clone())) {
                out.push(PortMap { proto, host_ip: String::new(), host_port: 0, container_port: cport });
            }
        }
    }
    Ok(out)
}

/// Docker's `NetworkSettings.Ports`: every exposed or published port, its bindings or null.
pub fn ports_json(a: Option<&Attached>, exposed: &Value) -> Value {
    let mut m = serde_json::Map::new();
    for k in exposed.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default() {
        let k = if k.contains('/') { k } else { format!("{k}/tcp") };
        m.insert(k, Value::Null);
    }
    for p in a.map(|a| a.ports.as_slice()).unwrap_or_default() {
        let e = m.entry(format!("{}/{}", p.container_port, p.proto)).or_insert(Value::Null);
        if e.is_null() {
            *e = json!([]);
        }
        let ip = if p.host_ip.is_empty() { "0.0.0.0" } else { &p.host_ip };
        if let Some(arr) = e.as_array_mut() {
            arr.push(json!({"HostIp": ip, "HostPort": p.host_port.to_string()}));
        }
    }
    Value::Object(m)
}

/// Docker's `ps` Ports column: `0.0.0.0:8080->80/tcp, 443/tcp`.
pub fn ports_list(a: Option<&Attached>, exposed: &Value) -> Value {
    let mut out = Vec::new();
    for p in a.map(|a| a.ports.as_slice()).unwrap_or_default() {
        let ip = if p.host_ip.is_empty() { "0.0.0.0" } else { &p.host_ip };
        out.push(json!({"IP": ip, "PrivatePort": p.container_port, "PublicPort": p.host_port, "Type": p.proto}));
    }
    for k in exposed.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default() {
        let (port, proto) = k.split_once('/').unwrap_or((&k, "tcp"));
        let port: u16 = port.parse().unwrap_or(0);
        if !out.iter().any(|o| o["PrivatePort"] == port && o["Type"] == proto) {
            out.push(json!({"PrivatePort": port, "Type": proto}));
        }
    }
    Value::Array(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_requests_parse_as_docker_sends_them() {
        let host = json!({"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}], "53/udp": [{"HostIp": "", "HostPort": ""}]}});
        let p = requested_ports(&host, &json!({})).unwrap();
        assert_eq!(p.len(), 2);
        assert!(p.contains(&PortMap {
            proto: "tcp".into(),
            host_ip: "127.0.0.1".into(),
            host_port: 8080,
            container_port: 80
        }));
        assert!(p.contains(&PortMap { proto: "udp".into(), host_ip: "".into(), host_port: 0, container_port: 53 }));
        let all = requested_ports(&json!({"PublishAllPorts": true}), &json!({"443/tcp": {}, "80/tcp": {}})).unwrap();
        assert_eq!(all.len(), 2);
        for bad in [
            json!({"PortBindings": {"80/sctp": []}}),
            json!({"PortBindings": {"80-81/tcp": []}}),
            json!({"PortBindings": {"80/tcp": [{"HostPort": "x"}]}}),
        ] {
            assert_eq!(requested_ports(&bad, &json!({})).unwrap_err().status, 400, "{bad}");
        }
        let a = Attached { ports: p, ..Default::default() };
        let j = ports_json(Some(&a), &json!({"80/tcp": {}, "9000/tcp": {}}));
        assert_eq!(j["80/tcp"], json!([{"HostIp": "127.0.0.1", "HostPort": "8080"}]));
        assert!(j["9000/tcp"].is_null());
    }

    #[test]
    fn bip_parses_like_dockerd() {
        let c = NetConfig::parse("br-x", "10.40.0.1/24").unwrap();
        assert_eq!(c.subnet.to_string(), "10.40.0.0/24");
        assert_eq!(c.gateway, Ipv4Addr::new(10, 40, 0, 1));
        assert_eq!(c.table(), "berth_br_x");
        assert!(NetConfig::parse("br-x", "10.40.0.1").is_err());
        assert!(NetConfig::parse("a-very-long-bridge-name", "10.40.0.1/24").is_err());
    }
}
