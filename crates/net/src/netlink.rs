//! A small synchronous rtnetlink client: the handful of requests an engine needs to wire
//! containers to a bridge, in the kernel's wire format (`linux/rtnetlink.h`, `linux/if_link.h`).
//!
//! Each request is sent with `NLM_F_ACK` and its answer read before the next: an error names
//! the request and carries the kernel's errno (e.g. "creating bridge berth0: File exists").

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

// Message types (linux/rtnetlink.h) and flags (linux/netlink.h).
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;

// Link attributes (linux/if_link.h).
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const NLA_F_NESTED: u16 = 0x8000;

// Address and route attributes (linux/if_addr.h, linux/rtnetlink.h).
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RTN_UNICAST: u8 = 1;

const IFF_UP: u32 = 0x1;

/// What the kernel says about one link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub up: bool,
    pub master: Option<u32>,
    pub mtu: u32,
    pub mac: Vec<u8>,
}

/// A NETLINK_ROUTE socket, bound to the network namespace it was opened in.
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

/// A request under construction: header, fixed part, attributes (nested ones by offset).
struct Msg {
    buf: Vec<u8>,
}

impl Msg {
    fn new(kind: u16, flags: u16, fixed: &[u8]) -> Msg {
        let mut buf = vec![0u8; 16];
        buf[4..6].copy_from_slice(&kind.to_ne_bytes());
        buf[6..8].copy_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        buf.extend_from_slice(fixed);
        pad(&mut buf);
        Msg { buf }
    }

    fn attr(&mut self, kind: u16, data: &[u8]) -> &mut Msg {
        let len = 4 + data.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        pad(&mut self.buf);
        self
    }

    fn str_attr(&mut self, kind: u16, s: &str) -> &mut Msg {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.attr(kind, &v)
    }

    /// Open a nested attribute; `end` closes it (fixes its length).
    fn begin(&mut self, kind: u16) -> usize {
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        self.buf.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        at
    }

    fn end(&mut self, at: usize) {
        let len = (self.buf.len() - at) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn finish(mut self, seq: u32) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

fn pad(buf: &mut Vec<u8>) {
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
}

/// `struct ifinfomsg` (16 bytes): family, type, index, flags, change.
fn ifinfo(index: u32, flags: u32, change: u32) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[4..8].copy_from_slice(&(index as i32).to_ne_bytes());
    b[8..12].copy_from_slice(&flags.to_ne_bytes());
    b[12..16].copy_from_slice(&change.to_ne_bytes());
    b
}

/// Attributes of a message part: (type, payload).
fn attrs(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let kind = u16::from_ne_bytes([b[2], b[3]]) & !NLA_F_NESTED;
        if len < 4 || len > b.len() {
            break;
        }
        out.push((kind, &b[4..len]));
        let next = (len + 3) & !3;
        b = if next >= b.len() { &[] } else { &b[next..] };
    }
    out
}

fn u32_of(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4.min(b.len())]);
    u32::from_ne_bytes(a)
}

