//! Policy evaluation latency: one decision against a realistic 1,000-rule
//! policy with 23 rate limits and quotas, target p99 ≤ 20 µs. Half its
//! ALLOW_WITH_CONSTRAINTS rules have a `network_allowlist`; a decision by
//! one of them includes checking the hosts of a fetch call
//! (`governance::egress`), half of them refused.
//!
//! The policy is generated (deterministically) the way a large organisation's
//! would look: per-server rules for ~60 servers in prod, staging and dev, with
//! exact names and globs (`fs-*`, `*-prod`), tool globs (`*_file`, `drop_*`),
//! team, principal, env, risk and action conditions, all four decisions, and
//! catch-alls late in the list, so that many calls are decided deep in the
//! list and some by no rule at all (unknown servers and callers).
//!
//! It evaluates ~1M random calls (100k with `--quick`), timing each call
//! with `Instant` (the timer's own cost is measured and printed, not
//! subtracted), and prints p50, p99, p99.9 and max per decision (the rules
//! alone, and the rules with the limits counted as the gateway counts
//! them), each p99 against the 20 µs target as a ratio, and PASS or FAIL.
//! For comparison it also times a linear first-match scan over the same
//! rules (the definition), and checks on a sample that both agree. Missing
//! the target is reported, not an error.
//!
//! ```text
//! export CARGO_TARGET_DIR=$HOME/.cache/sealgate/target
//! cargo bench --bench policy              # ~10 s
//! cargo bench --bench policy -- --quick
//! ```
//!
//! The policy code is the library's own (`sealgate::governance::policy`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use sealgate::governance::Verdict;
use sealgate::governance::egress;
use sealgate::governance::limits::Limiter;
use sealgate::governance::policy::{self, Action, Evaluation, Facts, Policy};

const RULES: usize = 1_000;
const TARGET: Duration = Duration::from_micros(20);

/// splitmix64: deterministic, good enough for picking.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const FAMILIES: [&str; 20] = [
    "fs", "git", "db", "web", "slack", "jira", "s3", "k8s", "mail", "search", "crm", "billing", "wiki", "calendar",
    "drive", "ci", "vault", "metrics", "tickets", "maps",
];
const ENVS: [&str; 3] = ["prod", "staging", "dev"];
const TOOLS: [&str; 16] = [
    "read_file",
    "write_file",
    "delete_file",
    "list_dir",
    "query",
    "drop_table",
    "insert_rows",
    "fetch",
    "send_message",
    "create_issue",
    "close_issue",
    "deploy",
    "rollback",
    "get_secret",
    "search",
    "export_report",
];
const TOOL_GLOBS: [&str; 6] = ["*_file", "drop_*", "get_*", "*_issue", "list_*", "send_*"];
const TEAMS: [&str; 8] = ["dev", "sre", "security", "data", "support", "finance", "platform", "ml"];
const RISKS: [&str; 4] = ["pii", "payments", "internet", "secrets"];
const ACTIONS: [&str; 3] = ["read", "write", "destructive"];
const DECISIONS: [&str; 4] = ["ALLOW", "DENY", "REQUIRE_APPROVAL", "ALLOW_WITH_CONSTRAINTS"];

/// Half the ALLOW_WITH_CONSTRAINTS rules hold their calls to this.
const ALLOWLIST: &str = r#"[api.github.com, "*.githubusercontent.com", "10.0.0.0/8", "[2001:db8::1]:443"]"#;

/// A fetch tool's input schema, and what calls give it: an allowed URL, and
/// one whose host hides behind user info.
const FETCH_SCHEMA: &str = r#"{"type": "object", "properties": {"url": {"type": "string", "format": "uri"},
    "max_length": {"type": "integer"}, "raw": {"type": "boolean"}, "headers": {"type": "object"}}, "required": ["url"]}"#;
const FETCH_ARGS: [&str; 2] = [
    r#"{"url": "https://api.github.com/repos/acme/widgets/contents/README.md", "headers": {"Accept": "application/vnd.github+json"}, "max_length": 5000, "raw": false}"#,
    r#"{"url": "https://api.github.com@evil.example/repos/acme/widgets", "headers": {"Accept": "application/vnd.github+json"}, "max_length": 5000, "raw": false}"#,
];

