//! `network_allowlist`: the hosts a call may reach, and how a host is
//! compared with them.
//!
//! An entry is a hostname (`api.github.com`), a wildcard over the first
//! label (`*.example.com`: any name under `example.com`, at any depth, not
//! `example.com` itself), an IP address (`10.0.0.1`, `[2001:db8::1]`) or a
//! CIDR range (`10.0.0.0/8`, `2001:db8::/32`), the first three optionally
//! with `:port`. Names are held as a URL parser holds them (WHATWG, the
//! `url` crate): lower case, IDNA to punycode, without the trailing dot,
//! so that an entry and a host found in a call compare as text.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::Arc;

use serde::{Serialize, Serializer};

/// A host as a call names it, normalised: a domain (lower case, punycode,
/// no trailing dot) or an IP address (IPv4-mapped IPv6 as IPv4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dest {
    Domain(String),
    Ip(IpAddr),
}

impl Dest {
    /// A host the URL parser read (`url::Host`), normalised.
    pub fn from_host<S: AsRef<str>>(host: url::Host<S>) -> Dest {
        match host {
            url::Host::Domain(d) => {
                let d = d.as_ref();
                Dest::Domain(d.strip_suffix('.').unwrap_or(d).to_string())
            }
            url::Host::Ipv4(a) => Dest::Ip(IpAddr::V4(a)),
            url::Host::Ipv6(a) => Dest::Ip(match a.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(a),
            }),
        }
    }
}

impl fmt::Display for Dest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dest::Domain(d) => f.write_str(d),
            Dest::Ip(IpAddr::V4(a)) => write!(f, "{a}"),
            Dest::Ip(IpAddr::V6(a)) => write!(f, "[{a}]"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Pattern {
    /// A name, exactly.
    Name(String),
    /// `*.example.com`, held as `.example.com`.
    Under(String),
    Ip(IpAddr),
    Net(IpAddr, u8),
}

/// One entry of a `network_allowlist`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pattern: Pattern,
    port: Option<u16>,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.pattern {
            Pattern::Name(n) => f.write_str(n)?,
            Pattern::Under(s) => write!(f, "*{s}")?,
            Pattern::Ip(IpAddr::V4(a)) => write!(f, "{a}")?,
            Pattern::Ip(IpAddr::V6(a)) => write!(f, "[{a}]")?,
            Pattern::Net(a, len) => write!(f, "{a}/{len}")?,
        }
        match self.port {
            Some(p) => write!(f, ":{p}"),
            None => Ok(()),
        }
    }
}

impl Entry {
    /// Parses one entry; the error says what is wrong with it.
    pub fn parse(s: &str) -> Result<Entry, String> {
        if s.is_empty() {
            return Err("is empty".into());
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("has white space or a control character".into());
        }
        if s.contains("://") {
            return Err("is a URL: write the host alone (`api.example.com`, optionally `:port`)".into());
        }
        if s.contains('@') {
            return Err("has user info (`@`): write the host alone".into());
        }
        if let Some((addr, len)) = s.rsplit_once('/') {
            return cidr(addr, len);
        }
        if s.contains(['?', '#', '\\']) {
            return Err("is not a host: write the host alone (`api.example.com`, optionally `:port`)".into());
        }
        let (host, port) = split_port(s)?;
        let port = port.map(parse_port).transpose()?;
        let pattern = if let Some(inner) = host.strip_prefix('[') {
            let Some(inner) = inner.strip_suffix(']') else {
                return Err("has an unclosed `[`".into());
            };
            let a = Ipv6Addr::from_str(inner).map_err(|_| format!("has {inner:?} in brackets, not an IPv6 address"))?;
            Pattern::Ip(match a.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(a),
            })
        } else if host == "*" {
            return Err("is `*` alone, which would allow every host: list the hosts".into());
        } else if let Some(rest) = host.strip_prefix("*.") {
            if rest.contains('*') {
                return Err("has a `*` beyond the first label: only `*.name` is a wildcard".into());
            }
            Pattern::Under(format!(".{}", domain(rest)?))
        } else if host.contains('*') {
            return Err("has a `*` that is not the whole first label: only `*.name` is a wildcard".into());
        } else if let Ok(a) = Ipv4Addr::from_str(host) {
            Pattern::Ip(IpAddr::V4(a))
        } else {
            Pattern::Name(domain(host)?)
        };
        Ok(Entry { pattern, port })
    }

    /// Whether `host` (at `port`, when known) is this entry's. An entry
    /// with a port never matches a host whose port is unknown.
    fn allows(&self, host: &Dest, port: Option<u16>) -> bool {
        self.port.is_none_or(|p| Some(p) == port) && self.names(host)
    }

    /// Whether `host` is this entry's, whatever the port.
    fn names(&self, host: &Dest) -> bool {
        match (&self.pattern, host) {
            (Pattern::Name(n), Dest::Domain(d)) => n == d,
            (Pattern::Under(suffix), Dest::Domain(d)) => d.len() > suffix.len() && d.ends_with(suffix.as_str()),
            (Pattern::Ip(a), Dest::Ip(b)) => a == b,
            (Pattern::Net(net, len), Dest::Ip(ip)) => in_net(*net, *len, *ip),
            _ => false,
        }
    }
}

