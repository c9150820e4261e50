//! IPv4 address management for one network: a subnet, its gateway, and which addresses are
//! handed out to whom, persisted (tmp + fsync + rename) before an address is returned, so an
//! address is never handed out twice — also across restarts of the daemon.
//!
//! Addresses are handed out in order after the last one given (wrapping), as Docker does, so a
//! freed address is not reused at once by the next container.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;

/// An IPv4 subnet: `addr/prefix` with the host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl FromStr for Subnet {
    type Err = String;
    fn from_str(s: &str) -> Result<Subnet, String> {
        let (a, p) = s.split_once('/').ok_or_else(|| format!("invalid subnet {s:?}: expected ADDRESS/PREFIX"))?;
        let addr: Ipv4Addr = a.parse().map_err(|_| format!("invalid subnet {s:?}: {a:?} is not an IPv4 address"))?;
        let prefix: u8 = p.parse().map_err(|_| format!("invalid subnet {s:?}: {p:?} is not a prefix length"))?;
        if !(8..=30).contains(&prefix) {
            return Err(format!("invalid subnet {s:?}: the prefix length must be 8 to 30"));
        }
        let sn = Subnet { addr, prefix };
        if u32::from(addr) & !sn.mask() != 0 {
            return Err(format!("invalid subnet {s:?}: host bits set (did you mean {}/{prefix}?)", sn.network()));
        }
        Ok(sn)
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Subnet {
    pub fn mask(&self) -> u32 {
        u32::MAX << (32 - self.prefix as u32)
    }
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr) & self.mask()
    }
    /// The first host address: the default gateway.
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network()) + 1)
    }
    /// Whether two subnets share any address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.contains(other.network()) || other.contains(self.network())
    }
}

#[derive(Debug, Default)]
struct State {
    /// address → owner (a container id).
    given: BTreeMap<Ipv4Addr, String>,
    last: Option<Ipv4Addr>,
}

/// The addresses of one subnet.
#[derive(Debug)]
pub struct Pool {
    path: PathBuf,
    pub subnet: Subnet,
    pub gateway: Ipv4Addr,
    state: Mutex<State>,
}

impl Pool {
    /// Open (or start) the pool persisted at `path`.
    pub fn open(path: &Path, subnet: Subnet, gateway: Ipv4Addr) -> io::Result<Pool> {
        if !subnet.contains(gateway) || gateway == subnet.network() || gateway == subnet.broadcast() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("gateway {gateway} is not a host address of subnet {subnet}"),
            ));
        }
        let mut st = State::default();
        match std::fs::read_to_string(path) {
            Ok(text) => {
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    if let Some(rest) = line.strip_prefix("last ") {
                        st.last = rest.parse().ok();
                        continue;
                    }
                    let (ip, owner) = line.split_once(' ').unwrap_or((line, ""));
                    let ip: Ipv4Addr = ip.parse().map_err(|_| {
                        io::Error::new(io::ErrorKind::InvalidData, format!("{}: bad line {line:?}", path.display()))
                    })?;
                    st.given.insert(ip, owner.to_string());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io::Error::new(e.kind(), format!("reading {}: {e}", path.display()))),
        }
        Ok(Pool { path: path.to_path_buf(), subnet, gateway, state: Mutex::new(st) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn save(&self, st: &State) -> io::Result<()> {
        let mut text = String::new();
        if let Some(l) = st.last {
            text.push_str(&format!("last {l}\n"));
        }
        for (ip, owner) in &st.given {
            text.push_str(&format!("{ip} {owner}\n"));
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)
    }

    /// An address for `owner` (the one it already has, if any): `want` if given and free,
    /// else the next free one after the last handed out.
    pub fn allocate(&self, owner: &str, want: Option<Ipv4Addr>) -> io::Result<Ipv4Addr> {
        let mut st = self.lock();
        if let Some((ip, _)) = st.given.iter().find(|(_, o)| o.as_str() == owner) {
            if want.is_none_or(|w| w == *ip) {
                return Ok(*ip);
            }
        }
        let usable = |ip: Ipv4Addr, st: &State| {
            ip != self.subnet.network()
                && ip != self.subnet.broadcast()
                && ip != self.gateway
                && !st.given.contains_key(&ip)
        };
        let ip = match want {
            Some(w) => {
                if !self.subnet.contains(w) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("address {w} is not in the network's subnet {}", self.subnet),
                    ));
                }
                if !usable(w, &st) {
                    return Err(io::Error::new(io::ErrorKind::AddrInUse, format!("address {w} is already in use")));
                }
                w
            }
            None => {
                let net = u32::from(self.subnet.network());
                let size = 1u32 << (32 - self.subnet.prefix as u32);
                let start = st.last.map(|l| u32::from(l) - net + 1).unwrap_or(1);
                (0..size).map(|i| Ipv4Addr::from(net + (start + i) % size)).find(|ip| usable(*ip, &st)).ok_or_else(
                    || {
                        io::Error::new(
                            io::ErrorKind::AddrNotAvailable,
                            format!("no free address left in {}", self.subnet),
                        )
                    },
                )?
            }
        };
        st.given.retain(|_, o| o != owner);
        st.given.insert(ip, owner.to_string());
        st.last = Some(ip);
        self.save(&st)?;
        Ok(ip)
    }

    /// Give back `owner`'s address (none: nothing happens).
    pub fn release(&self, owner: &str) -> io::Result<()> {
        let mut st = self.lock();
        let before = st.given.len();
        st.given.retain(|_, o| o != owner);
        if st.given.len() != before {
            self.save(&st)?;
        }
        Ok(())
    }

    /// Keep only the owners `keep` accepts (recovery after a crash).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) -> io::Result<()> {
        let mut st = self.lock();
        let before = st.given.len();
        st.given.retain(|_, o| keep(o));
        if st.given.len() != before {
            self.save(&st)?;
        }
        Ok(())
    }

    /// Address → owner, as handed out.
    pub fn allocations(&self) -> Vec<(Ipv4Addr, String)> {
        self.lock().given.iter().map(|(i, o)| (*i, o.clone())).collect()
    }
}