fn principals() -> Vec<String> {
    (0..200).map(|i| format!("user{i:03}")).collect()
}

fn server_name(family: &str, env: &str, n: usize) -> String {
    format!("{family}-{env}-{n}")
}

fn servers() -> Vec<(String, &'static str)> {
    let mut out = Vec::new();
    for family in FAMILIES {
        for env in ENVS {
            out.push((server_name(family, env, 1), env));
        }
    }
    out
}

fn list(values: &[&str]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

fn some<'a>(rng: &mut Rng, pool: &[&'a str], max: usize) -> Vec<&'a str> {
    let n = 1 + rng.below(max);
    let mut out: Vec<&str> = Vec::new();
    while out.len() < n.min(pool.len()) {
        let v = *rng.pick(pool);
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

fn decision_keys(decision: &str, rng: &mut Rng) -> String {
    match decision {
        "REQUIRE_APPROVAL" => format!(
            "    approval: {{ timeout_sec: {}, approvers: {{ team: {} }} }}\n",
            60 * (1 + rng.below(30)),
            list(&some(rng, &TEAMS, 2))
        ),
        "ALLOW_WITH_CONSTRAINTS" if rng.chance(50) => format!(
            "    constraints: {{ max_runtime_sec: {}, network_allowlist: {} }}\n",
            5 + rng.below(60),
            ALLOWLIST
        ),
        "ALLOW_WITH_CONSTRAINTS" => format!(
            "    constraints: {{ max_runtime_sec: {}, max_result_bytes: {} }}\n",
            5 + rng.below(60),
            1024 * (1 + rng.below(2048))
        ),
        _ => String::new(),
    }
}

/// The 1,000 rules.
fn policy_text(rng: &mut Rng) -> String {
    let servers = servers();
    let principals = principals();
    let principal_refs: Vec<&str> = principals.iter().map(String::as_str).collect();
    let mut text = String::from(
        "version: v1\noutput: { secrets: redact, pii: redact }\nrules:\n  - id: deny-quarantined\n    match: { server: [\"shadow-*\", \"tmp-*\"] }\n    decision: DENY\n    reason: quarantined servers\n",
    );
    let mut n = 1;
    let push = |text: &mut String, n: &mut usize, conditions: Vec<String>, decision: &str, rng: &mut Rng| {
        text.push_str(&format!(
            "  - id: rule-{n:04}\n    match: {{ {} }}\n    decision: {decision}\n{}",
            conditions.join(", "),
            decision_keys(decision, rng)
        ));
        *n += 1;
    };
    // Body: 940 rules, mostly per server, some per family or environment,
    // a few per caller or organisation-wide (those narrowed by team, tool
    // and action).
    while n < 941 {
        let mut c = Vec::new();
        let kind = rng.below(100);
        let wide = kind >= 95;
        if kind < 78 {
            // One or two exact servers.
            let names: Vec<&str> = (0..1 + rng.below(2)).map(|_| rng.pick(&servers).0.as_str()).collect();
            c.push(format!("server: {}", list(&names)));
        } else if kind < 90 {
            // A family or environment glob.
            let glob = if rng.chance(50) {
                format!("{}-*", rng.pick(&FAMILIES))
            } else {
                format!("*-{}-*", rng.pick(&ENVS))
            };
            c.push(format!("server: {}", list(&[glob.as_str()])));
        } else if kind < 95 {
            // A caller's own rule.
            c.push(format!("principal: {}", list(&some(rng, &principal_refs, 3))));
        }
        if wide || rng.chance(80) {
            if rng.chance(40) {
                c.push(format!("tool: {}", list(&[*rng.pick(&TOOL_GLOBS)])));
            } else {
                c.push(format!("tool: {}", list(&some(rng, &TOOLS, 3))));
            }
        }
        if rng.chance(15) {
            c.push("method: [tools/call]".to_string());
        }
        if wide || rng.chance(40) {
            c.push(format!("team: {}", list(&some(rng, &TEAMS, 2))));
        }
        if rng.chance(20) {
            c.push(format!("env: {}", list(&some(rng, &ENVS, 2))));
        }
        if rng.chance(10) {
            c.push(format!("risk: {}", list(&some(rng, &RISKS, 2))));
        }
        if wide || rng.chance(70) {
            c.push(format!("action: {}", list(&[*rng.pick(&ACTIONS)])));
        }
        let decision = DECISIONS[rng.below(4)];
        push(&mut text, &mut n, c, decision, rng);
    }
    // Tail: per-family catch-alls, decided deep in the list.
    while n < RULES {
        let family = FAMILIES[n % FAMILIES.len()];
        let env = ENVS[(n / FAMILIES.len()) % ENVS.len()];
        let c = vec![
            format!("server: {}", list(&[server_name(family, env, 1).as_str()])),
            format!("action: {}", list(&[ACTIONS[n % 3]])),
        ];
        let decision = DECISIONS[n % 4];
        push(&mut text, &mut n, c, decision, rng);
    }
    // Limits: a rate per caller on everything, and per family a rate and a
    // daily quota per team and tool; every call is counted by two or three.
    text.push_str("limits:\n  - id: per-caller\n    by: principal\n    rate: { calls: 600, per: 1m }\n");
    for family in FAMILIES {
        text.push_str(&format!(
            "  - id: {family}-per-team\n    match: {{ server: \"{family}-*\" }}\n    by: [team, tool]\n    rate: {{ calls: 2000, per: 1m }}\n    quota: {{ calls: 200000, per: 1d }}\n"
        ));
    }
    text.push_str(&format!(
        "  - id: writes-per-server\n    match: {{ action: [write, destructive] }}\n    by: [server, principal]\n    rate: {{ calls: 100, per: 1m }}\n  - id: heavy-callers\n    match: {{ principal: {} }}\n    quota: {{ calls: 5000, per: 1h }}\n",
        list(&some(rng, &principal_refs, 3))
    ));
    text
}

/// A call, as indices into pools, so that a million of them are cheap.
struct Call {
    server: usize,
    tool: Option<usize>,
    method: usize,
    principal: usize,
    teams: usize,
    risk: usize,
    action: Option<Action>,
}

struct Pools {
    servers: Vec<(String, Vec<String>)>,
    tools: Vec<String>,
    principals: Vec<String>,
    teams: Vec<Vec<String>>,
    risks: Vec<Vec<String>>,
}

fn pools(rng: &mut Rng) -> Pools {
    let mut servers: Vec<(String, Vec<String>)> = servers()
        .into_iter()
        .map(|(name, env)| (name, vec![env.to_string()]))
        .collect();
    // Servers no rule names (no-match cases, unless a glob or wide rule
    // catches them).
    for i in 0..12 {
        servers.push((format!("unlisted-{i}"), vec!["dev".to_string()]));
    }
    servers.push(("shadow-tools".to_string(), vec![]));
    let mut principals = principals();
    principals.extend((0..50).map(|i| format!("contractor{i}")));
    let teams = (0..64)
        .map(|_| {
            let n = rng.below(3);
            (0..n).map(|_| rng.pick(&TEAMS).to_string()).collect()
        })
        .collect();
    let risks = (0..16)
        .map(|_| {
            if rng.chance(70) {
                vec![]
            } else {
                vec![rng.pick(&RISKS).to_string()]
            }
        })
        .collect();
    let mut tools: Vec<String> = TOOLS.iter().map(|t| t.to_string()).collect();
    tools.push("unknown_tool".to_string());
    Pools {
        servers,
        tools,
        principals,
        teams,
        risks,
    }
}

fn calls(rng: &mut Rng, pools: &Pools, n: usize) -> Vec<Call> {
    (0..n)
        .map(|_| {
            let method = if rng.chance(85) {
                0
            } else {
                1 + rng.below(policy::METHODS.len() - 1)
            };
            Call {
                server: rng.below(pools.servers.len()),
                tool: (method < 3).then(|| rng.below(pools.tools.len())),
                method,
                principal: rng.below(pools.principals.len()),
                teams: rng.below(pools.teams.len()),
                risk: rng.below(pools.risks.len()),
                action: match rng.below(10) {
                    0 => None,
                    1..=5 => Some(Action::Read),
                    6..=8 => Some(Action::Write),
                    _ => Some(Action::Destructive),
                },
            }
        })
        .collect()
}

fn facts<'a>(pools: &'a Pools, c: &Call) -> Facts<'a> {
    let (server, env) = &pools.servers[c.server];
    Facts {
        server,
        method: policy::METHODS[c.method],
        target: c.tool.map(|t| pools.tools[t].as_str()),
        principal: &pools.principals[c.principal],
        teams: &pools.teams[c.teams],
        env,
        risk: &pools.risks[c.risk],
        action: c.action,
    }
}