/// `host` and the text after its last `:` (bracketed IPv6 aware).
fn split_port(s: &str) -> Result<(&str, Option<&str>), String> {
    if s.starts_with('[') {
        return Ok(match s.find(']') {
            Some(end) if end + 1 < s.len() => {
                let rest = &s[end + 1..];
                let Some(port) = rest.strip_prefix(':') else {
                    return Err(format!("has {rest:?} after the IPv6 address"));
                };
                (&s[..=end], Some(port))
            }
            _ => (s, None),
        });
    }
    match s.matches(':').count() {
        0 => Ok((s, None)),
        1 => Ok(s.split_once(':').map_or((s, None), |(h, p)| (h, Some(p)))),
        _ => Err("has several `:`: write IPv6 addresses in brackets (`[2001:db8::1]`)".into()),
    }
}

fn parse_port(p: &str) -> Result<u16, String> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("has port {p:?}, expected a number from 1 to 65535"));
    }
    match p.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("has port {p}, expected a number from 1 to 65535")),
    }
}

/// A hostname as the URL parser holds it, or why it is none.
fn domain(s: &str) -> Result<String, String> {
    match url::Host::parse(s) {
        Ok(url::Host::Domain(d)) => {
            let d = d.strip_suffix('.').unwrap_or(&d);
            if d.is_empty() || d.split('.').any(str::is_empty) {
                return Err(format!("has {s:?}, which has an empty label"));
            }
            Ok(d.to_string())
        }
        Ok(_) => Err(format!(
            "has {s:?}, which a URL parser reads as an IP address: write IPv4 addresses as four decimal numbers"
        )),
        Err(e) => Err(format!("has {s:?}, which is not a hostname ({e})")),
    }
}

fn cidr(addr: &str, len: &str) -> Result<Entry, String> {
    let bare = addr.strip_prefix('[').and_then(|a| a.strip_suffix(']')).unwrap_or(addr);
    let Ok(ip) = IpAddr::from_str(bare) else {
        return Err(
            "has a `/` but is not a CIDR range (`10.0.0.0/8`, `2001:db8::/32`): entries are hosts, not URLs or paths"
                .into(),
        );
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match len.parse::<u8>() {
        Ok(n) if n <= max && len.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => return Err(format!("has prefix length {len:?}, expected 0 to {max}")),
    };
    let ip = match ip {
        IpAddr::V6(a) if prefix >= 96 && a.to_ipv4_mapped().is_some() => {
            return Err("is an IPv4-mapped range: write it as IPv4".into());
        }
        other => other,
    };
    if network(ip, prefix) != ip {
        return Err(format!(
            "has bits set after its prefix: the range is {}/{prefix}",
            network(ip, prefix)
        ));
    }
    Ok(Entry {
        pattern: Pattern::Net(ip, prefix),
        port: None,
    })
}

fn network(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
        }
    }
}

fn in_net(net: IpAddr, prefix: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => network(ip, prefix) == net,
        _ => false,
    }
}

/// A rule's `network_allowlist`: cheap to clone (shared).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allowlist(Arc<[Entry]>);

impl Allowlist {
    pub fn new(entries: Vec<Entry>) -> Allowlist {
        Allowlist(entries.into())
    }

    /// Whether some entry allows `host` at `port` (`None`: not known).
    pub fn allows(&self, host: &Dest, port: Option<u16>) -> bool {
        self.0.iter().any(|e| e.allows(host, port))
    }

