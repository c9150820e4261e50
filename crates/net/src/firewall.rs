//! NAT and filtering for bridge networks, with nftables.
//!
//! Why nftables: one table of our own (`ip <name>`) replaced as a whole in one atomic
//! transaction (`nft -f -`), so the rules always equal the engine's state: a daemon that starts
//! after a crash writes the table afresh and every stale rule is gone; nothing of iptables'
//! shared chains (or of another engine's rules) is touched. The table is written by the `nft`
//! tool, which speaks nftables' netlink protocol for us.
//!
//! What the table does:
//! - published ports: DNAT of traffic to a local address (from outside, and from the host
//!   itself, 127.0.0.1 included) to the container's address and port;
//! - masquerade of a network's traffic leaving by another interface (not for internal
//!   networks), and of host-local (127.0.0.0/8) sources reaching a container via a published
//!   port (with `route_localnet` on the bridge);
//! - internal networks: nothing forwarded in or out of the bridge.

use crate::ipam::Subnet;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

/// One bridge network.
#[derive(Debug, Clone)]
pub struct Network {
    pub bridge: String,
    pub subnet: Subnet,
    pub internal: bool,
}

/// One published port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// "tcp" or "udp".
    pub proto: String,
    /// The host address it listens on (None: every local address).
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_ip: Ipv4Addr,
    pub container_port: u16,
}

/// The ruleset for `table`, as `nft -f` reads it.
pub fn ruleset(table: &str, networks: &[Network], ports: &[Published]) -> String {
    let mut s = String::new();
    // Create-then-delete makes the replacement work whether or not the table exists.
    s.push_str(&format!("table ip {table}\ndelete table ip {table}\ntable ip {table} {{\n"));
    s.push_str("  chain ports {\n");
    for p in ports {
        let daddr = p.host_ip.map(|ip| format!("ip daddr {ip} ")).unwrap_or_default();
        s.push_str(&format!(
            "    {daddr}{} dport {} dnat to {}:{}\n",
            p.proto, p.host_port, p.container_ip, p.container_port
        ));
    }
    s.push_str("  }\n");
    s.push_str("  chain prerouting {\n    type nat hook prerouting priority -100; policy accept;\n    fib daddr type local jump ports\n  }\n");
    s.push_str("  chain output {\n    type nat hook output priority -100; policy accept;\n    fib daddr type local jump ports\n  }\n");
    s.push_str("  chain postrouting {\n    type nat hook postrouting priority 100; policy accept;\n");
    for n in networks {
        if !n.internal {
            s.push_str(&format!("    ip saddr {} oifname != \"{}\" masquerade\n", n.subnet, n.bridge));
        }
        s.push_str(&format!("    ip saddr 127.0.0.0/8 oifname \"{}\" masquerade\n", n.bridge));
    }
    s.push_str("  }\n");
    s.push_str("  chain forward {\n    type filter hook forward priority 0; policy accept;\n");
    for n in networks.iter().filter(|n| n.internal) {
        s.push_str(&format!("    iifname \"{0}\" oifname != \"{0}\" drop\n", n.bridge));
        s.push_str(&format!("    oifname \"{0}\" iifname != \"{0}\" drop\n", n.bridge));
    }
    s.push_str("  }\n}\n");
    s
}

fn nft(script: &str, what: &str) -> io::Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("{what}: running nft (is nftables installed?): {e}")))?;
    child.stdin.take().map(|mut i| i.write_all(script.as_bytes())).transpose()?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        let first = msg.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
        return Err(io::Error::other(format!("{what}: nft: {first}")));
    }
    Ok(())
}

/// Replace `table` with the rules for these networks and ports (one atomic transaction), and
/// let the bridges route host-local sources (needed for DNAT of 127.0.0.1).
pub fn apply(table: &str, networks: &[Network], ports: &[Published]) -> io::Result<()> {
    for n in networks {
        let p = format!("/proc/sys/net/ipv4/conf/{}/route_localnet", n.bridge);
        let _ = std::fs::write(p, "1");
    }
    nft(&ruleset(table, networks, ports), &format!("writing the nftables table {table}"))
}

/// Remove `table` (nothing if it is not there).
pub fn remove(table: &str) -> io::Result<()> {
    nft(&format!("table ip {table}\ndelete table ip {table}\n"), &format!("removing the nftables table {table}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ruleset_names_every_port_and_network() {
        let nets = [
            Network { bridge: "berth0".into(), subnet: "172.29.0.0/16".parse().unwrap(), internal: false },
            Network { bridge: "br-int".into(), subnet: "10.5.0.0/24".parse().unwrap(), internal: true },
        ];
        let ports = [Published {
            proto: "tcp".into(),
            host_ip: Some(Ipv4Addr::LOCALHOST),
            host_port: 8080,
            container_ip: Ipv4Addr::new(172, 29, 0, 2),
            container_port: 80,
        }];
        let r = ruleset("berth_t", &nets, &ports);
        assert!(r.starts_with("table ip berth_t\ndelete table ip berth_t\n"), "{r}");
        assert!(r.contains("ip daddr 127.0.0.1 tcp dport 8080 dnat to 172.29.0.2:80"), "{r}");
        assert!(r.contains("ip saddr 172.29.0.0/16 oifname != \"berth0\" masquerade"), "{r}");
        assert!(!r.contains("ip saddr 10.5.0.0/24 oifname"), "internal networks are not masqueraded: {r}");
        assert!(r.contains("iifname \"br-int\" oifname != \"br-int\" drop"), "{r}");
    }
}