/// Docker's MAC address for a container address: 02:42 followed by the four address bytes.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_and_refuse_clearly() {
        let s: Subnet = "172.29.0.0/16".parse().unwrap();
        assert_eq!(s.first_host(), Ipv4Addr::new(172, 29, 0, 1));
        assert_eq!(s.broadcast(), Ipv4Addr::new(172, 29, 255, 255));
        assert!(s.contains(Ipv4Addr::new(172, 29, 3, 4)));
        assert!(!s.contains(Ipv4Addr::new(172, 30, 0, 1)));
        assert!(s.overlaps(&"172.29.5.0/24".parse().unwrap()));
        assert!(!s.overlaps(&"172.30.0.0/16".parse().unwrap()));
        let e = "172.29.0.1/16".parse::<Subnet>().unwrap_err();
        assert!(e.contains("host bits") && e.contains("172.29.0.0/16"), "{e}");
        assert!("10.0.0.0".parse::<Subnet>().unwrap_err().contains("ADDRESS/PREFIX"));
        assert!("10.0.0.0/33".parse::<Subnet>().unwrap_err().contains("prefix"));
        assert!("x/8".parse::<Subnet>().unwrap_err().contains("not an IPv4"));
    }

    #[test]
    fn addresses_are_never_given_twice_even_after_reopening() {
        let dir = std::env::temp_dir().join(format!("berth-ipam-{}", std::process::id()));
        let path = dir.join("pool");
        let _ = std::fs::remove_dir_all(&dir);
        let sn: Subnet = "10.9.0.0/29".parse().unwrap(); // hosts .1-.6, gateway .1
        let gw = sn.first_host();
        let p = Pool::open(&path, sn, gw).unwrap();
        let a = p.allocate("a", None).unwrap();
        let b = p.allocate("b", None).unwrap();
        assert_eq!((a, b), (Ipv4Addr::new(10, 9, 0, 2), Ipv4Addr::new(10, 9, 0, 3)));
        assert_eq!(p.allocate("a", None).unwrap(), a, "an owner keeps its address");
        // A restarted daemon sees what was handed out.
        drop(p);
        let p = Pool::open(&path, sn, gw).unwrap();
        let c = p.allocate("c", None).unwrap();
        assert_eq!(c, Ipv4Addr::new(10, 9, 0, 4));
        // A freed address is not the next one handed out.
        p.release("a").unwrap();
        assert_eq!(p.allocate("d", None).unwrap(), Ipv4Addr::new(10, 9, 0, 5));
        assert_eq!(p.allocate("e", None).unwrap(), Ipv4Addr::new(10, 9, 0, 6));
        assert_eq!(p.allocate("f", None).unwrap(), a, "wraps around to the freed one");
        let e = p.allocate("g", None).unwrap_err().to_string();
        assert!(e.contains("no free address") && e.contains("10.9.0.0/29"), "{e}");
        // Asking for a taken, a foreign or the gateway's address is refused.
        assert!(p.allocate("g", Some(c)).unwrap_err().to_string().contains("in use"));
        assert!(p.allocate("g", Some(gw)).unwrap_err().to_string().contains("in use"));
        assert!(p.allocate("g", Some(Ipv4Addr::new(10, 10, 0, 2))).unwrap_err().to_string().contains("not in"));
        p.retain(|o| o != "b" && o != "c").unwrap();
        assert_eq!(p.allocate("g", Some(b)).unwrap(), b);
        let owners: Vec<String> = Pool::open(&path, sn, gw).unwrap().allocations().into_iter().map(|x| x.1).collect();
        assert_eq!(owners, ["f", "g", "d", "e"]);
        assert!(Pool::open(&path, sn, Ipv4Addr::new(10, 9, 0, 7)).is_err(), "broadcast as gateway");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn macs_follow_docker() {
        assert_eq!(mac_for(Ipv4Addr::new(172, 17, 0, 2)), [0x02, 0x42, 0xac, 0x11, 0, 2]);
    }
}
