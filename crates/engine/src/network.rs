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
use std::sync::{Arc, Mutex};

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

/// A running container's place on one network (an endpoint), as recorded in its record.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct Attached {
    pub network: String,
    pub ip: String,
    pub prefix: u8,
    pub gateway: String,
    pub mac: String,
    /// Published ports (only on the container's first endpoint).
    #[serde(default)]
    pub ports: Vec<PortMap>,
    /// The interface inside the container (`eth0`, `eth1`, ...; empty in older records: eth0).
    #[serde(default)]
    pub ifname: String,
    /// Whether the container's default route goes through this endpoint's gateway.
    #[serde(default = "yes")]
    pub default_route: bool,
}

fn yes() -> bool {
    true
}

impl Attached {
    fn index(&self) -> u32 {
        self.ifname.strip_prefix("eth").and_then(|n| n.parse().ok()).unwrap_or(0)
    }

    /// The host end of its veth pair.
    pub fn host_if(&self, id: &str) -> String {
        host_ifname(id, self.index())
    }
}

/// The host end of container `id`'s veth for its interface `eth<n>`: `veth` + 11 hex of the
/// id for eth0 (as before), `veth` + 8 hex + `x<n>` for the others (at most 15 bytes).
pub fn host_ifname(id: &str, n: u32) -> String {
    if n == 0 {
        bridge::host_ifname(id)
    } else {
        format!("veth{}x{n}", &id[..8.min(id.len())])
    }
}

/// A network: the built-in `bridge`, or one made by `network create`.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct NetDef {
    pub id: String,
    pub name: String,
    /// The Linux bridge device.
    pub bridge: String,
    pub subnet: String,
    pub gateway: String,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub labels: Value,
    #[serde(default)]
    pub options: Value,
    pub created: String,
    /// The default bridge (not removable, not in `<data-root>/network/*.json`).
    #[serde(skip)]
    pub builtin: bool,
}

struct Net {
    def: NetDef,
    subnet: Subnet,
    gateway: Ipv4Addr,
    pool: Pool,
}

pub struct Networking {
    /// The default bridge's settings.
    pub cfg: NetConfig,
    exec_root: PathBuf,
    dir: PathBuf,
    /// Networks by name.
    nets: Mutex<BTreeMap<String, Arc<Net>>>,
    /// Published ports in effect: container id → (its address, its ports).
    ports: Mutex<BTreeMap<String, (Ipv4Addr, Vec<PortMap>)>>,
    /// Serialises bridge creation, network changes and table writes.
    lock: Mutex<()>,
    /// The endpoints of running containers: container id → its endpoints.
    eps: Mutex<BTreeMap<String, Vec<Attached>>>,
    /// Names on a network → addresses (set by the daemon: it knows the containers).
    resolver: Mutex<Option<Resolver>>,
    /// The embedded DNS servers of user-defined networks, by network name.
    dns: Mutex<BTreeMap<String, berth_net::dns::Server>>,
}

/// (network, asking address, name) → the addresses of the running containers of that name on
/// that network (or on another network the asking container is on).
pub type Resolver = Arc<dyn Fn(&str, Ipv4Addr, &str) -> Vec<Ipv4Addr> + Send + Sync>;

fn internal(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("{what}: {e}"))
}

