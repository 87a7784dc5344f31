//! Table tests of [`check`]: attack values, one row each. A row is the
//! arguments (JSON), the tool's input schema (or `-`), and what the check
//! answers: `ok`, `refused HOST at WHERE` or `unreadable TEXT at WHERE`.

use super::*;
use crate::governance::policy::Entry;

const ALLOWLIST: [&str; 6] = [
    "allowed.example",
    "*.ok.example",
    "10.0.0.0/8",
    "[2001:db8::1]",
    "api.pinned.example:443",
    "127.0.0.1:3001",
];

fn list() -> Allowlist {
    Allowlist::new(ALLOWLIST.iter().map(|e| Entry::parse(e).expect("entry")).collect())
}

fn json(text: &str) -> Json {
    crate::json::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn answer(r: Result<(), Refused>) -> String {
    match r {
        Ok(()) => "ok".into(),
        Err(r) if r.unreadable => format!("unreadable {} at {}", r.host, r.at),
        Err(r) => format!("refused {} at {}", r.host, r.at),
    }
}

fn args(arguments: &str, schema: &str) -> String {
    let arguments = json(arguments);
    let schema = (schema != "-").then(|| json(schema));
    answer(check(
        &list(),
        &Request {
            arguments: Some(&arguments),
            schema: schema.as_ref(),
            ..Request::default()
        },
    ))
}

#[test]
fn hosts_in_arguments_by_value() {
    let rows = [
        (r#"{"url": "https://allowed.example/x"}"#, "ok"),
        (
            r#"{"url": "https://evil.example/x"}"#,
            "refused evil.example at arguments/url",
        ),
        // User info is not the host.
        (
            r#"{"m": "http://allowed.example@evil.example/"}"#,
            "refused evil.example at arguments/m",
        ),
        (
            r#"{"m": "http://allowed.example:pw@evil.example/"}"#,
            "refused evil.example at arguments/m",
        ),
        // Backslashes are slashes in special schemes.
        (
            r#"{"m": "http://evil.example\\@allowed.example/"}"#,
            "refused evil.example at arguments/m",
        ),
        (
            r#"{"m": "http:\\\\evil.example\\x"}"#,
            "refused evil.example at arguments/m",
        ),
        // IPv4 in odd forms.
        (r#"{"m": "http://127.1/"}"#, "refused 127.0.0.1:80 at arguments/m"),
        (r#"{"m": "http://0x7f.1/"}"#, "refused 127.0.0.1:80 at arguments/m"),
        (r#"{"m": "http://2130706433/"}"#, "refused 127.0.0.1:80 at arguments/m"),
        (r#"{"m": "http://0177.0.0.1/"}"#, "refused 127.0.0.1:80 at arguments/m"),
        (r#"{"m": "http://10.1/"}"#, "ok"),
        (r#"{"m": "http://127.0.0.1:3001/mcp"}"#, "ok"),
        (
            r#"{"m": "http://127.0.0.1:3002/mcp"}"#,
            "refused 127.0.0.1:3002 at arguments/m",
        ),
        // IPv6 forms; IPv4-mapped is its IPv4 address.
        (r#"{"m": "http://[2001:db8:0:0:0:0:0:1]/"}"#, "ok"),
        (
            r#"{"m": "http://[2001:db8::2]/"}"#,
            "refused [2001:db8::2] at arguments/m",
        ),
        (r#"{"m": "http://[::ffff:10.0.0.1]/"}"#, "ok"),
        (
            r#"{"m": "http://[::ffff:7f00:1]/"}"#,
            "refused 127.0.0.1:80 at arguments/m",
        ),
        // Case, trailing dot, IDNA, percent-encoding.
        (r#"{"m": "HTTP://ALLOWED.EXAMPLE./"}"#, "ok"),
        (
            r#"{"m": "http://EVIL.example./"}"#,
            "refused evil.example at arguments/m",
        ),
        (
            r#"{"m": "http://allowed.example../"}"#,
            "refused allowed.example. at arguments/m",
        ),
        (
            r#"{"m": "https://bücher.example/"}"#,
            "refused xn--bcher-kva.example at arguments/m",
        ),
        (r#"{"m": "https://ALLOWED.ＥＸＡＭＰＬＥ/"}"#, "ok"),
        (r#"{"m": "http://al%6Cowed.example/"}"#, "ok"),
        (
            r#"{"m": "http://evil%2Eexample/"}"#,
            "refused evil.example at arguments/m",
        ),
        // Special schemes need no slashes; any scheme with a host counts,
        // its opaque host read as a host.
        (r#"{"m": "HTTP:evil.example"}"#, "refused evil.example at arguments/m"),
        (
            r#"{"m": "foo://EVIL.example/x"}"#,
            "refused evil.example at arguments/m",
        ),
        (r#"{"m": "foo://0x7f.1/x"}"#, "refused 127.0.0.1 at arguments/m"),
        (
            r#"{"m": "file://evil.example/share"}"#,
            "refused evil.example at arguments/m",
        ),
        // Tabs and newlines are removed by the parser, and leading spaces.
        (
            r#"{"m": " \thttp://evil.example"}"#,
            "refused evil.example at arguments/m",
        ),
        (
            r#"{"m": "ht\ntp://evil.example"}"#,
            "refused evil.example at arguments/m",
        ),
        // Default ports count for entries with a port.
        (r#"{"m": "https://api.pinned.example/"}"#, "ok"),
        (
            r#"{"m": "https://api.pinned.example:8443/"}"#,
            "refused api.pinned.example:8443 at arguments/m",
        ),
        (r#"{"m": "wss://api.pinned.example/"}"#, "ok"),
        (
            r#"{"m": "http://api.pinned.example/"}"#,
            "refused api.pinned.example:80 at arguments/m",
        ),
        // Wildcards: under the name, not the name.
        (r#"{"m": "https://a.b.ok.example/"}"#, "ok"),
        (r#"{"m": "https://ok.example/"}"#, "refused ok.example at arguments/m"),
        (
            r#"{"m": "https://notok.example/"}"#,
            "refused notok.example at arguments/m",
        ),
        // A URL whose host cannot be read is refused; user info is never
        // shown.
        (r#"{"m": "http://[bad/"}"#, "unreadable [bad at arguments/m"),
        (
            r#"{"m": "http://user:secret@exa mple.com/"}"#,
            "unreadable exa mple.com at arguments/m",
        ),
        (
            r#"{"m": "https://evil.example:99999/"}"#,
            "unreadable evil.example:99999 at arguments/m",
        ),
        (r#"{"m": "foo://a%00b/"}"#, "unreadable a%00b at arguments/m"),
        // URLs inside text.
        (
            r#"{"m": "please fetch https://evil.example/page, thanks"}"#,
            "refused evil.example at arguments/m",
        ),
        (
            r#"{"m": "see https://allowed.example/a. Or (https://x.ok.example)."}"#,
            "ok",
        ),
        (
            r#"{"m": "note: see https://evil.example"}"#,
            "refused evil.example at arguments/m",
        ),
        // Nested, in lists, and in member names.
        (
            r#"{"a": [[{"deep": ["ok", "https://evil.example"]}]]}"#,
            "refused evil.example at arguments/a/0/0/deep/1",
        ),
        (
            r#"{"h": {"https://evil.example/a": 1}}"#,
            "refused evil.example at arguments/h/https:~1~1evil.example~1a",
        ),
        // What names no host.
        (r#"{"m": "file:///etc/passwd"}"#, "ok"),
        (r#"{"m": "urn:isbn:0451450523"}"#, "ok"),
        (r#"{"m": "mailto:a@evil.example"}"#, "ok"),
        (r#"{"m": "note: hello"}"#, "ok"),
        (r#"{"m": "http: 404"}"#, "ok"),
        (r#"{"m": "evil.example"}"#, "ok"),
        (r#"{"m": "C:\\Users\\a"}"#, "ok"),
        (r#"{"n": 2130706433, "b": true, "z": null}"#, "ok"),
    ];
    let failed: Vec<String> = rows
        .iter()
        .filter_map(|(a, want)| {
            let got = args(a, "-");
            (got != *want).then(|| format!("{a}\n  got  {got}\n  want {want}"))
        })
        .collect();
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn hosts_in_arguments_by_schema_and_name() {
    let hostname = r#"{"type": "object", "properties": {"target": {"type": "string", "format": "hostname"}}}"#;
    let pydantic = r##"{"type": "object", "$defs": {"U": {"type": "string", "format": "uri"}},
        "properties": {"u": {"anyOf": [{"$ref": "#/$defs/U"}, {"type": "null"}]}}}"##;
    let email = r#"{"properties": {"to": {"type": "string", "format": "email"}}}"#;
    let items = r#"{"properties": {"hs": {"type": "array", "items": {"type": "string", "format": "hostname"}}}}"#;
    let reference = r#"{"properties": {"r": {"type": "string", "format": "uri-reference"}}}"#;
    let rows = [
        (r#"{"target": "allowed.example"}"#, hostname, "ok"),
        (
            r#"{"target": "evil.example"}"#,
            hostname,
            "refused evil.example at arguments/target",
        ),
        (
            r#"{"target": "evil.example:8080"}"#,
            hostname,
            "refused evil.example at arguments/target",
        ),
        (r#"{"target": "allowed.example:22"}"#, hostname, "ok"),
        (
            r#"{"target": "0x7f.1"}"#,
            hostname,
            "refused 127.0.0.1 at arguments/target",
        ),
        (r#"{"target": "2001:db8::1"}"#, hostname, "ok"),
        (
            r#"{"target": "[2001:db8::2]:80"}"#,
            hostname,
            "refused [2001:db8::2] at arguments/target",
        ),
        (
            r#"{"target": "evil.example/x"}"#,
            hostname,
            "unreadable evil.example at arguments/target",
        ),
        (
            r#"{"target": "two words"}"#,
            hostname,
            "unreadable two words at arguments/target",
        ),
        (
            r#"{"u": "evil.example/page"}"#,
            pydantic,
            "refused evil.example at arguments/u",
        ),
        (r#"{"u": "allowed.example"}"#, pydantic, "ok"),
        (r#"{"u": "urn:x:y"}"#, pydantic, "ok"),
        (
            r#"{"u": "localhost:8080"}"#,
            pydantic,
            "refused localhost at arguments/u",
        ),
        (
            r#"{"to": "a@evil.example"}"#,
            email,
            "refused evil.example at arguments/to",
        ),
        (r#"{"to": "a@allowed.example"}"#, email, "ok"),
        (
            r#"{"hs": ["allowed.example", "evil.example"]}"#,
            items,
            "refused evil.example at arguments/hs/1",
        ),
        (r#"{"r": "/docs/a"}"#, reference, "ok"),
        (r#"{"r": "docs/a"}"#, reference, "ok"),
        (
            r#"{"r": "//evil.example/a"}"#,
            reference,
            "refused evil.example at arguments/r",
        ),
        (
            r#"{"r": "\\\\evil.example\\a"}"#,
            reference,
            "refused evil.example at arguments/r",
        ),
        // By name, without a schema.
        (
            r#"{"baseUrl": "evil.example/api"}"#,
            "-",
            "refused evil.example at arguments/baseUrl",
        ),
        (
            r#"{"webhook_url": "//evil.example/x"}"#,
            "-",
            "refused evil.example at arguments/webhook_url",
        ),
        (r#"{"url": "/relative/path"}"#, "-", "ok"),
        (r#"{"host": "10.1.2.3"}"#, "-", "ok"),
        (r#"{"host": 2130706433}"#, "-", "refused 127.0.0.1 at arguments/host"),
        (
            r#"{"targetHostname": "EVIL.example."}"#,
            "-",
            "refused evil.example at arguments/targetHostname",
        ),
        (
            r#"{"hosts": ["allowed.example", "evil.example"]}"#,
            "-",
            "refused evil.example at arguments/hosts/1",
        ),
        (r#"{"hostile": "evil.example"}"#, "-", "ok"),
    ];
    let failed: Vec<String> = rows
        .iter()
        .filter_map(|(a, schema, want)| {
            let got = args(a, schema);
            (got != *want).then(|| format!("{a} / {schema}\n  got  {got}\n  want {want}"))
        })
        .collect();
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn the_upstream_resource_and_meta_are_checked_in_order() {
    let meta = json(r#"{"progressToken": "https://evil.example/p"}"#);
    let arguments = json(r#"{"u": "https://other.example/"}"#);
    let at = |upstream: Option<&str>, resource: Option<&str>| {
        answer(check(
            &list(),
            &Request {
                upstream,
                arguments: Some(&arguments),
                resource,
                meta: Some(&meta),
                schema: None,
            },
        ))
    };
    assert_eq!(
        at(Some("http://evil.example/mcp"), None),
        "refused evil.example at upstream"
    );
    assert_eq!(
        at(Some("http://127.0.0.1:3002/mcp"), None),
        "refused 127.0.0.1:3002 at upstream"
    );
    assert_eq!(
        at(Some("http://127.0.0.1:3001/mcp"), Some("test://static/resource/1")),
        "refused static at resource"
    );
    assert_eq!(
        at(Some("http://127.0.0.1:3001/mcp"), Some("file:///tmp/a")),
        "refused other.example at arguments/u"
    );
    let no_args = check(
        &list(),
        &Request {
            meta: Some(&meta),
            ..Request::default()
        },
    );
    assert_eq!(answer(no_args), "refused evil.example at _meta/progressToken");
}

#[test]
fn reasons_are_deterministic_and_name_rule_host_and_place() {
    let refused = Refused {
        host: "evil.example".into(),
        at: "arguments/url".into(),
        unreadable: false,
    };
    assert_eq!(
        refused.reason("fetch"),
        r#"rule "fetch": host "evil.example" is not in network_allowlist (at arguments/url)"#
    );
    let unreadable = Refused {
        unreadable: true,
        ..refused
    };
    assert_eq!(
        unreadable.reason("fetch"),
        r#"rule "fetch": host "evil.example" cannot be read, so it cannot be checked against network_allowlist (at arguments/url)"#
    );
}

#[test]
fn an_empty_allowlist_allows_no_host_and_anything_without_one() {
    let none = Allowlist::new(Vec::new());
    let a = json(r#"{"m": "plain text", "path": "/tmp/x"}"#);
    let request = Request {
        arguments: Some(&a),
        ..Request::default()
    };
    assert_eq!(answer(check(&none, &request)), "ok");
    let b = json(r#"{"m": "https://allowed.example"}"#);
    let request = Request {
        arguments: Some(&b),
        ..Request::default()
    };
    assert_eq!(answer(check(&none, &request)), "refused allowed.example at arguments/m");
}
