//! Which IP addresses a source may never reach unless the operator allows private sources.
//!
//! This is the classification behind the egress-guard invariant (ARCHITECTURE.md): a tenant controls the URL a project polls (and a
//! plugin may rewrite it), so without this check a project could make the daemon read its own
//! loopback services, the cloud metadata endpoint or anything else on the operator's network. The
//! check is pure so that it can be tested exhaustively; `guard.rs` applies it to every resolved
//! address and to IP-literal hosts.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Names the blocked range `ip` falls in, or `None` when the address is public.
///
/// IPv6 forms that carry an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64 and 6to4) are
/// judged by the IPv4 address inside them, because the network delivers them to that address.
pub(super) fn blocked_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => blocked_v4(v4),
        IpAddr::V6(v6) => blocked_v6(v6),
    }
}

fn blocked_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    // Linux treats a connection to 0.0.0.0 (and the rest of 0/8) as one to the local host.
    if a == 0 {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    if ip.is_private() {
        return Some("private");
    }
    // 100.64/10 is carrier-grade NAT space; some clouds put metadata services in it.
    if a == 100 && (b & 0b1100_0000) == 64 {
        return Some("carrier-grade NAT");
    }
    // 169.254/16 holds the cloud metadata endpoint 169.254.169.254.
    if ip.is_link_local() {
        return Some("link-local (cloud metadata)");
    }
    if ip.is_multicast() {
        return Some("multicast");
    }
    if ip.is_broadcast() {
        return Some("broadcast");
    }
    // 240/4 is reserved and never routed on the public internet.
    if a >= 240 {
        return Some("reserved");
    }
    None
}

fn blocked_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    if let Some(v4) = embedded_v4(ip) {
        return blocked_v4(v4);
    }
    let first = ip.segments()[0];
    // fc00::/7 includes AWS's IPv6 metadata endpoint fd00:ec2::254.
    if (first & 0xfe00) == 0xfc00 {
        return Some("unique local");
    }
    if (first & 0xffc0) == 0xfe80 {
        return Some("link-local");
    }
    // fec0::/10 is the deprecated site-local range, still private where it is used.
    if (first & 0xffc0) == 0xfec0 {
        return Some("site-local");
    }
    if ip.is_multicast() {
        return Some("multicast");
    }
    None
}

/// The IPv4 address an IPv6 address stands for, if it is one of the forms that embed one.
pub(super) fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        // ::ffff:a.b.c.d (IPv4-mapped) and ::a.b.c.d (IPv4-compatible, deprecated).
        [0, 0, 0, 0, 0, 0xffff, ..] | [0, 0, 0, 0, 0, 0, ..] => Some(low),
        // 64:ff9b::a.b.c.d is translated to a.b.c.d by a NAT64 gateway.
        [0x64, 0xff9b, 0, 0, 0, 0, ..] => Some(low),
        // 2002:aabb:ccdd::/48 is 6to4, tunnelled to a.b.c.d.
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(ip: &str) -> Option<&'static str> {
        blocked_range(ip.parse().unwrap())
    }

    #[test]
    fn blocks_every_private_ipv4_range_at_its_edges() {
        let cases = [
            ("0.0.0.0", "unspecified"),
            ("0.255.255.255", "unspecified"),
            ("127.0.0.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("10.0.0.1", "private"),
            ("10.255.255.255", "private"),
            ("172.16.0.0", "private"),
            ("172.31.255.255", "private"),
            ("192.168.0.1", "private"),
            ("100.64.0.0", "carrier-grade NAT"),
            ("100.127.255.255", "carrier-grade NAT"),
            ("100.100.100.200", "carrier-grade NAT"),
            ("169.254.169.254", "link-local (cloud metadata)"),
            ("169.254.0.1", "link-local (cloud metadata)"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("240.0.0.1", "reserved"),
        ];
        for (ip, want) in cases {
            assert_eq!(range(ip), Some(want), "{ip}");
        }
    }

    #[test]
    fn allows_public_ipv4_next_to_the_blocked_ranges() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.255.255",
            "192.169.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "223.255.255.255",
        ] {
            assert_eq!(range(ip), None, "{ip}");
        }
    }

    #[test]
    fn blocks_private_ipv6_ranges() {
        let cases = [
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("fc00::1", "unique local"),
            ("fd00:ec2::254", "unique local"),
            ("fe80::1", "link-local"),
            ("febf:ffff::1", "link-local"),
            ("fec0::1", "site-local"),
            ("ff02::1", "multicast"),
        ];
        for (ip, want) in cases {
            assert_eq!(range(ip), Some(want), "{ip}");
        }
    }

    #[test]
    fn judges_ipv6_forms_of_ipv4_by_the_embedded_address() {
        let cases = [
            ("::ffff:127.0.0.1", Some("loopback")),
            ("::ffff:169.254.169.254", Some("link-local (cloud metadata)")),
            ("::ffff:10.1.2.3", Some("private")),
            ("::10.1.2.3", Some("private")),
            ("::127.0.0.2", Some("loopback")),
            ("64:ff9b::192.168.1.1", Some("private")),
            ("2002:a9fe:a9fe::1", Some("link-local (cloud metadata)")),
            ("::ffff:8.8.8.8", None),
            ("64:ff9b::8.8.8.8", None),
            ("2002:0808:0808::1", None),
        ];
        for (ip, want) in cases {
            assert_eq!(range(ip), want, "{ip}");
        }
    }

    #[test]
    fn allows_public_ipv6() {
        for ip in ["2606:4700:4700::1111", "2001:4860:4860::8888", "2a00:1450:4001:80b::200e", "fbff::1", "fe7f::1"] {
            assert_eq!(range(ip), None, "{ip}");
        }
    }
}
