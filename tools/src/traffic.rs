//! Made-up gateway traffic shaped like what the gateway writes, for
//! benchmarks that need a big ledger spanning months: principals in teams,
//! servers with environment labels and read/write tools, sessions, calls
//! with their decisions (mostly allowed, some denied at each gate, some
//! held for approval and resolved minutes to hours later), outcomes,
//! output-safety findings, refused authentications and tool drift.
//! Every event has the body its kind has in `docs/EVENTS.md` (the golden
//! events' shapes), so the query views join it as they join real runs.
//!
//! Deterministic: the same seed gives the same drafts. Time advances in
//! ticks; the caller appends each tick as one group, dated by the tick
//! ([`ledger::Ledger::open_with_clock`]), and passes the sequence number
//! the tick's first event will get, so that `answers` names the request.

use ledger::{Draft, Value};
use serde_json::{Value as Json, json};

/// Environments and how many servers each has.
const ENVS: &[(&str, usize)] = &[("prod", 16), ("staging", 12), ("dev", 20)];
const SERVICES: &[&str] = &[
    "github",
    "jira",
    "postgres",
    "s3",
    "slack",
    "confluence",
    "salesforce",
    "stripe",
    "pagerduty",
    "datadog",
    "gdrive",
    "notion",
    "linear",
    "sentry",
    "snowflake",
    "vault",
    "k8s",
    "terraform",
    "zendesk",
    "hubspot",
];
/// Tools every server has, with their action label.
const TOOLS: &[(&str, &str)] = &[
    ("list_items", "read"),
    ("get_item", "read"),
    ("search", "read"),
    ("create_item", "write"),
    ("update_item", "write"),
    ("delete_item", "destructive"),
];
const TEAMS: &[&str] = &["dev", "data", "ops", "support", "finance"];
const AGENTS: &[&str] = &["claude-code/2.1", "cursor/1.4", "copilot-agent/1.2", "internal-bot/0.9"];
const WORDS: &[&str] = &[
    "invoice",
    "customer",
    "deploy",
    "rollback",
    "incident",
    "quarterly",
    "refund",
    "migration",
    "backup",
    "latency",
    "ticket",
    "release",
    "schema",
    "report",
    "budget",
    "onboarding",
    "alert",
    "cluster",
];

/// The token one call's arguments hold, and no other event.
pub const RARE_TOKEN: &str = "zanzibar-quokka";

/// What to make.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Events to make (the last tick may go a few over).
    pub events: u64,
    /// Time of the first tick, ns since the epoch.
    pub start_ns: u64,
    /// Time the events span, ns.
    pub span_ns: u64,
    /// Length of one tick, ns.
    pub tick_ns: u64,
    pub principals: usize,
    pub seed: u64,
}

impl Spec {
    /// `events` over a year from `start_ns`, in ten-minute ticks, by 300
    /// principals.
    pub fn year(events: u64, start_ns: u64) -> Spec {
        Spec {
            events,
            start_ns,
            span_ns: 365 * 86_400 * 1_000_000_000,
            tick_ns: 600 * 1_000_000_000,
            principals: 300,
            seed: 0x5ea1_6a7e,
        }
    }
}

struct Server {
    name: String,
    env: &'static str,
}

struct Principal {
    name: String,
    team: &'static str,
    agent: &'static str,
    session: Option<String>,
    session_server: usize,
    next_request: i64,
    calls_left: u32,
}

/// A call held for approval, resolved at `due` (a tick number).
struct Held {
    due: u64,
    approved: bool,
    call: Call,
    approval_id: String,
    requested_seq: u64,
}

#[derive(Clone)]
struct Call {
    principal: usize,
    server: usize,
    tool: usize,
    call_id: String,
    request_id: i64,
    request_seq: u64,
    trace_id: Option<String>,
}

pub struct Traffic {
    spec: Spec,
    rng: u64,
    servers: Vec<Server>,
    principals: Vec<Principal>,
    held: Vec<Held>,
    tick: u64,
    made: u64,
    rare_at: u64,
    /// Drafts of the tick being made, and the seq the next one gets.
    out: Vec<Draft>,
    next_seq: u64,
}

