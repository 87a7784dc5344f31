//! The hosts a call names, held to its rule's `network_allowlist`: a pure
//! function of the request, the tool's input schema and the upstream's
//! address.
//!
//! Where hosts are found:
//!
//! - **the upstream's own URL** (HTTP upstreams, requests to the server);
//! - **by value**, in every string of the arguments, `_meta` and the
//!   resource URI, and in object member names, at any depth: a string that
//!   is a URL with a host (any scheme: `http:evil.com`, `ftp://`, `foo://`)
//!   and URLs inside text (`scheme://` or `scheme:\\`, up to white space);
//! - **by schema**: a property whose schema (after local `$ref`, `anyOf`,
//!   `oneOf`, `allOf`) has `format` `uri`, `iri`, `uri-reference`,
//!   `iri-reference`, `uri-template`, `hostname`, `idn-hostname`, `ipv4`,
//!   `ipv6`, `email` or `idn-email`, or whose name ends in the word `url`,
//!   `uri`, `href`, `endpoint`, `host`, `hostname` or `domain`
//!   (`baseUrl`, `webhook_url`): there also a bare host, `host:port` or a
//!   URL without a scheme (`evil.com/x`, as a client adding `https://`
//!   would read it), and an address's domain.
//!
//! Hosts are read as a browser reads them (WHATWG URL, the `url` crate):
//! user info dropped (`http://ok.com@evil.com` is `evil.com`), backslashes
//! as slashes, percent-encoding decoded, IDNA to punycode, lower case, the
//! trailing dot dropped, IPv4 in any form (`0x7f.1`, `2130706433`) as its
//! address, IPv4-mapped IPv6 as IPv4. A value that starts like a URL
//! (`http:`, `scheme://`) but whose host cannot be read is refused, as is
//! a host in a host field that cannot be read: what cannot be checked does
//! not pass.

use crate::governance::policy::{Allowlist, Dest};
use crate::json::Json;

/// What a request carries that may name a host.
#[derive(Clone, Copy, Debug, Default)]
pub struct Request<'a> {
    /// The upstream's URL (HTTP upstreams), for requests to the server.
    pub upstream: Option<&'a str>,
    pub arguments: Option<&'a Json>,
    /// The tool's `inputSchema`, which `arguments` is read with.
    pub schema: Option<&'a Json>,
    /// The resource URI (`resources/read`).
    pub resource: Option<&'a str>,
    pub meta: Option<&'a Json>,
}

/// The first host of a request that its allowlist does not allow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// The host (`host:port` when only its port is not allowed), or, when
    /// it cannot be read, the text where it should be (user info cut off).
    pub host: String,
    /// Where: `upstream`, `resource`, `arguments/a/0/b`, `_meta/...`.
    pub at: String,
    /// The host could not be read.
    pub unreadable: bool,
}

impl Refused {
    /// The decision's reason, for `rule`.
    pub fn reason(&self, rule: &str) -> String {
        if self.unreadable {
            format!(
                "rule {rule:?}: host {:?} cannot be read, so it cannot be checked against network_allowlist (at {})",
                self.host, self.at
            )
        } else {
            format!(
                "rule {rule:?}: host {:?} is not in network_allowlist (at {})",
                self.host, self.at
            )
        }
    }
}

/// Checks every host `request` names against `list`, in a fixed order
/// (upstream, resource, arguments, `_meta`; members in the order sent):
/// the first that `list` does not allow is the refusal.
pub fn check(list: &Allowlist, request: &Request<'_>) -> Result<(), Refused> {
    let mut walk = Walk {
        list,
        at: String::new(),
    };
    if let Some(url) = request.upstream {
        walk.at = "upstream".into();
        match url::Url::parse(url) {
            Ok(u) if u.host().is_some() => walk.url(&u, true)?,
            _ => return Err(walk.unreadable(authority(url))),
        }
    }
    if let Some(uri) = request.resource {
        walk.at = "resource".into();
        walk.string(uri, Kind::UriRef)?;
    }
    if let Some(args) = request.arguments {
        walk.at = "arguments".into();
        let schema = request.schema.map(|root| Schema::at(root, root));
        walk.value(args, schema.as_ref(), Kind::None)?;
    }
    if let Some(meta) = request.meta {
        walk.at = "_meta".into();
        walk.value(meta, None, Kind::None)?;
    }
    Ok(())
}