impl Networking {
    pub fn open(data_root: &Path, exec_root: &Path, cfg: NetConfig) -> Result<Networking, String> {
        let dir = data_root.join("network");
        let mut nets = BTreeMap::new();
        let builtin = NetDef {
            id: crate::api::network_id("bridge"),
            name: "bridge".into(),
            bridge: cfg.bridge.clone(),
            subnet: cfg.subnet.to_string(),
            gateway: cfg.gateway.to_string(),
            internal: false,
            labels: json!({}),
            options: json!({"com.docker.network.bridge.name": cfg.bridge, "com.docker.network.bridge.default_bridge": "true"}),
            created: "0001-01-01T00:00:00Z".into(),
            builtin: true,
        };
        let pool = Pool::open(&dir.join("bridge.ipam"), cfg.subnet, cfg.gateway)
            .map_err(|e| format!("opening the address pool: {e}"))?;
        nets.insert(
            "bridge".to_string(),
            Arc::new(Net { def: builtin, subnet: cfg.subnet, gateway: cfg.gateway, pool }),
        );
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            let def: NetDef = match std::fs::read(&p).ok().and_then(|d| serde_json::from_slice(&d).ok()) {
                Some(d) => d,
                None => {
                    eprintln!("berth daemon: skipping unreadable network record {}", p.display());
                    continue;
                }
            };
            let (subnet, gateway) = match (def.subnet.parse::<Subnet>(), def.gateway.parse::<Ipv4Addr>()) {
                (Ok(s), Ok(g)) => (s, g),
                _ => continue,
            };
            let pool = Pool::open(&dir.join(format!("{}.ipam", def.id)), subnet, gateway)
                .map_err(|e| format!("opening the address pool of {}: {e}", def.name))?;
            nets.insert(def.name.clone(), Arc::new(Net { def, subnet, gateway, pool }));
        }
        Ok(Networking {
            cfg,
            exec_root: exec_root.to_path_buf(),
            dir,
            nets: Mutex::new(nets),
            ports: Mutex::new(BTreeMap::new()),
            eps: Mutex::new(BTreeMap::new()),
            lock: Mutex::new(()),
            resolver: Mutex::new(None),
            dns: Mutex::new(BTreeMap::new()),
        })
    }

    /// Give the networks their name lookup and start the DNS server of every user-defined one
    /// (its bridge made first: the server listens on the gateway address).
    pub fn start_dns(&self, resolver: Resolver) {
        *self.resolver.lock().unwrap_or_else(|e| e.into_inner()) = Some(resolver);
        for n in self.nets().into_iter().filter(|n| !n.def.builtin) {
            if let Err(e) = self.dns_for(&n) {
                eprintln!("berth daemon: network {}: {}", n.def.name, e.message);
            }
        }
    }

    /// Make the bridge of `n` and start its DNS server (if not running).
    fn dns_for(&self, n: &Net) -> ApiResult<()> {
        let mut nl = self.netlink()?;
        bridge::ensure_bridge(&mut nl, &n.def.bridge, n.gateway, n.subnet)
            .map_err(|e| internal("setting up the bridge", e))?;
        let mut servers = self.dns.lock().unwrap_or_else(|e| e.into_inner());
        if servers.contains_key(&n.def.name) {
            return Ok(());
        }
        let Some(resolver) = self.resolver.lock().unwrap_or_else(|e| e.into_inner()).clone() else { return Ok(()) };
        let net = n.def.name.clone();
        let lookup: berth_net::dns::Lookup = Arc::new(move |client, name: &str| resolver(&net, client, name));
        let ups = berth_net::dns::upstreams(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default());
        let srv = berth_net::dns::serve(std::net::SocketAddr::new(n.gateway.into(), 53), lookup, ups)
            .map_err(|e| internal("starting the network's DNS server", e))?;
        servers.insert(n.def.name.clone(), srv);
        Ok(())
    }

    /// The nameserver containers on `network` use: its embedded DNS (user-defined networks).
    pub fn nameserver(&self, network: &str) -> Option<String> {
        let n = self.nets.lock().unwrap_or_else(|e| e.into_inner()).get(network).cloned()?;
        if n.def.builtin || !self.dns.lock().unwrap_or_else(|e| e.into_inner()).contains_key(network) {
            return None;
        }
        Some(n.gateway.to_string())
    }

    fn nets(&self) -> Vec<Arc<Net>> {
        self.nets.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    /// Every network, the built-in bridge first.
    pub fn list(&self) -> Vec<NetDef> {
        let mut v: Vec<NetDef> = self.nets().iter().map(|n| n.def.clone()).collect();
        v.sort_by_key(|n| (!n.builtin, n.name.clone()));
        v
    }

    /// A network by name, full id or unique id prefix.
    pub fn find(&self, key: &str) -> Option<NetDef> {
        let all = self.list();
        if let Some(n) = all.iter().find(|n| n.name == key || n.id == key) {
            return Some(n.clone());
        }
        let m: Vec<&NetDef> = all.iter().filter(|n| !key.is_empty() && n.id.starts_with(key)).collect();
        match m.as_slice() {
            [n] => Some((*n).clone()),
            _ => None,
        }
    }

    fn net(&self, name: &str) -> ApiResult<Arc<Net>> {
        let nets = self.nets.lock().unwrap_or_else(|e| e.into_inner());
        nets.get(name)
            .or_else(|| nets.values().find(|n| n.def.id == name))
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("network {name} not found")))
    }

    /// `network create`: a bridge network of its own (device `br-<12 hex of id>`); a subnet from
    /// 172.30-172.31/16 and then 192.168.N.0/24 if none is given.
    pub fn create(
        &self,
        name: &str,
        subnet: Option<&str>,
        gateway: Option<&str>,
        internal: bool,
        labels: Value,
        options: Value,
    ) -> ApiResult<NetDef> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) {
            return Err(ApiError::bad(format!(
                "invalid network name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        if matches!(name, "bridge" | "host" | "none" | "default") || self.find(name).is_some_and(|n| n.name == name) {
            return Err(ApiError::conflict(format!("network with name {name} already exists")));
        }
        let taken: Vec<Subnet> = self.nets().iter().map(|n| n.subnet).collect();
        let subnet: Subnet = match subnet {
            Some(s) => {
                let sn: Subnet = s.parse().map_err(ApiError::bad)?;
                if let Some(o) = taken.iter().find(|t| t.overlaps(&sn)) {
                    return Err(ApiError::forbidden(format!(
                        "Pool overlaps with other one on this address space ({o})"
                    )));
                }
                sn
            }
            None => (30..32u8)
                .map(|b| format!("172.{b}.0.0/16"))
                .chain((0..=255u16).map(|c| format!("192.168.{c}.0/24")))
                .filter_map(|s| s.parse::<Subnet>().ok())
                .find(|sn| !taken.iter().any(|t| t.overlaps(sn)))
                .ok_or_else(|| ApiError::forbidden("could not find an available, non-overlapping IPv4 address pool"))?,
        };
        let gateway: Ipv4Addr = match gateway {
            Some(g) => g.parse().map_err(|_| ApiError::bad(format!("invalid gateway {g:?}")))?,
            None => subnet.first_host(),
        };
        let id = crate::daemon::random_id();
        let def = NetDef {
            id: id.clone(),
            name: name.to_string(),
            bridge: format!("br-{}", &id[..12]),
            subnet: subnet.to_string(),
            gateway: gateway.to_string(),
            internal,
            labels: if labels.is_object() { labels } else { json!({}) },
            options: if options.is_object() { options } else { json!({}) },
            created: berth_runtime::state::now_rfc3339(),
            builtin: false,
        };
        let pool = Pool::open(&self.dir.join(format!("{id}.ipam")), subnet, gateway)
            .map_err(|e| ApiError::bad(e.to_string()))?;
        let _ = std::fs::create_dir_all(&self.dir);
        let path = self.dir.join(format!("{id}.json"));
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&def).unwrap_or_default())
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| ApiError::internal(format!("saving the network: {e}")))?;
        let net = Arc::new(Net { def: def.clone(), subnet, gateway, pool });
        self.nets.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_string(), net.clone());
        if let Err(e) = self.write_rules().and_then(|()| self.dns_for(&net)) {
            let _ = self.remove_locked(&def);
            return Err(e);
        }
        Ok(def)
    }

    /// `network rm` (the caller checked that no container uses it).
    pub fn remove(&self, def: &NetDef) -> ApiResult<()> {
        if def.builtin {
            return Err(ApiError::forbidden(format!("{} is a pre-defined network and cannot be removed", def.name)));
        }
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.remove_locked(def)
    }

    fn remove_locked(&self, def: &NetDef) -> ApiResult<()> {
        self.nets.lock().unwrap_or_else(|e| e.into_inner()).remove(&def.name);
        self.dns.lock().unwrap_or_else(|e| e.into_inner()).remove(&def.name);
        if let Ok(mut nl) = Netlink::open() {
            let _ = nl.delete_link(&def.bridge);
        }
        let _ = std::fs::remove_file(self.dir.join(format!("{}.json", def.id)));
        let _ = std::fs::remove_file(self.dir.join(format!("{}.ipam", def.id)));
        self.write_rules()
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
        let nets: Vec<firewall::Network> = self
            .nets()
            .iter()
            .map(|n| firewall::Network { bridge: n.def.bridge.clone(), subnet: n.subnet, internal: n.def.internal })
            .collect();
        firewall::apply(&self.cfg.table(), &nets, &published).map_err(|e| internal("setting up NAT", e))
    }

    /// Give container `id` its network namespace and wire it to `networks` (its first one
    /// gets `eth0`, the default route and the published ports). With no networks the
    /// namespace has only `lo`. Undone whole on failure.
    pub fn setup(&self, id: &str, networks: &[String], host: &Value, exposed: &Value) -> ApiResult<Vec<Attached>> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let wanted = requested_ports(host, exposed)?;
        let r = (|| {
            let nets = networks.iter().map(|n| self.net(n)).collect::<ApiResult<Vec<_>>>()?;
            let path = self.netns_path(id);
            let _ = netns::remove(&path);
            netns::create(&path).map_err(|e| internal("creating the network namespace", e))?;
            if nets.is_empty() {
                netns::run_in(&path, || Netlink::open()?.set_up("lo"))
                    .map_err(|e| internal("setting up the network namespace", e))?;
            }
            let mut wanted = Some(wanted);
            for net in nets {
                let ports = if wanted.as_ref().is_some_and(|w| !w.is_empty()) { wanted.take() } else { None };
                self.connect_locked(id, &net, ports.unwrap_or_default())?;
            }
            Ok(self.endpoints(id))
        })();
        if r.is_err() {
            self.teardown_locked(id);
        }
        r
    }

    /// Connect running container `id` (its namespace made by `setup`) to one more network.
    pub fn connect(&self, id: &str, network: &str) -> ApiResult<Attached> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let net = self.net(network)?;
        if self.endpoints(id).iter().any(|a| a.network == net.def.name) {
            return Err(ApiError::forbidden(format!("endpoint with name {id} already exists in network {network}")));
        }
        self.connect_locked(id, &net, Vec::new())
    }

    /// The endpoints of container `id` in effect.
    pub fn endpoints(&self, id: &str) -> Vec<Attached> {
        self.eps.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned().unwrap_or_default()
    }

    fn connect_locked(&self, id: &str, net: &Net, wanted: Vec<PortMap>) -> ApiResult<Attached> {
        let mut nl = self.netlink()?;
        bridge::ensure_bridge(&mut nl, &net.def.bridge, net.gateway, net.subnet)
            .map_err(|e| internal("setting up the bridge", e))?;
        bridge::enable_forwarding().map_err(|e| internal("setting up the bridge", e))?;
        let have = self.endpoints(id);
        let n = (0..).find(|n| !have.iter().any(|a| a.index() == *n)).unwrap_or(0);
        let default_route = !net.def.internal && !have.iter().any(|a| a.default_route);
        let ports = self.allocate_ports(id, wanted)?;
        let ip = net.pool.allocate(id, None).map_err(|e| internal("allocating an address", e))?;
        let mac = mac_for(ip).iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
        let a = Attached {
            network: net.def.name.clone(),
            ip: ip.to_string(),
            prefix: net.subnet.prefix,
            gateway: net.gateway.to_string(),
            mac,
            ports,
            ifname: format!("eth{n}"),
            default_route,
        };
        let host_if = a.host_if(id);
        let ep = Endpoint {
            bridge: &net.def.bridge,
            host_if: &host_if,
            ifname: &a.ifname,
            address: ip,
            subnet: net.subnet,
            gateway: if default_route { Some(net.gateway) } else { None },
            mtu: None,
        };
        if let Err(e) = bridge::attach(&mut nl, &self.netns_path(id), &ep) {
            let _ = net.pool.release(id);
            return Err(internal("connecting the container to the bridge", e));
        }
        self.eps.lock().unwrap_or_else(|e| e.into_inner()).entry(id.to_string()).or_default().push(a.clone());
        if !a.ports.is_empty() {
            self.ports.lock().unwrap_or_else(|e| e.into_inner()).insert(id.to_string(), (ip, a.ports.clone()));
            self.write_rules()?;
        }
        Ok(a)
    }

    /// Disconnect running container `id` from `network` (its veth, address and, on its
    /// first network, its published ports go).
    pub fn disconnect(&self, id: &str, network: &str) -> ApiResult<()> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let a = {
            let mut eps = self.eps.lock().unwrap_or_else(|e| e.into_inner());
            let list = eps.entry(id.to_string()).or_default();
            let Some(i) = list.iter().position(|a| a.network == network) else {
                return Err(ApiError::forbidden(format!("container {id} is not connected to network {network}")));
            };
            list.remove(i)
        };
        let mut nl = self.netlink()?;
        bridge::detach(&mut nl, &a.host_if(id)).map_err(|e| internal("removing the veth", e))?;
        if let Ok(net) = self.net(network) {
            let _ = net.pool.release(id);
        }
        if !a.ports.is_empty() {
            self.ports.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
            self.write_rules()?;
        }
        Ok(())
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
        let eps = self.eps.lock().unwrap_or_else(|e| e.into_inner()).remove(id).unwrap_or_default();
        if let Ok(mut nl) = Netlink::open() {
            let _ = bridge::detach(&mut nl, &bridge::host_ifname(id));
            for a in eps.iter().filter(|a| a.index() != 0) {
                let _ = bridge::detach(&mut nl, &a.host_if(id));
            }
        }
        let _ = netns::remove(&self.netns_path(id));
        for n in self.nets() {
            let _ = n.pool.release(id);
        }
        let had = self.ports.lock().unwrap_or_else(|e| e.into_inner()).remove(id).is_some();
        if had {
            if let Err(e) = self.write_rules() {
                eprintln!("berth daemon: {}", e.message);
            }
        }
    }

    /// After a (re)start of the daemon: keep only what the running containers (`running`: id →
    /// their recorded attachment) own, and write the nftables table afresh.
    pub fn recover(&self, running: &BTreeMap<String, Vec<Attached>>) {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        for n in self.nets() {
            let _ =
                n.pool.retain(|owner| running.get(owner).is_some_and(|l| l.iter().any(|a| a.network == n.def.name)));
        }
        *self.eps.lock().unwrap_or_else(|e| e.into_inner()) = running.clone();
        let short = |id: &str| id[..16.min(id.len())].to_string();
        let keep: Vec<String> = running.keys().map(|id| short(id)).collect();
        for e in std::fs::read_dir(self.exec_root.join("netns")).into_iter().flatten().flatten() {
            if !keep.contains(&e.file_name().to_string_lossy().into_owned()) {
                let _ = netns::remove(&e.path());
            }
        }
        if let Ok(mut nl) = Netlink::open() {
            let veths: Vec<String> =
                running.iter().flat_map(|(id, l)| l.iter().map(|a| a.host_if(id)).collect::<Vec<_>>()).collect();
            for n in self.nets() {
                if let Ok(Some(br)) = nl.link(&n.def.bridge) {
                    for l in nl.links().unwrap_or_default() {
                        if l.master == Some(br.index) && l.name.starts_with("veth") && !veths.contains(&l.name) {
                            let _ = nl.delete_link(&l.name);
                        }
                    }
                }
            }
        }
        let mut ports = self.ports.lock().unwrap_or_else(|e| e.into_inner());
        ports.clear();
        for (id, a) in running.iter().flat_map(|(id, l)| l.iter().map(move |a| (id, a))) {
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