impl Traffic {
    pub fn new(spec: Spec) -> Traffic {
        let mut servers = Vec::new();
        let mut k = 0;
        for (env, n) in ENVS {
            for _ in 0..*n {
                servers.push(Server {
                    name: format!("{}-{env}-{}", SERVICES[k % SERVICES.len()], k / SERVICES.len()),
                    env,
                });
                k += 1;
            }
        }
        let principals = (0..spec.principals)
            .map(|i| Principal {
                name: format!("user-{i:03}"),
                team: TEAMS[i % TEAMS.len()],
                agent: AGENTS[i % AGENTS.len()],
                session: None,
                session_server: 0,
                next_request: 0,
                calls_left: 0,
            })
            .collect();
        let rare_at = spec.events / 2;
        Traffic {
            rng: spec.seed | 1,
            spec,
            servers,
            principals,
            held: Vec::new(),
            tick: 0,
            made: 0,
            rare_at,
            out: Vec::new(),
            next_seq: 0,
        }
    }

    /// Every server's name with its environment label.
    pub fn servers(&self) -> Vec<(String, String)> {
        self.servers
            .iter()
            .map(|s| (s.name.clone(), s.env.to_string()))
            .collect()
    }

    /// The next tick: its time (ns) and its drafts, the first of which
    /// will be appended at `next_seq`; `None` once enough were made.
    pub fn next_tick(&mut self, next_seq: u64) -> Option<(u64, Vec<Draft>)> {
        if self.made >= self.spec.events {
            return None;
        }
        let ticks = (self.spec.span_ns / self.spec.tick_ns).max(1);
        let per_tick = self.spec.events.div_ceil(ticks).max(1);
        let ts = self.spec.start_ns + self.tick * self.spec.tick_ns;
        self.next_seq = next_seq;
        self.out.clear();
        let tick = self.tick;
        let due: Vec<Held> = {
            let (due, keep) = std::mem::take(&mut self.held).into_iter().partition(|h| h.due <= tick);
            self.held = keep;
            due
        };
        for h in due {
            self.resolve(h);
        }
        // Now and then: a burst of refused authentications, a drifted tool.
        if self.below(0.02) {
            self.access_refused();
        }
        if self.below(0.0005) {
            self.drift();
        }
        let target = (self.out.len() as u64 + per_tick).min(self.spec.events - self.made);
        while (self.out.len() as u64) < target {
            let p = self.pick(self.principals.len());
            self.call(p);
        }
        self.tick += 1;
        self.made += self.out.len() as u64;
        Some((ts, std::mem::take(&mut self.out)))
    }