/// What a field holds, by its schema or name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    None,
    /// A URI reference: a relative one names no host; a scheme-relative
    /// one (`//host/x`) does.
    UriRef,
    /// An email address: its domain.
    Email,
    /// A URL, or a host and path without a scheme.
    Url,
    /// A host, `host:port` or a URL.
    Host,
}

fn format_kind(format: &str) -> Kind {
    match format {
        "uri" | "iri" | "url" => Kind::Url,
        "uri-reference" | "iri-reference" | "uri-template" => Kind::UriRef,
        "hostname" | "idn-hostname" | "ipv4" | "ipv6" => Kind::Host,
        "email" | "idn-email" => Kind::Email,
        _ => Kind::None,
    }
}

/// The kind a property's name suggests: by its last word (`baseUrl`,
/// `webhook_url`, `target-host`).
fn name_kind(name: &str) -> Kind {
    let last = name.rsplit(['_', '-', '.', ' ']).next().unwrap_or(name);
    // camelCase: the last capitalised run.
    let start = last
        .char_indices()
        .rev()
        .find(|(i, c)| *i > 0 && c.is_uppercase() && !last[..*i].ends_with(|p: char| p.is_uppercase()))
        .map_or(0, |(i, _)| i);
    let word = last[start..].to_ascii_lowercase();
    if last.to_ascii_lowercase().ends_with("hostname") {
        return Kind::Host;
    }
    match word.as_str() {
        "url" | "urls" | "uri" | "uris" | "href" | "endpoint" | "endpoints" => Kind::Url,
        "host" | "hosts" | "hostname" | "hostnames" | "domain" | "domains" => Kind::Host,
        _ => Kind::None,
    }
}

/// How much of a schema is followed through `$ref` and combinators.
const SCHEMA_BUDGET: usize = 64;

/// The schemas that apply at one place in the arguments.
struct Schema<'a> {
    root: &'a Json,
    nodes: Vec<&'a Json>,
}

impl<'a> Schema<'a> {
    fn at(root: &'a Json, node: &'a Json) -> Schema<'a> {
        let mut s = Schema {
            root,
            nodes: Vec::new(),
        };
        let mut budget = SCHEMA_BUDGET;
        s.expand(node, &mut budget);
        s
    }

    fn expand(&mut self, node: &'a Json, budget: &mut usize) {
        if *budget == 0 || !node.is_object() {
            return;
        }
        *budget -= 1;
        self.nodes.push(node);
        if let Some(target) = node
            .get("$ref")
            .and_then(Json::as_str)
            .and_then(|r| r.strip_prefix('#'))
            .and_then(|p| self.root.pointer(p))
        {
            self.expand(target, budget);
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            for branch in node.get(key).and_then(Json::as_array).into_iter().flatten() {
                self.expand(branch, budget);
            }
        }
    }

    fn kind(&self) -> Kind {
        self.nodes
            .iter()
            .filter_map(|n| n.get("format").and_then(Json::as_str))
            .map(format_kind)
            .max()
            .unwrap_or(Kind::None)
    }

    fn children(&self, pick: impl Fn(&'a Json) -> Option<&'a Json>) -> Option<Schema<'a>> {
        let mut s = Schema {
            root: self.root,
            nodes: Vec::new(),
        };
        let mut budget = SCHEMA_BUDGET;
        for n in &self.nodes {
            if let Some(child) = pick(n) {
                s.expand(child, &mut budget);
            }
        }
        (!s.nodes.is_empty()).then_some(s)
    }

    fn property(&self, name: &str) -> Option<Schema<'a>> {
        self.children(|n| {
            n.get("properties")
                .and_then(|p| p.get(name))
                .or_else(|| n.get("additionalProperties").filter(|a| a.is_object()))
        })
    }

    fn item(&self, i: usize) -> Option<Schema<'a>> {
        self.children(|n| {
            n.get("prefixItems")
                .and_then(Json::as_array)
                .and_then(|p| p.get(i))
                .or_else(|| match n.get("items") {
                    Some(Json::Array(tuple)) => tuple.get(i),
                    Some(items @ Json::Object(_)) => Some(items),
                    _ => None,
                })
        })
    }
}

struct Walk<'l> {
    list: &'l Allowlist,
    /// Where the walk is: `arguments/a/0`.
    at: String,
}

