//! Docker's bridge driver, the kernel part: a Linux bridge holding the network's gateway
//! address, and per container a veth pair whose host end is on the bridge and whose other end
//! is the container's `eth0` (its address, Docker's MAC for it, and a default route through
//! the gateway), in the container's network namespace.
//!
//! Every step that fails undoes what was made before it: a failed attach leaves no veth.

use crate::ipam::{mac_for, Subnet};
use crate::netlink::Netlink;
use crate::netns;
use std::io;
use std::net::Ipv4Addr;
use std::path::Path;

/// Make sure bridge `name` exists, holds `gateway/prefix` and is up (idempotent).
pub fn ensure_bridge(nl: &mut Netlink, name: &str, gateway: Ipv4Addr, subnet: Subnet) -> io::Result<()> {
    let made = if nl.link(name)?.is_none() {
        nl.create_bridge(name, None)?;
        true
    } else {
        false
    };
    let r = (|| {
        if made {
            // A fixed address: else the bridge takes the lowest of its ports' and changes when
            // that port goes, and every container's ARP entry for the gateway goes stale.
            nl.set_mac(name, mac_for(gateway))?;
        }
        match nl.add_address(name, gateway, subnet.prefix) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) || e.kind() == io::ErrorKind::AlreadyExists => {}
            r => r?,
        }
        nl.set_up(name)
    })();
    if r.is_err() && made {
        let _ = nl.delete_link(name);
    }
    r
}

/// The host-side name of a container's veth: `veth` + 11 hex of its id (15 bytes: IFNAMSIZ).
pub fn host_ifname(id: &str) -> String {
    format!("veth{}", &id[..11.min(id.len())])
}

/// What to give the container's end.
pub struct Endpoint<'a> {
    pub bridge: &'a str,
    /// The host-side veth name (see [`host_ifname`]).
    pub host_if: &'a str,
    /// The interface name inside the container (`eth0`).
    pub ifname: &'a str,
    pub address: Ipv4Addr,
    pub subnet: Subnet,
    /// The default route's gateway (none on an internal network).
    pub gateway: Option<Ipv4Addr>,
    pub mtu: Option<u32>,
}

/// Wire the namespace at `netns_path` to the bridge: veth pair, the container end renamed,
/// addressed, up, with its default route; `lo` up too.
pub fn attach(nl: &mut Netlink, netns_path: &Path, ep: &Endpoint) -> io::Result<()> {
    // The peer gets a temporary unique name in the host namespace, then ifname inside.
    let peer = format!("bp{}", &ep.host_if[4.min(ep.host_if.len())..]);
    nl.create_veth(ep.host_if, &peer, ep.mtu)?;
    let r = (|| {
        nl.set_master(ep.host_if, ep.bridge)?;
        nl.set_up(ep.host_if)?;
        let ns = std::fs::File::open(netns_path)
            .map_err(|e| io::Error::new(e.kind(), format!("opening {}: {e}", netns_path.display())))?;
        nl.move_to_netns(&peer, &ns)?;
        let (ifname, address, prefix, gateway) = (ep.ifname.to_string(), ep.address, ep.subnet.prefix, ep.gateway);
        netns::run_in(netns_path, move || {
            let mut c = Netlink::open()?;
            c.rename(&peer, &ifname)?;
            c.set_mac(&ifname, mac_for(address))?;
            c.add_address(&ifname, address, prefix)?;
            c.set_up(&ifname)?;
            c.set_up("lo")?;
            if let Some(gw) = gateway {
                c.add_route(Ipv4Addr::UNSPECIFIED, 0, Some(gw), &ifname)?;
            }
            Ok(())
        })
    })();
    if r.is_err() {
        // Deleting the host end takes the peer with it, wherever it is.
        let _ = nl.delete_link(ep.host_if);
    }
    r
}

/// Remove a container's veth pair (nothing if it is gone already).
pub fn detach(nl: &mut Netlink, host_if: &str) -> io::Result<()> {
    nl.delete_link(host_if)
}

/// Let the kernel forward IPv4 between interfaces (what Docker sets at start).
pub fn enable_forwarding() -> io::Result<()> {
    let p = "/proc/sys/net/ipv4/ip_forward";
    if std::fs::read_to_string(p).map(|v| v.trim() == "1").unwrap_or(false) {
        return Ok(());
    }
    std::fs::write(p, "1").map_err(|e| io::Error::new(e.kind(), format!("enabling IPv4 forwarding ({p}): {e}")))
}