struct Percentiles {
    p50: Duration,
    p99: Duration,
    p999: Duration,
    max: Duration,
    mean: Duration,
}

fn percentiles(mut nanos: Vec<u64>) -> Percentiles {
    nanos.sort_unstable();
    let at = |q: f64| Duration::from_nanos(nanos[((nanos.len() as f64 - 1.0) * q).round() as usize]);
    let sum: u64 = nanos.iter().sum();
    Percentiles {
        p50: at(0.50),
        p99: at(0.99),
        p999: at(0.999),
        max: at(1.0),
        mean: Duration::from_nanos(sum / nanos.len() as u64),
    }
}

fn time_each(calls: &[Call], pools: &Pools, eval: impl Fn(&Facts<'_>, usize) -> Evaluation) -> Vec<u64> {
    let mut nanos = Vec::with_capacity(calls.len());
    for (i, c) in calls.iter().enumerate() {
        let f = facts(pools, c);
        let start = Instant::now();
        let e = eval(&f, i);
        let elapsed = start.elapsed();
        black_box(e);
        nanos.push(elapsed.as_nanos() as u64);
    }
    nanos
}

fn us(d: Duration) -> String {
    format!("{:.2} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 100_000 } else { 1_000_000 };
    let mut rng = Rng(0x5EA1_6A7E);

    let text = policy_text(&mut rng);
    let started = Instant::now();
    let policy = match Policy::parse(&text, "<bench>") {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: the generated policy is invalid: {e}");
            std::process::exit(2);
        }
    };
    let parse_time = started.elapsed();
    assert_eq!(policy.rules().len(), RULES);
    let pools = pools(&mut rng);
    let calls = calls(&mut rng, &pools, n);

    // The index must agree with the definition.
    for c in calls.iter().take(20_000) {
        let f = facts(&pools, c);
        let (indexed, linear) = (policy.evaluate(&f), policy.evaluate_linear(&f));
        if indexed != linear {
            eprintln!("error: index and linear scan disagree on {f:?}: {indexed:?} vs {linear:?}");
            std::process::exit(2);
        }
    }

    // What the calls come to.
    let mut verdicts = [0usize; 5];
    let mut depth = Vec::with_capacity(n);
    for c in &calls {
        let e = policy.evaluate(&facts(&pools, c));
        let slot = match (e.rule.is_some(), e.verdict) {
            (false, _) => 4,
            (true, Verdict::Allow) => 0,
            (true, Verdict::Deny) => 1,
            (true, Verdict::RequireApproval) => 2,
            (true, Verdict::AllowWithConstraints) => 3,
        };
        verdicts[slot] += 1;
        if let Some(id) = e.rule {
            depth.push(policy.rules().iter().position(|r| r.id() == id).unwrap_or(0));
        }
    }
    depth.sort_unstable();

    // The timer's own cost.
    let timer = percentiles(
        (0..100_000)
            .map(|_| {
                let start = Instant::now();
                start.elapsed().as_nanos() as u64
            })
            .collect(),
    );

    // A decision is the evaluation and, when the rule has a
    // network_allowlist, the check of the call's hosts (a fetch call,
    // every other one refused).
    let schema = match sealgate::json::parse(FETCH_SCHEMA.as_bytes()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: the fetch schema: {e}");
            std::process::exit(2);
        }
    };
    let args: Vec<sealgate::json::Json> = FETCH_ARGS
        .iter()
        .filter_map(|a| sealgate::json::parse(a.as_bytes()).ok())
        .collect();
    let checked = std::cell::Cell::new((0usize, 0usize));
    let decide = |f: &Facts<'_>, i: usize| {
        let e = policy.evaluate(f);
        if let Some(list) = e.constraints.as_ref().and_then(|c| c.network_allowlist.as_ref()) {
            let request = egress::Request {
                arguments: args.get(i % args.len()),
                schema: Some(&schema),
                ..egress::Request::default()
            };
            let refused = egress::check(list, &request).is_err();
            let (n, r) = checked.get();
            checked.set((n + 1, r + usize::from(refused)));
        }
        e
    };

    // Warm up, then measure.
    black_box(time_each(&calls[..calls.len().min(20_000)], &pools, decide));
    checked.set((0, 0));
    let indexed = percentiles(time_each(&calls, &pools, decide));
    let (hosts_checked, hosts_refused) = checked.get();
    // The decision as the gateway makes it: the rules and the allowlist,
    // then (for a call they admit) the limits, counted under one lock.
    let limiter = Limiter::default();
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let refused = std::cell::Cell::new(0usize);
    let limited = percentiles(time_each(&calls, &pools, |f, i| {
        let e = decide(f, i);
        if e.verdict != Verdict::Deny && limiter.admit(policy.limits(), f, Instant::now(), unix).is_err() {
            refused.set(refused.get() + 1);
        }
        e
    }));
    let linear_n = calls.len().min(100_000);
    let linear = percentiles(time_each(&calls[..linear_n], &pools, |f, _| policy.evaluate_linear(f)));

    let pct = |k: usize| 100.0 * verdicts[k] as f64 / n as f64;
    println!(
        "policy: {RULES} rules, {} bytes, parsed and indexed in {:.1} ms",
        text.len(),
        parse_time.as_secs_f64() * 1e3
    );
    println!(
        "calls: {n}: ALLOW {:.1} %, DENY by rule {:.1} %, REQUIRE_APPROVAL {:.1} %, ALLOW_WITH_CONSTRAINTS {:.1} %, no rule matched {:.1} %",
        pct(0),
        pct(1),
        pct(2),
        pct(3),
        pct(4)
    );
    println!(
        "network_allowlist: {hosts_checked} calls' hosts checked ({hosts_refused} refused), included in the timings"
    );
    if !depth.is_empty() {
        println!(
            "matching rule position: median {}, p90 {}, deepest {}",
            depth[depth.len() / 2],
            depth[depth.len() * 9 / 10],
            depth[depth.len() - 1]
        );
    }
    println!(
        "timer overhead (Instant::now + elapsed): p50 {}, p99 {} (included below)",
        us(timer.p50),
        us(timer.p99)
    );
    println!(
        "limits: {} ({} calls refused by one)",
        policy.limits().len(),
        refused.get()
    );
    for (name, p, count) in [
        ("indexed", &indexed, n),
        ("with limits", &limited, n),
        ("linear scan", &linear, linear_n),
    ] {
        println!(
            "{name:>12} ({count} calls): mean {}, p50 {}, p99 {}, p99.9 {}, max {}",
            us(p.mean),
            us(p.p50),
            us(p.p99),
            us(p.p999),
            us(p.max)
        );
    }
    for (name, p) in [("rules", &indexed), ("rules and limits", &limited)] {
        println!(
            "p99 per decision ({name}) {} against the {} target: {:.3} of target: {}",
            us(p.p99),
            us(TARGET),
            p.p99.as_secs_f64() / TARGET.as_secs_f64(),
            if p.p99 <= TARGET { "PASS" } else { "FAIL" }
        );
    }
}