impl Walk<'_> {
    fn value(&mut self, v: &Json, schema: Option<&Schema<'_>>, named: Kind) -> Result<(), Refused> {
        let kind = schema.map_or(Kind::None, Schema::kind).max(named);
        match v {
            Json::String(s) => self.string(s, kind),
            Json::Number(n) if kind == Kind::Host => self.string(n, kind),
            Json::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let child = schema.and_then(|s| s.item(i));
                    let len = self.at.len();
                    self.at.push_str(&format!("/{i}"));
                    // Items of a host-named list (`hosts: [..]`) are hosts.
                    self.value(item, child.as_ref(), named)?;
                    self.at.truncate(len);
                }
                Ok(())
            }
            Json::Object(members) => {
                for (name, item) in members {
                    let len = self.at.len();
                    self.at.push('/');
                    self.at.push_str(&name.replace('~', "~0").replace('/', "~1"));
                    self.string(name, Kind::None)?;
                    let child = schema.and_then(|s| s.property(name));
                    self.value(item, child.as_ref(), name_kind(name))?;
                    self.at.truncate(len);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn string(&mut self, s: &str, kind: Kind) -> Result<(), Refused> {
        // As the URL parser reads text: without leading and trailing
        // controls and spaces, and without tabs and newlines anywhere.
        let t = s.trim_matches(|c: char| c <= ' ');
        let cleaned;
        let t = if t.contains(['\t', '\n', '\r']) {
            cleaned = t.replace(['\t', '\n', '\r'], "");
            cleaned.as_str()
        } else {
            t
        };
        let no_host = match url_in(t) {
            Found::Url(u) => return self.url(&u, true),
            Found::Unreadable(text) => return Err(self.unreadable(text)),
            // `urn:x` in a URL field names no host; `localhost:8080` does.
            Found::NoHost { scheme_like_host } => !scheme_like_host,
            Found::None => false,
        };
        // URLs inside text.
        if t.contains(":/") || t.contains(":\\") {
            for candidate in embedded(t) {
                match url_in(candidate) {
                    Found::Url(u) => self.url(&u, true)?,
                    Found::Unreadable(text) => return Err(self.unreadable(text)),
                    Found::NoHost { .. } | Found::None => {}
                }
            }
        }
        if t.is_empty() || no_host {
            return Ok(());
        }
        let scheme_relative = t.starts_with(['/', '\\']) && t[1..].starts_with(['/', '\\']);
        match kind {
            Kind::None => Ok(()),
            Kind::UriRef if scheme_relative => self.parsed(&format!("http:{t}")),
            Kind::UriRef => Ok(()),
            Kind::Url if scheme_relative => self.parsed(&format!("http:{t}")),
            // A path, query or fragment alone names no host; text with
            // white space is no URL.
            Kind::Url if t.starts_with(['/', '\\', '.', '?', '#']) || t.contains(char::is_whitespace) => Ok(()),
            Kind::Url => self.parsed(&format!("http://{t}")),
            Kind::Host => self.host(t),
            Kind::Email => match t.rsplit_once('@') {
                Some((_, domain)) => self.host(domain),
                None => self.host(t),
            },
        }
    }

    /// A host, `host:port` or `[v6]:port`, as a host field holds it.
    fn host(&mut self, t: &str) -> Result<(), Refused> {
        if let Ok(v6) = t.parse::<std::net::Ipv6Addr>() {
            return self.dest(&Dest::from_host(url::Host::<&str>::Ipv6(v6)), None);
        }
        if t.contains(['/', '\\', '@', '?', '#']) {
            return Err(self.unreadable(authority(t)));
        }
        self.parsed(&format!("http://{t}"))
    }

    /// A text the gateway made into a URL (a host field's value with
    /// `http://` before it) that must parse, with a host. Its port is the
    /// one written, if any: the scheme is the gateway's guess.
    fn parsed(&mut self, text: &str) -> Result<(), Refused> {
        match url::Url::parse(text) {
            Ok(u) if u.host().is_some() => self.url(&u, false),
            _ => Err(self.unreadable(authority(text))),
        }
    }

    /// Checks the host of `u`, at its port (with the scheme's default when
    /// `default_port`).
    fn url(&mut self, u: &url::Url, default_port: bool) -> Result<(), Refused> {
        let Some(host) = u.host() else { return Ok(()) };
        // A special scheme's host is already read the WHATWG way; another
        // scheme's is opaque (as sent, percent-encoded): read it so too.
        let dest = match host {
            url::Host::Domain(opaque) if !u.is_special() => match url::Host::parse(opaque) {
                Ok(h) => Dest::from_host(h),
                Err(_) => return Err(self.unreadable(opaque.to_string())),
            },
            h => Dest::from_host(h),
        };
        if let Dest::Domain(d) = &dest
            && d.is_empty()
        {
            return Ok(());
        }
        let port = if default_port {
            u.port_or_known_default()
        } else {
            u.port()
        };
        self.dest(&dest, port)
    }

    fn dest(&mut self, dest: &Dest, port: Option<u16>) -> Result<(), Refused> {
        if self.list.allows(dest, port) {
            return Ok(());
        }
        let host = match (self.list.names(dest), port) {
            (true, Some(p)) => format!("{dest}:{p}"),
            _ => dest.to_string(),
        };
        Err(Refused {
            host,
            at: self.at.clone(),
            unreadable: false,
        })
    }

    fn unreadable(&self, text: String) -> Refused {
        Refused {
            host: text,
            at: self.at.clone(),
            unreadable: true,
        }
    }
}

enum Found {
    /// Not a URL.
    None,
    /// An absolute URL without a host (`urn:x`, `file:///x`, `mailto:a@b`),
    /// or text that parses as one (`localhost:8080`: scheme `localhost`).
    NoHost {
        scheme_like_host: bool,
    },
    Url(url::Url),
    /// Starts like a URL, but its host cannot be read: the text where it
    /// should be.
    Unreadable(String),
}

const SPECIAL: [&str; 6] = ["http", "https", "ws", "wss", "ftp", "file"];

/// The URL `t` is, if it is one.
fn url_in(t: &str) -> Found {
    let Some((scheme, rest)) = t.split_once(':') else {
        return Found::None;
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return Found::None;
    }
    let special = SPECIAL.iter().any(|s| s.eq_ignore_ascii_case(scheme));
    let slashes = rest.starts_with("//") || (special && rest.starts_with(['/', '\\']));
    // `http:evil.com` is `http://evil.com/`; `http: 404` is no URL at all.
    let looks = slashes || (special && !scheme.eq_ignore_ascii_case("file") && !rest.starts_with(char::is_whitespace));
    match url::Url::parse(t) {
        Ok(u) if u.host().is_some() => Found::Url(u),
        Ok(_) => Found::NoHost {
            scheme_like_host: scheme.contains('.') || rest.starts_with(|c: char| c.is_ascii_digit()),
        },
        Err(_) if looks => Found::Unreadable(authority(t)),
        Err(_) => Found::None,
    }
}

/// The URLs inside a text: from each `scheme://` (or `scheme:\\`) to the
/// next white space or quote, without trailing punctuation.
fn embedded(t: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let bytes = t.as_bytes();
    let mut from = 0;
    while let Some(pos) = t[from..].find(':').map(|p| p + from) {
        from = pos + 1;
        let after = &bytes[pos + 1..];
        if !(after.len() >= 2 && matches!(after[0], b'/' | b'\\') && matches!(after[1], b'/' | b'\\')) {
            continue;
        }
        let mut start = pos;
        while start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || matches!(bytes[start - 1], b'+' | b'-' | b'.'))
        {
            start -= 1;
        }
        while start < pos && !bytes[start].is_ascii_alphabetic() {
            start += 1;
        }
        if start == pos {
            continue;
        }
        let end = t[pos..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`'))
            .map_or(t.len(), |e| e + pos);
        let candidate = t[start..end].trim_end_matches(['.', ',', ';', ':', '!', '?', ')', ']', '}']);
        out.push(candidate);
        from = end.max(from);
    }
    out
}

/// The authority of a URL-like text without its user info: what a refusal
/// names when the host cannot be read (never a password).
fn authority(t: &str) -> String {
    let rest = t.split_once(':').map_or(t, |(_, r)| r);
    let rest = rest.trim_start_matches(['/', '\\']);
    let end = rest.find(['/', '\\', '?', '#']).unwrap_or(rest.len());
    let auth = &rest[..end];
    let auth = auth.rsplit_once('@').map_or(auth, |(_, h)| h);
    auth.chars().filter(|c| !c.is_control()).take(256).collect()
}

#[cfg(test)]
mod tests;