    fn next(&mut self) -> u64 {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn pick(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn below(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    fn hex(&mut self, bytes: usize) -> String {
        let mut s = String::with_capacity(bytes * 2);
        while s.len() < bytes * 2 {
            s.push_str(&format!("{:016x}", self.next()));
        }
        s.truncate(bytes * 2);
        s
    }

    fn push(&mut self, kind: &str, actor: Json, subject: Json, correlation: Json, body: Json) -> u64 {
        let draft = json!({"kind": kind, "actor": actor, "subject": subject, "correlation": correlation, "body": body});
        // The shapes are this module's own: a failure is a bug here.
        let value = Value::from_json_str(&draft.to_string()).expect("traffic draft is JSON the ledger accepts");
        self.out
            .push(Draft::from_value(value).expect("traffic draft has a draft's shape"));
        self.next_seq + self.out.len() as u64 - 1
    }

    fn actor(&self, p: usize) -> Json {
        let pr = &self.principals[p];
        json!({"principal": pr.name, "teams": [pr.team], "agent": pr.agent, "session": pr.session})
    }

    fn subject(&self, c: &Call) -> Json {
        let s = &self.servers[c.server];
        json!({"server": s.name, "env": [s.env], "tool": TOOLS[c.tool].0})
    }

    fn correlation(c: &Call, answers: Option<u64>) -> Json {
        let mut j = json!({"request_id": c.request_id, "call_id": c.call_id});
        if let Some(a) = answers {
            j["answers"] = json!(a);
        }
        if let Some(t) = &c.trace_id {
            j["trace_id"] = json!(t);
        }
        j
    }

    fn call_fields(&self, c: &Call) -> serde_json::Map<String, Json> {
        let pr = &self.principals[c.principal];
        let mut m = serde_json::Map::new();
        m.insert("auth.method".into(), json!("token"));
        m.insert("gen_ai.operation.name".into(), json!("execute_tool"));
        m.insert("gen_ai.tool.name".into(), json!(TOOLS[c.tool].0));
        m.insert("mcp.method.name".into(), json!("tools/call"));
        m.insert("mcp.protocol.version".into(), json!("2025-06-18"));
        m.insert("mcp.session.id".into(), json!(pr.session));
        m
    }

    fn excerpt(&mut self, fields: &[(&str, String)]) -> Json {
        let text = serde_json::Map::from_iter(fields.iter().map(|(k, v)| ((*k).to_string(), json!(v))));
        let text = Json::Object(text).to_string();
        json!({
            "bytes": text.len(), "digest": format!("blake3:{}", self.hex(32)), "json": text,
            "original_bytes": text.len(), "truncated": false,
        })
    }

    /// A session for `p` on a server of its choice, opened when it has none
    /// or has used it up.
    fn session(&mut self, p: usize) {
        if self.principals[p].session.is_some() && self.principals[p].calls_left > 0 {
            return;
        }
        let server = self.pick(self.servers.len());
        let session = self.hex(16);
        let n = 5 + self.pick(60) as u32;
        {
            let pr = &mut self.principals[p];
            pr.session = Some(session.clone());
            pr.session_server = server;
            pr.next_request = 0;
            pr.calls_left = n;
        }
        let call_id = self.hex(16);
        let actor = self.actor(p);
        let s = &self.servers[server];
        let subject = json!({"server": s.name, "env": [s.env]});
        let server_name = s.name.clone();
        let corr = json!({"request_id": 0, "call_id": call_id});
        let init = json!({"protocolVersion": "2025-06-18", "clientInfo": {"name": self.principals[p].agent}, "capabilities": {}})
            .to_string();
        let args = json!({"bytes": init.len(), "digest": format!("blake3:{}", self.hex(32)), "json": init,
                          "original_bytes": init.len(), "truncated": false});
        let req = self.push(
            "mcp.requested",
            actor.clone(),
            subject.clone(),
            corr.clone(),
            json!({"arguments": args, "auth.method": "token", "mcp.method.name": "initialize", "mcp.session.id": session}),
        );
        let mut c = corr.clone();
        c["answers"] = json!(req);
        let grant = format!("g-{:012x}", p);
        let decision_ns = 20_000 + self.pick(200_000);
        self.push(
            "policy.decision",
            actor.clone(),
            subject.clone(),
            c.clone(),
            json!({"auth.method": "token", "decision": "ALLOW", "decision_ns": decision_ns,
                   "gate": "grant", "grant_id": grant, "mcp.method.name": "initialize",
                   "mcp.session.id": session, "reason": "Granted", "reason_code": "granted"}),
        );
        self.push(
            "session.opened",
            actor,
            subject,
            c,
            json!({"auth.method": "token", "client": {"name": self.principals[p].agent}, "client.capabilities": {},
                   "downstream.transport": "http", "mcp.method.name": "initialize",
                   "mcp.protocol.version.requested": "2025-06-18", "mcp.session.id": session, "outcome": "ok",
                   "server": {"name": server_name}, "upstream.address": "https://mcp.internal/", "upstream.transport": "http"}),
        );
    }

    fn call(&mut self, p: usize) {
        self.session(p);
        let tool = {
            // Reads are most calls.
            let r = self.pick(100);
            match r {
                0..=29 => 0,
                30..=59 => 1,
                60..=79 => 2,
                80..=91 => 3,
                92..=97 => 4,
                _ => 5,
            }
        };
        let call_id = self.hex(16);
        let trace_id = self.below(0.3).then(|| self.hex(16));
        let pr = &mut self.principals[p];
        pr.calls_left = pr.calls_left.saturating_sub(1);
        pr.next_request += 1;
        let mut call = Call {
            principal: p,
            server: pr.session_server,
            tool,
            call_id,
            request_id: pr.next_request,
            request_seq: 0,
            trace_id,
        };
        let actor = self.actor(p);
        let subject = self.subject(&call);
        let w1 = WORDS[self.pick(WORDS.len())];
        let w2 = WORDS[self.pick(WORDS.len())];
        let mut query = format!("{w1} {w2} #{}", self.pick(100_000));
        if self.made + self.out.len() as u64 >= self.rare_at && self.rare_at != u64::MAX {
            query = format!("{query} {RARE_TOKEN}");
            self.rare_at = u64::MAX;
        }
        let id = format!("{}", self.pick(1_000_000));
        let args = self.excerpt(&[("query", query), ("id", id)]);
        let mut body = self.call_fields(&call);
        body.insert("arguments".into(), args);
        call.request_seq = self.push(
            "tool_call.requested",
            actor.clone(),
            subject.clone(),
            Self::correlation(&call, None),
            Json::Object(body),
        );
        let action = TOOLS[tool].1;
        let roll = self.pick(1000);
        let (decision, gate, code, reason, rule) = match roll {
            0..=9 => ("DENY", "registry", "unregistered_server", "UnregisteredServer", None),
            10..=19 => ("DENY", "pin", "tool_drifted", "ToolDrifted", None),
            20..=44 => ("DENY", "grant", "no_grant", "NoGrant", None),
            45..=59 => ("DENY", "policy", "rule_deny", "RuleDeny", Some("deny-destructive")),
            60..=69 => (
                "ALLOW_WITH_CONSTRAINTS",
                "policy",
                "rule_allow_with_constraints",
                "RuleAllowWithConstraints",
                Some("bounded"),
            ),
            _ if action != "read" && roll < 400 => (
                "REQUIRE_APPROVAL",
                "policy",
                "rule_require_approval",
                "RuleRequireApproval",
                Some("approve-writes"),
            ),
            _ => ("ALLOW", "policy", "rule_allow", "RuleAllow", Some("allow-reads")),
        };
        let mut body = self.call_fields(&call);
        body.insert("decision".into(), json!(decision));
        body.insert("decision_ns".into(), json!(20_000 + self.pick(3_000_000)));
        body.insert("gate".into(), json!(gate));
        body.insert("reason_code".into(), json!(code));
        body.insert("reason".into(), json!(reason));
        body.insert("action".into(), json!(action));
        if gate == "policy" {
            body.insert("policy_hash".into(), json!("blake3:7f3a"));
            body.insert("grant_id".into(), json!(format!("g-{:012x}", p)));
            if let Some(r) = rule {
                body.insert("rule".into(), json!(r));
            }
        }
        self.push(
            "policy.decision",
            actor.clone(),
            subject.clone(),
            Self::correlation(&call, Some(call.request_seq)),
            Json::Object(body),
        );
        match decision {
            "DENY" => self.refuse(&call, gate, code, reason),
            "REQUIRE_APPROVAL" => {
                let approval_id = format!("a-{}", self.hex(6));
                let pr = &self.principals[p];
                let requester = json!({"principal": pr.name, "teams": [pr.team], "session": pr.session});
                let digest = format!("blake3:{}", self.hex(32));
                let requested_seq = self.push(
                    "approval.requested",
                    requester,
                    subject,
                    Self::correlation(&call, Some(call.request_seq)),
                    json!({"approval_id": approval_id, "approver_principals": [], "approver_teams": ["security"],
                           "args_digest": digest, "expires_at": "2099-01-01T00:00:00.000000000Z",
                           "mcp.method.name": "tools/call", "policy_hash": "blake3:7f3a", "rule": "approve-writes"}),
                );
                // Most are answered within the hour, some wait most of a day.
                let wait = if self.below(0.8) {
                    1 + self.pick(6)
                } else {
                    6 + self.pick(120)
                } as u64;
                let approved = self.below(0.85);
                self.held.push(Held {
                    due: self.tick + wait,
                    approved,
                    call,
                    approval_id,
                    requested_seq,
                });
            }
            _ => self.execute(&call),
        }
    }

    fn refuse(&mut self, call: &Call, by: &str, code: &str, reason: &str) {
        let actor = self.actor(call.principal);
        let subject = self.subject(call);
        let mut body = self.call_fields(call);
        body.insert("outcome".into(), json!("refused"));
        body.insert("refused_by".into(), json!(by));
        body.insert("reason_code".into(), json!(code));
        body.insert("reason".into(), json!(reason));
        body.insert(
            "error".into(),
            json!({"code": -32001, "message": format!("refused: {reason}")}),
        );
        self.push(
            "call.refused",
            actor,
            subject,
            Self::correlation(call, Some(call.request_seq)),
            Json::Object(body),
        );
    }

    fn execute(&mut self, call: &Call) {
        let actor = self.actor(call.principal);
        let subject = self.subject(call);
        let corr = Self::correlation(call, Some(call.request_seq));
        if self.below(0.004) {
            let mut body = self.call_fields(call);
            body.insert(
                "findings".into(),
                json!([{"action": "redact", "category": "pii", "count": 1, "detector": "email",
                         "locations": [{"offset": 9, "pointer": "/content/0/text"}]}]),
            );
            self.push(
                "output.redacted",
                actor.clone(),
                subject.clone(),
                corr.clone(),
                Json::Object(body),
            );
        }
        let mut body = self.call_fields(call);
        body.insert("duration_ns".into(), json!(1_000_000 + self.pick(400_000_000)));
        if self.below(0.03) {
            body.insert("outcome".into(), json!("timeout"));
            body.insert("error.type".into(), json!("timeout"));
            body.insert(
                "error".into(),
                json!({"message": "no answer within 30000 ms; request cancelled"}),
            );
            self.push("execution.failed", actor, subject, corr, Json::Object(body));
        } else {
            let w = WORDS[self.pick(WORDS.len())];
            let text = format!("{w} {} done", self.pick(10_000));
            let result = self.excerpt(&[("text", text)]);
            body.insert("outcome".into(), json!("ok"));
            body.insert("is_error".into(), json!(false));
            body.insert("result".into(), result);
            self.push("execution.completed", actor, subject, corr, Json::Object(body));
        }
    }

    fn resolve(&mut self, h: Held) {
        let approver = format!("sec-{:02}", self.pick(10));
        let pr = &self.principals[h.call.principal];
        let body = json!({"approval.requested_seq": h.requested_seq, "approval_id": h.approval_id,
                          "mcp.method.name": "tools/call", "mcp.session.id": pr.session,
                          "reason": if h.approved { "change ok" } else { "not now" }, "requester": pr.name});
        let subject = self.subject(&h.call);
        let corr = Self::correlation(&h.call, Some(h.call.request_seq));
        self.push(
            if h.approved {
                "approval.granted"
            } else {
                "approval.denied"
            },
            json!({"principal": approver, "teams": ["security"]}),
            subject,
            corr,
            body,
        );
        if h.approved {
            self.execute(&h.call);
        } else {
            self.refuse(&h.call, "approval", "approval_denied", "ApprovalDenied");
        }
    }

    fn access_refused(&mut self) {
        let server = self.pick(self.servers.len());
        let n = 1 + self.pick(20);
        let reason = if self.below(0.3) {
            "unknown_server"
        } else {
            "invalid_token"
        };
        let name = if reason == "unknown_server" {
            format!("shadow-{}", self.pick(5))
        } else {
            self.servers[server].name.clone()
        };
        let ip = format!("203.0.113.{}", self.pick(250));
        let token = format!("sha256:{}", self.hex(8));
        self.push(
            "access.refused",
            json!({"principal": "sealgate:gateway"}),
            json!({"server": name}),
            json!({}),
            json!({"count": n, "first": "2026-01-01T00:00:00.000000000Z", "interval_sec": 60,
                   "last": "2026-01-01T00:00:00.000000000Z", "reason": reason, "source.address": ip, "token": token}),
        );
    }

    fn drift(&mut self) {
        let server = self.pick(self.servers.len());
        let p = self.pick(self.principals.len());
        let Some(session) = self.principals[p].session.clone() else {
            return;
        };
        let hash = format!("blake3:{}", self.hex(32));
        let body = json!({"added": {}, "changed": {"search": hash}, "removed": [],
                          "revealed_by": {"principal": self.principals[p].name, "session": session}});
        self.push(
            "tools.drifted",
            json!({"principal": "sealgate:gateway", "session": session}),
            json!({"server": self.servers[server].name}),
            json!({}),
            body,
        );
    }
}
