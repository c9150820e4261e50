//! berth-net: container networking.
//!
//! - [`netlink`]: a small synchronous rtnetlink client (bridges, veth pairs, addresses, routes,
//!   moving links between network namespaces), speaking the kernel's wire format directly.
//! - [`netns`]: persistent network namespaces (a bind mount keeps one alive without a process)
//!   and running code inside one.

pub mod netlink;
pub mod netns;
