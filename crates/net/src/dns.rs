//! The embedded DNS server of a user-defined network: it listens on the network's gateway
//! address (port 53, UDP), answers A questions for the names the engine knows on that network
//! (container names, aliases, ids) and forwards every other question, as it came, to the host's
//! resolvers, relaying their answer. AAAA questions for known names get an empty answer (no
//! IPv6 yet), so resolvers fall back to A at once.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Looks a name (lower case, no trailing dot) up for the client at the given address: its
/// addresses on this network (or on another network that client is on).
pub type Lookup = Arc<dyn Fn(Ipv4Addr, &str) -> Vec<Ipv4Addr> + Send + Sync>;

/// A running server; dropping it (or [`Server::stop`]) ends it within half a second.
pub struct Server {
    stop: Arc<AtomicBool>,
    pub addr: SocketAddr,
}

impl Server {
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The question of a query: (name, type, end offset of the question section).
fn question(q: &[u8]) -> Option<(String, u16, usize)> {
    if q.len() < 12 || u16::from_be_bytes([q[4], q[5]]) != 1 {
        return None;
    }
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let n = *q.get(i)? as usize;
        i += 1;
        if n == 0 {
            break;
        }
        if n > 63 {
            return None; // compression is not used in questions
        }
        labels.push(String::from_utf8_lossy(q.get(i..i + n)?).to_ascii_lowercase());
        i += n;
    }
    let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
    Some((labels.join("."), qtype, i + 4))
}

/// An answer to query `q` (whose question ends at `qend`) with these A records.
fn answer(q: &[u8], qend: usize, ips: &[Ipv4Addr]) -> Vec<u8> {
    let mut r = Vec::with_capacity(qend + ips.len() * 16);
    r.extend_from_slice(&q[0..2]); // id
    let rd = q[2] & 0x01;
    r.push(0x84 | rd); // QR, AA, RD as asked
    r.push(0x80); // RA, NOERROR
    r.extend_from_slice(&1u16.to_be_bytes());
    r.extend_from_slice(&(ips.len() as u16).to_be_bytes());
    r.extend_from_slice(&[0, 0, 0, 0]);
    r.extend_from_slice(&q[12..qend]);
    for ip in ips {
        r.extend_from_slice(&[0xc0, 0x0c]); // the name: a pointer to the question's
        r.extend_from_slice(&1u16.to_be_bytes()); // A
        r.extend_from_slice(&1u16.to_be_bytes()); // IN
        r.extend_from_slice(&600u32.to_be_bytes());
        r.extend_from_slice(&4u16.to_be_bytes());
        r.extend_from_slice(&ip.octets());
    }
    r
}

/// A SERVFAIL for query `q` (the upstreams did not answer).
fn servfail(q: &[u8]) -> Vec<u8> {
    let mut r = q.to_vec();
    r[2] |= 0x80;
    r[3] = 0x80 | 2;
    r
}

/// Ask the upstreams in turn; their first answer.
fn forward(q: &[u8], upstreams: &[SocketAddr]) -> Option<Vec<u8>> {
    for u in upstreams {
        let Ok(s) = UdpSocket::bind(if u.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }) else { continue };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.send_to(q, u).is_err() {
            continue;
        }
        let mut buf = [0u8; 4096];
        if let Ok((n, from)) = s.recv_from(&mut buf) {
            if from == *u && n >= 2 && buf[0..2] == q[0..2] {
                return Some(buf[..n].to_vec());
            }
        }
    }
    None
}

/// The host's resolvers, from resolv.conf text (any address, loopback included: the daemon
/// runs on the host).
pub fn upstreams(resolv_conf: &str) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|r| r.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// Serve on `addr` (the network's gateway, port 53).
pub fn serve(addr: SocketAddr, lookup: Lookup, upstreams: Vec<SocketAddr>) -> io::Result<Server> {
    let sock = UdpSocket::bind(addr).map_err(|e| io::Error::new(e.kind(), format!("DNS on {addr}: {e}")))?;
    sock.set_read_timeout(Some(Duration::from_millis(500)))?;
    let addr = sock.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let sock = Arc::new(sock);
    let upstreams = Arc::new(upstreams);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while !flag.load(Ordering::Relaxed) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else { continue };
            let q = buf[..n].to_vec();
            let Some((name, qtype, qend)) = question(&q) else { continue };
            let client = match from.ip() {
                std::net::IpAddr::V4(ip) => ip,
                std::net::IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
            };
            let ips = if matches!(qtype, 1 | 28 | 255) { lookup(client, &name) } else { Vec::new() };
            if !ips.is_empty() {
                let a = if qtype == 28 { answer(&q, qend, &[]) } else { answer(&q, qend, &ips) };
                let _ = sock.send_to(&a, from);
                continue;
            }
            let (sock, ups) = (sock.clone(), upstreams.clone());
            std::thread::spawn(move || {
                let reply = forward(&q, &ups).unwrap_or_else(|| servfail(&q));
                let _ = sock.send_to(&reply, from);
            });
        }
    });
    Ok(Server { stop, addr })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
        let mut q = id.to_be_bytes().to_vec();
        q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        for l in name.split('.') {
            q.push(l.len() as u8);
            q.extend_from_slice(l.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&1u16.to_be_bytes());
        q
    }

    fn ask(server: SocketAddr, q: &[u8]) -> Vec<u8> {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.send_to(q, server).unwrap();
        let mut buf = [0u8; 4096];
        let (n, _) = s.recv_from(&mut buf).unwrap();
        buf[..n].to_vec()
    }

    #[test]
    fn known_names_are_answered_and_others_forwarded() {
        // An "upstream" of the test's own, answering every forwarded question with 9.9.9.9.
        let up = UdpSocket::bind("127.0.0.1:0").unwrap();
        let up_addr = up.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = up.recv_from(&mut buf) {
                let (_, _, end) = question(&buf[..n]).unwrap();
                let _ = up.send_to(&answer(&buf[..n], end, &[Ipv4Addr::new(9, 9, 9, 9)]), from);
            }
        });
        let lookup: Lookup = Arc::new(|_, n: &str| match n {
            "web" | "web.alias" => vec![Ipv4Addr::new(10, 1, 0, 2)],
            _ => vec![],
        });
        let srv = serve("127.0.0.1:0".parse().unwrap(), lookup, vec![up_addr]).unwrap();
        let r = ask(srv.addr, &query(7, "WEB", 1));
        assert_eq!(&r[0..2], &7u16.to_be_bytes());
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 1, "one answer");
        assert_eq!(&r[r.len() - 4..], &[10, 1, 0, 2]);
        let r = ask(srv.addr, &query(8, "web", 28));
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 0, "no AAAA");
        assert_eq!(r[3] & 0x0f, 0, "NOERROR");
        let r = ask(srv.addr, &query(9, "example.org", 1));
        assert_eq!(&r[0..2], &9u16.to_be_bytes());
        assert_eq!(&r[r.len() - 4..], &[9, 9, 9, 9], "forwarded");
        assert_eq!(upstreams("nameserver 127.0.0.53\nsearch x\nnameserver ::1\n").len(), 2);
    }
}
