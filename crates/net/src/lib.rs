//! berth-net: container networking.
//!
//! - [`netlink`]: a small synchronous rtnetlink client (bridges, veth pairs, addresses, routes,
//!   moving links between network namespaces), speaking the kernel's wire format directly.
//! - [`bridge`]: a bridge with the gateway address; veth pairs wiring container namespaces to it.
//! - [`dns`]: the embedded DNS server of a user-defined network (known names; the rest forwarded).
//! - [`firewall`]: NAT for published ports and outbound traffic: one nftables table per engine.
//! - [`ipam`]: subnets and the addresses handed out in them, persisted.
//! - [`netns`]: persistent network namespaces (a bind mount keeps one alive without a process)
//!   and running code inside one.

pub mod bridge;
pub mod dns;
pub mod firewall;
pub mod ipam;
pub mod netlink;
pub mod netns;
