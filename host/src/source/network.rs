//! The networks an operator lets sources reach although private sources are not allowed: the
//! entries of the `[source] allowed_private_networks` setting.
//!
//! An entry is checked when the configuration is read, so a typo stops the daemon at start-up
//! with the entry named instead of leaving the internal API it meant to open unreachable.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use super::egress::embedded_v4;

/// A block of IP addresses: a CIDR block such as `10.1.2.0/24` or `fd00:1::/64`, or a single
/// address such as `127.0.0.2` (the same as `127.0.0.2/32`).
///
/// Bits past the prefix must be zero (`10.1.2.0/24`, not `10.1.2.3/24`), because a block written
/// with them set is usually a typo for something narrower or wider than was meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct Network {
    base: IpAddr,
    prefix: u8,
}

impl Network {
    /// Whether `ip` is in the block. An IPv4 address and the IPv6 forms that embed it
    /// (IPv4-mapped and the like) count as one address, since the egress guard judges those by
    /// the IPv4 address inside them too.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.base, ip) {
            (IpAddr::V4(base), IpAddr::V4(ip)) => {
                same_prefix(u32::from(base).into(), u32::from(ip).into(), 32 - self.prefix)
            }
            (IpAddr::V6(base), IpAddr::V6(ip)) => same_prefix(base.into(), ip.into(), 128 - self.prefix),
            (IpAddr::V4(_), IpAddr::V6(ip)) => embedded_v4(ip).is_some_and(|v4| self.contains(v4.into())),
            (IpAddr::V6(_), IpAddr::V4(ip)) => self.contains(ip.to_ipv6_mapped().into()),
        }
    }

    /// The number of bits in an address of the block's family.
    fn width(base: IpAddr) -> u8 {
        if base.is_ipv4() { 32 } else { 128 }
    }
}

/// Whether `a` and `b` agree in every bit above the lowest `host_bits`.
fn same_prefix(a: u128, b: u128, host_bits: u8) -> bool {
    // A shift by the whole width (a /0 block) leaves nothing to compare.
    a.checked_shr(host_bits.into()).unwrap_or(0) == b.checked_shr(host_bits.into()).unwrap_or(0)
}

/// `address` with every bit past `prefix` cleared.
fn first_address(address: IpAddr, prefix: u8) -> IpAddr {
    let host_bits = u32::from(Network::width(address) - prefix);
    let mask = |bits: u128| bits.checked_shr(host_bits).unwrap_or(0).checked_shl(host_bits).unwrap_or(0);
    match address {
        IpAddr::V4(v4) => IpAddr::V4((mask(u32::from(v4).into()) as u32).into()),
        IpAddr::V6(v6) => IpAddr::V6(mask(v6.into()).into()),
    }
}

impl FromStr for Network {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let base: IpAddr = address.trim().parse().map_err(|_| {
            format!(
                "`{}` is not an IP address or network; write a CIDR block such as 10.1.2.0/24 or one address \
                 such as 10.1.2.3",
                text.escape_debug()
            )
        })?;
        let width = Network::width(base);
        let prefix = match prefix {
            None => width,
            Some(prefix) => prefix.trim().parse::<u8>().ok().filter(|bits| *bits <= width).ok_or_else(|| {
                format!(
                    "`{}` has a prefix length of `{}`; use a number of bits from 0 to {width}",
                    text.escape_debug(),
                    prefix.escape_debug()
                )
            })?,
        };
        let first = first_address(base, prefix);
        if first != base {
            return Err(format!(
                "`{}` has bits set past its /{prefix} prefix; write {first}/{prefix}, or {base} alone for that one \
                 address",
                text.escape_debug()
            ));
        }
        Ok(Self { base, prefix })
    }
}

impl TryFrom<String> for Network {
    type Error = String;

    /// Parses an entry of the configuration file, naming the setting in the error, since the
    /// configuration loader reports only the file.
    fn try_from(text: String) -> Result<Self, String> {
        text.parse().map_err(|e| format!("in source.allowed_private_networks, {e}"))
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(text: &str) -> Network {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn contains(entry: &str, ip: &str) -> bool {
        network(entry).contains(ip.parse().unwrap())
    }

    #[test]
    fn parses_blocks_and_single_addresses() {
        for (text, shown) in [
            ("10.1.2.0/24", "10.1.2.0/24"),
            ("127.0.0.2", "127.0.0.2/32"),
            (" 192.168.0.0 / 16 ", "192.168.0.0/16"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("fd00:1::/64", "fd00:1::/64"),
            ("::1", "::1/128"),
            ("::/0", "::/0"),
        ] {
            assert_eq!(network(text).to_string(), shown, "{text}");
        }
    }

    #[test]
    fn bad_entries_say_how_to_write_them() {
        let cases = [
            (
                "",
                "`` is not an IP address or network; write a CIDR block such as 10.1.2.0/24 or one address such as 10.1.2.3",
            ),
            (
                "internal.example",
                "`internal.example` is not an IP address or network; write a CIDR block such as 10.1.2.0/24 or one address such as 10.1.2.3",
            ),
            (
                "10.1.2/24",
                "`10.1.2/24` is not an IP address or network; write a CIDR block such as 10.1.2.0/24 or one address such as 10.1.2.3",
            ),
            ("10.0.0.0/33", "`10.0.0.0/33` has a prefix length of `33`; use a number of bits from 0 to 32"),
            ("10.0.0.0/", "`10.0.0.0/` has a prefix length of ``; use a number of bits from 0 to 32"),
            ("fd00::/129", "`fd00::/129` has a prefix length of `129`; use a number of bits from 0 to 128"),
            (
                "10.1.2.3/24",
                "`10.1.2.3/24` has bits set past its /24 prefix; write 10.1.2.0/24, or 10.1.2.3 alone for that one address",
            ),
            (
                "fd00::1/64",
                "`fd00::1/64` has bits set past its /64 prefix; write fd00::/64, or fd00::1 alone for that one address",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<Network>().unwrap_err(), want, "{text}");
        }
    }

    #[test]
    fn contains_exactly_the_block() {
        assert!(contains("10.1.2.0/24", "10.1.2.0") && contains("10.1.2.0/24", "10.1.2.255"));
        assert!(!contains("10.1.2.0/24", "10.1.1.255") && !contains("10.1.2.0/24", "10.1.3.0"));
        assert!(contains("127.0.0.2", "127.0.0.2") && !contains("127.0.0.2", "127.0.0.1"));
        assert!(contains("0.0.0.0/0", "169.254.169.254") && !contains("0.0.0.0/0", "fd00::1"));
        assert!(contains("fd00:1::/64", "fd00:1::ffff") && !contains("fd00:1::/64", "fd00:2::1"));
        assert!(contains("::/0", "::1") && contains("::/0", "127.0.0.1"));
    }

    #[test]
    fn ipv4_blocks_hold_the_ipv6_forms_of_their_addresses() {
        assert!(contains("10.1.2.0/24", "::ffff:10.1.2.3"));
        assert!(contains("127.0.0.2", "::ffff:127.0.0.2"));
        assert!(!contains("127.0.0.2", "::ffff:127.0.0.1"));
        assert!(!contains("10.1.2.0/24", "fd00::10.1.2.3"));
        assert!(contains("::ffff:10.1.2.0/120", "10.1.2.3"));
    }
}