impl Netlink {
    /// A socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Netlink> {
        // SAFETY: socket(2) with constant arguments; the fd is owned right after.
        let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a new, valid descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_nl is plain data; zeroed is valid (pid 0: the kernel assigns one).
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: bind with a valid sockaddr_nl and its size.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &sa as *const libc::sockaddr_nl as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Netlink { fd, seq: 1 })
    }

    /// Send one request; collect the answer's messages (for dumps) until the ack or DONE.
    fn request(&mut self, msg: Msg, what: &dyn Fn() -> String) -> io::Result<Vec<Vec<u8>>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let data = msg.finish(seq);
        // SAFETY: send of a valid buffer on our socket (the kernel is the default peer).
        let n = unsafe { libc::send(self.fd.as_raw_fd(), data.as_ptr().cast(), data.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("{}: {e}", what())));
        }
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            // SAFETY: recv into a valid buffer of the given length.
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(io::Error::new(e.kind(), format!("{}: {e}", what())));
            }
            let mut b = &buf[..n as usize];
            while b.len() >= 16 {
                let len = u32_of(&b[0..4]) as usize;
                let kind = u16::from_ne_bytes([b[4], b[5]]);
                let mseq = u32_of(&b[8..12]);
                if len < 16 || len > b.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: short netlink message", what()),
                    ));
                }
                let body = &b[16..len];
                if mseq == seq {
                    match kind {
                        NLMSG_ERROR => {
                            let errno = -(u32_of(body) as i32);
                            if errno == 0 {
                                return Ok(out);
                            }
                            let e = io::Error::from_raw_os_error(errno);
                            return Err(io::Error::new(e.kind(), format!("{}: {e}", what())));
                        }
                        NLMSG_DONE => return Ok(out),
                        _ => out.push(body.to_vec()),
                    }
                }
                let next = (len + 3) & !3;
                b = if next >= b.len() { &[] } else { &b[next..] };
            }
        }
    }

    /// Every link in this namespace.
    pub fn links(&mut self) -> io::Result<Vec<Link>> {
        let msg = Msg::new(RTM_GETLINK, 0x300 /* NLM_F_DUMP */, &ifinfo(0, 0, 0));
        let parts = self.request(msg, &|| "listing links".into())?;
        Ok(parts.iter().filter_map(|p| parse_link(p)).collect())
    }

    /// The link called `name`, if there is one.
    pub fn link(&mut self, name: &str) -> io::Result<Option<Link>> {
        let mut msg = Msg::new(RTM_GETLINK, 0, &ifinfo(0, 0, 0));
        msg.str_attr(IFLA_IFNAME, name);
        match self.request(msg, &|| format!("looking up link {name}")) {
            Ok(parts) => Ok(parts.iter().find_map(|p| parse_link(p))),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) || e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) if e.to_string().contains("No such device") => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn index(&mut self, name: &str) -> io::Result<u32> {
        self.link(name)?
            .map(|l| l.index)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no network link named {name}")))
    }

    /// A new bridge (down; see [`Netlink::set_up`]).
    pub fn create_bridge(&mut self, name: &str, mtu: Option<u32>) -> io::Result<()> {
        let mut msg = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifinfo(0, 0, 0));
        msg.str_attr(IFLA_IFNAME, name);
        if let Some(m) = mtu {
            msg.attr(IFLA_MTU, &m.to_ne_bytes());
        }
        let li = msg.begin(IFLA_LINKINFO);
        msg.str_attr(IFLA_INFO_KIND, "bridge");
        msg.end(li);
        self.request(msg, &|| format!("creating bridge {name}")).map(drop)
    }

    /// A new veth pair `host` <-> `peer`, both in this namespace and down.
    pub fn create_veth(&mut self, host: &str, peer: &str, mtu: Option<u32>) -> io::Result<()> {
        let mut msg = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifinfo(0, 0, 0));
        msg.str_attr(IFLA_IFNAME, host);
        if let Some(m) = mtu {
            msg.attr(IFLA_MTU, &m.to_ne_bytes());
        }
        let li = msg.begin(IFLA_LINKINFO);
        msg.str_attr(IFLA_INFO_KIND, "veth");
        let data = msg.begin(IFLA_INFO_DATA);
        let p = msg.begin(VETH_INFO_PEER);
        msg.buf.extend_from_slice(&ifinfo(0, 0, 0));
        msg.str_attr(IFLA_IFNAME, peer);
        if let Some(m) = mtu {
            msg.attr(IFLA_MTU, &m.to_ne_bytes());
        }
        msg.end(p);
        msg.end(data);
        msg.end(li);
        self.request(msg, &|| format!("creating veth pair {host}/{peer}")).map(drop)
    }

    fn set_link(&mut self, name: &str, what: &str, f: impl FnOnce(&mut Msg)) -> io::Result<()> {
        let idx = self.index(name)?;
        let mut msg = Msg::new(RTM_NEWLINK, 0, &ifinfo(idx, 0, 0));
        f(&mut msg);
        self.request(msg, &|| format!("{what} {name}")).map(drop)
    }

    /// Bring a link up.
    pub fn set_up(&mut self, name: &str) -> io::Result<()> {
        let idx = self.index(name)?;
        let msg = Msg::new(RTM_NEWLINK, 0, &ifinfo(idx, IFF_UP, IFF_UP));
        self.request(msg, &|| format!("bringing up {name}")).map(drop)
    }

    /// Enslave a link to a bridge.
    pub fn set_master(&mut self, name: &str, bridge: &str) -> io::Result<()> {
        let master = self.index(bridge)?;
        self.set_link(name, &format!("attaching to {bridge}:"), |m| {
            m.attr(IFLA_MASTER, &master.to_ne_bytes());
        })
    }

    /// Move a link into the network namespace open as `netns` (a `/proc/<pid>/ns/net` or a
    /// bind-mounted namespace file); it disappears from this one.
    pub fn move_to_netns(&mut self, name: &str, netns: &impl AsRawFd) -> io::Result<()> {
        let fd = netns.as_raw_fd() as u32;
        self.set_link(name, "moving to another network namespace:", |m| {
            m.attr(IFLA_NET_NS_FD, &fd.to_ne_bytes());
        })
    }

    /// Rename a link (it must be down).
    pub fn rename(&mut self, name: &str, new: &str) -> io::Result<()> {
        self.set_link(name, &format!("renaming to {new}:"), |m| {
            m.str_attr(IFLA_IFNAME, new);
        })
    }

    /// Set a link's MAC address.
    pub fn set_mac(&mut self, name: &str, mac: [u8; 6]) -> io::Result<()> {
        self.set_link(name, "setting the MAC address of", |m| {
            m.attr(IFLA_ADDRESS, &mac);
        })
    }

    /// Delete a link (for a veth, its peer goes too). A missing link is not an error.
    pub fn delete_link(&mut self, name: &str) -> io::Result<()> {
        let Some(l) = self.link(name)? else { return Ok(()) };
        let msg = Msg::new(RTM_DELLINK, 0, &ifinfo(l.index, 0, 0));
        match self.request(msg, &|| format!("deleting link {name}")) {
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(()),
            r => r.map(drop),
        }
    }

    /// Add an IPv4 address (`addr/prefix`, with its broadcast address) to a link.
    pub fn add_address(&mut self, name: &str, addr: Ipv4Addr, prefix: u8) -> io::Result<()> {
        let idx = self.index(name)?;
        // struct ifaddrmsg: family, prefixlen, flags, scope, index.
        let mut fixed = [0u8; 8];
        fixed[0] = libc::AF_INET as u8;
        fixed[1] = prefix;
        fixed[4..8].copy_from_slice(&idx.to_ne_bytes());
        let mut msg = Msg::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &fixed);
        msg.attr(IFA_LOCAL, &addr.octets());
        msg.attr(IFA_ADDRESS, &addr.octets());
        let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix as u32) };
        let bcast = Ipv4Addr::from(u32::from(addr) | !mask);
        msg.attr(IFA_BROADCAST, &bcast.octets());
        self.request(msg, &|| format!("adding address {addr}/{prefix} to {name}")).map(drop)
    }

    /// Add a route to `dst/prefix` (0.0.0.0/0: the default route) via `gateway` on link `dev`.
    pub fn add_route(&mut self, dst: Ipv4Addr, prefix: u8, gateway: Option<Ipv4Addr>, dev: &str) -> io::Result<()> {
        let idx = self.index(dev)?;
        // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
        let mut fixed = [0u8; 12];
        fixed[0] = libc::AF_INET as u8;
        fixed[1] = prefix;
        fixed[4] = RT_TABLE_MAIN;
        fixed[5] = RTPROT_BOOT;
        fixed[6] = RT_SCOPE_UNIVERSE;
        fixed[7] = RTN_UNICAST;
        let mut msg = Msg::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &fixed);
        if prefix > 0 {
            msg.attr(RTA_DST, &dst.octets());
        }
        if let Some(gw) = gateway {
            msg.attr(RTA_GATEWAY, &gw.octets());
        }
        msg.attr(RTA_OIF, &idx.to_ne_bytes());
        self.request(msg, &|| format!("adding route {dst}/{prefix} on {dev}")).map(drop)
    }
}

fn parse_link(p: &[u8]) -> Option<Link> {
    if p.len() < 16 {
        return None;
    }
    let index = u32_of(&p[4..8]);
    let flags = u32_of(&p[8..12]);
    let mut l = Link { index, name: String::new(), up: flags & IFF_UP != 0, master: None, mtu: 0, mac: Vec::new() };
    for (k, v) in attrs(&p[16..]) {
        match k {
            IFLA_IFNAME => l.name = String::from_utf8_lossy(v).trim_end_matches('\0').to_string(),
            IFLA_MASTER => l.master = Some(u32_of(v)),
            IFLA_MTU => l.mtu = u32_of(v),
            IFLA_ADDRESS => l.mac = v.to_vec(),
            _ => {}
        }
    }
    Some(l)
}