    /// Whether some entry names `host`, whatever its port: when it does
    /// and [`Allowlist::allows`] does not, the port broke the rule.
    pub fn names(&self, host: &Dest) -> bool {
        self.0.iter().any(|e| e.names(host))
    }

    /// The entries as normalised text, in order.
    pub fn entries(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }
}

impl Serialize for Allowlist {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(ToString::to_string))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each entry as written, then its normalised text or `error: ...`.
    #[test]
    fn entries_parse_or_say_why_not() {
        let cases = [
            ("api.github.com", "api.github.com"),
            ("API.GitHub.com.", "api.github.com"),
            ("bücher.example", "xn--bcher-kva.example"),
            ("*.example.com", "*.example.com"),
            ("api.example.com:443", "api.example.com:443"),
            ("10.1.2.3", "10.1.2.3"),
            ("10.1.2.3:8080", "10.1.2.3:8080"),
            ("[2001:DB8::1]", "[2001:db8::1]"),
            ("[2001:db8::1]:443", "[2001:db8::1]:443"),
            ("[::ffff:10.0.0.1]", "10.0.0.1"),
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("2001:db8::/32", "2001:db8::/32"),
            ("[2001:db8::]/32", "2001:db8::/32"),
            ("", "error: is empty"),
            (" a.com", "error: has white space or a control character"),
            ("https://a.com", "error: is a URL"),
            ("a.com/path", "error: has a `/` but is not a CIDR range"),
            ("user@a.com", "error: has user info"),
            ("*", "error: is `*` alone"),
            ("*.*.com", "error: has a `*` beyond the first label"),
            ("a.*.com", "error: has a `*` that is not the whole first label"),
            ("*a.com", "error: has a `*` that is not the whole first label"),
            (
                "10.0.0.1/8",
                "error: has bits set after its prefix: the range is 10.0.0.0/8",
            ),
            ("10.0.0.0/33", "error: has prefix length \"33\", expected 0 to 32"),
            ("10.0.0.0/x", "error: has prefix length \"x\""),
            ("a.com:0", "error: has port 0"),
            ("a.com:65536", "error: has port 65536"),
            ("a.com:http", "error: has port \"http\""),
            ("2001:db8::1", "error: has several `:`"),
            (
                "127.1",
                "error: has \"127.1\", which a URL parser reads as an IP address",
            ),
            (
                "0x7f.0.0.1",
                "error: has \"0x7f.0.0.1\", which a URL parser reads as an IP address",
            ),
            ("a..com", "error: has \"a..com\", which has an empty label"),
            ("a%20b.com", "error: has \"a%20b.com\", which is not a hostname"),
            ("[::1", "error: has an unclosed `[`"),
        ];
        for (input, want) in cases {
            let got = match Entry::parse(input) {
                Ok(e) => e.to_string(),
                Err(e) => format!("error: {e}"),
            };
            assert!(got.starts_with(want), "{input:?}: got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn hosts_match_entries_by_name_range_and_port() {
        let list = Allowlist::new(
            [
                "api.github.com",
                "*.example.com",
                "10.0.0.0/8",
                "[2001:db8::1]",
                "pinned.example.net:443",
            ]
            .iter()
            .map(|e| Entry::parse(e).expect("entry"))
            .collect(),
        );
        let d = |s: &str| Dest::Domain(s.into());
        let ip = |s: &str| Dest::Ip(IpAddr::from_str(s).expect("ip"));
        let cases = [
            (d("api.github.com"), None, true),
            (d("github.com"), None, false),
            (d("a.example.com"), Some(80), true),
            (d("a.b.example.com"), None, true),
            (d("example.com"), None, false),
            (d("badexample.com"), None, false),
            (ip("10.255.0.1"), None, true),
            (ip("11.0.0.1"), None, false),
            (ip("2001:db8::1"), None, true),
            (ip("2001:db8::2"), None, false),
            (d("pinned.example.net"), Some(443), true),
            (d("pinned.example.net"), Some(8443), false),
            (d("pinned.example.net"), None, false),
        ];
        for (host, port, want) in cases {
            assert_eq!(list.allows(&host, port), want, "{host} port {port:?}");
        }
        assert!(list.names(&d("pinned.example.net")));
    }
}
