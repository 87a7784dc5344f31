//! The event as an OCSF 1.8.0 record (`docs/EXPORT.md` maps it kind by
//! kind): API Activity (6003) for calls and what belongs to them,
//! Authorize Session (3003) for sessions and approval decisions, Entity
//! Management (3004) for registry, pin, grant, policy and approval-request
//! changes, Authentication (3002) for refused access, Base Event (0) for
//! the ledger's own and operators' kinds. Decisions fill the
//! `security_control` profile (action, disposition, policy). OCSF has no
//! record-integrity attributes: the hash chain (fingerprint = event hash,
//! previous = prev hash, chain = ledger id) is under `unmapped.integrity`,
//! and the whole envelope under `unmapped.event`, so nothing the ledger
//! holds is lost.

use ledger::{Event, RequestId, SealedEvent};
use serde_json::{Map, Value, json};

pub const OCSF_VERSION: &str = "1.8.0";

fn body_str<'a>(event: &'a Event, key: &str) -> Option<&'a str> {
    event.body.get(key).and_then(ledger::Value::as_str)
}

fn body_json(event: &Event) -> Value {
    Value::Object(event.body.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
}

fn ms(ns: u64) -> u64 {
    ns / 1_000_000
}

fn request_id(event: &Event) -> Option<String> {
    event.correlation.request_id.as_ref().map(|id| match id {
        RequestId::Int(n) => n.to_string(),
        RequestId::Str(s) => s.clone(),
    })
}

/// OCSF severity_id: 1 Informational, 3 Medium, 4 High, 5 Critical.
fn severity_id(event: &Event) -> (u8, &'static str) {
    use opentelemetry_proto::tonic::logs::v1::SeverityNumber as S;
    match crate::record::severity(event) {
        S::Fatal => (5, "Critical"),
        S::Error => (4, "High"),
        S::Warn => (3, "Medium"),
        _ => (1, "Informational"),
    }
}

fn user(principal: &str, teams: &[String]) -> Value {
    let mut u = json!({ "uid": principal, "name": principal });
    if !teams.is_empty() {
        u["groups"] = Value::Array(teams.iter().map(|t| json!({ "name": t })).collect());
    }
    u
}

fn actor(event: &Event) -> Value {
    let mut a = Map::new();
    match &event.actor.principal {
        Some(p) => {
            a.insert("user".into(), user(p, &event.actor.teams));
        }
        None => {
            a.insert("app_name".into(), json!("sealgate"));
        }
    }
    if let Some(s) = &event.actor.session {
        a.insert("session".into(), json!({ "uid": s }));
    }
    if let Some(agent) = &event.actor.agent {
        a.insert("app_name".into(), json!(agent));
    }
    Value::Object(a)
}

/// (action_id, action, disposition_id, disposition) of the
/// `security_control` profile, for events that allow or deny something.
fn control(event: &Event) -> Option<(u8, &'static str, u8, &'static str)> {
    let kind = event.kind.as_str();
    Some(match kind {
        "policy.decision" => match body_str(event, "decision")? {
            "ALLOW" | "ALLOW_WITH_CONSTRAINTS" => (1, "Allowed", 1, "Allowed"),
            "DENY" => (2, "Denied", 2, "Blocked"),
            "REQUIRE_APPROVAL" => (99, "Require Approval", 14, "Delayed"),
            _ => return None,
        },
        "call.refused" | "mcp.refused" => (2, "Denied", 2, "Blocked"),
        "access.refused" => (2, "Denied", 26, "Unauthorized"),
        "output.redacted" => (4, "Modified", 11, "Corrected"),
        "output.quarantined" => (2, "Denied", 3, "Quarantined"),
        "approval.requested" => (99, "Require Approval", 14, "Delayed"),
        "approval.granted" => (1, "Allowed", 8, "Approved"),
        "approval.denied" | "approval.expired" => (2, "Denied", 2, "Blocked"),
        "server.quarantined" => (2, "Denied", 3, "Quarantined"),
        "server.revoked" => (2, "Denied", 24, "Access Revoked"),
        _ => return None,
    })
}

/// (status_id, status): 1 Success, 2 Failure; None when the event is not
/// an outcome.
fn status(event: &Event) -> Option<(u8, &'static str)> {
    let ok = (1, "Success");
    let failed = (2, "Failure");
    Some(match event.kind.as_str() {
        "execution.completed" => match body_str(event, "outcome") {
            Some("ok") => ok,
            _ => failed,
        },
        "session.opened" => match body_str(event, "outcome") {
            Some("ok") => ok,
            _ => failed,
        },
        "execution.failed" | "call.refused" | "mcp.refused" | "access.refused" | "approval.denied"
        | "approval.expired" => failed,
        "approval.granted" => ok,
        "policy.decision" => match body_str(event, "decision")? {
            "DENY" => failed,
            "REQUIRE_APPROVAL" => return None,
            _ => ok,
        },
        _ => return None,
    })
}

struct Class {
    uid: u32,
    name: &'static str,
    category_uid: u32,
    category_name: &'static str,
}

const API_ACTIVITY: Class = Class {
    uid: 6003,
    name: "API Activity",
    category_uid: 6,
    category_name: "Application Activity",
};
const AUTHENTICATION: Class = Class {
    uid: 3002,
    name: "Authentication",
    category_uid: 3,
    category_name: "Identity & Access Management",
};
const AUTHORIZE_SESSION: Class = Class {
    uid: 3003,
    name: "Authorize Session",
    category_uid: 3,
    category_name: "Identity & Access Management",
};
const ENTITY_MANAGEMENT: Class = Class {
    uid: 3004,
    name: "Entity Management",
    category_uid: 3,
    category_name: "Identity & Access Management",
};
const BASE_EVENT: Class = Class {
    uid: 0,
    name: "Base Event",
    category_uid: 0,
    category_name: "Uncategorized",
};

/// The class and activity of a kind.
fn classify(event: &Event) -> (Class, u32, String) {
    let kind = event.kind.as_str();
    let method = body_str(event, "mcp.method.name");
    let api_activity = || -> (u32, String) {
        match (kind, method) {
            ("listing.observed", _) | (_, Some("resources/read" | "prompts/get")) => (2, "Read".into()),
            _ => match body_str(event, "action") {
                Some("read") => (2, "Read".into()),
                Some("write") => (3, "Update".into()),
                Some("destructive") => (4, "Delete".into()),
                _ => (99, method.unwrap_or(kind).to_owned()),
            },
        }
    };
    match kind {
        "tool_call.requested"
        | "mcp.requested"
        | "policy.decision"
        | "execution.completed"
        | "execution.failed"
        | "output.redacted"
        | "output.quarantined"
        | "call.refused"
        | "listing.observed"
        | "mcp.refused" => {
            let (id, name) = api_activity();
            (API_ACTIVITY, id, name)
        }
        "access.refused" => (AUTHENTICATION, 1, "Logon".into()),
        "session.opened" => (AUTHORIZE_SESSION, 99, "Open Session".into()),
        "approval.granted" => (AUTHORIZE_SESSION, 99, "Approve".into()),
        "approval.denied" => (AUTHORIZE_SESSION, 99, "Deny".into()),
        "approval.expired" => (AUTHORIZE_SESSION, 99, "Expire".into()),
        "server.registered" | "grant.issued" | "approval.requested" => (ENTITY_MANAGEMENT, 1, "Create".into()),
        "tools.pinned" | "policy.loaded" => (ENTITY_MANAGEMENT, 3, "Update".into()),
        "grant.revoked" => (ENTITY_MANAGEMENT, 4, "Delete".into()),
        "server.approved" => (ENTITY_MANAGEMENT, 10, "Activate".into()),
        "server.revoked" => (ENTITY_MANAGEMENT, 11, "Deactivate".into()),
        "server.quarantined" => (ENTITY_MANAGEMENT, 12, "Suspend".into()),
        "tools.drifted" => (ENTITY_MANAGEMENT, 99, "Drift Detected".into()),
        _ => (BASE_EVENT, 99, kind.to_owned()),
    }
}

/// The managed entity of an Entity Management event.
fn entity(event: &Event) -> Value {
    let kind = event.kind.as_str();
    let server = event.subject.server.as_deref().unwrap_or("");
    let body = body_json(event);
    let pick = |keys: &[&str]| -> Value {
        Value::Object(
            keys.iter()
                .filter_map(|k| body.get(*k).map(|v| ((*k).to_owned(), v.clone())))
                .collect(),
        )
    };
    match kind {
        "server.registered" | "server.approved" | "server.quarantined" | "server.revoked" => json!({
            "type": "MCP Server", "name": server, "uid": server,
            "data": pick(&["transport", "address", "owner", "risk", "actions", "source", "reason"]),
        }),
        "tools.pinned" | "tools.drifted" => json!({
            "type": "MCP Server Tools", "name": server, "uid": server,
            "data": pick(&["tools", "replace", "changed", "added", "removed", "revealed_by", "reason"]),
        }),
        "grant.issued" | "grant.revoked" => {
            let mut e = json!({
                "type": "Grant",
                "uid": body_str(event, "grant_id").unwrap_or(""),
                "name": body_str(event, "tool").unwrap_or(server),
                "data": pick(&["principal", "team", "tool", "env", "expires_at", "reason"]),
            });
            if let Some(p) = body_str(event, "principal") {
                e["user"] = json!({ "uid": p, "name": p });
            }
            if let Some(t) = body_str(event, "team") {
                e["group"] = json!({ "name": t });
            }
            e
        }
        "policy.loaded" => {
            let hash = body_str(event, "hash").unwrap_or("");
            json!({
                "type": "Policy", "name": "policy", "uid": hash,
                "policy": { "uid": hash, "name": body_str(event, "origin").unwrap_or("policy"), "is_applied": true },
                "data": pick(&["origin", "rules", "text"]),
            })
        }
        "approval.requested" => json!({
            "type": "Approval", "uid": body_str(event, "approval_id").unwrap_or(""), "name": server,
            "data": pick(&["mcp.method.name", "args_digest", "policy_hash", "rule", "approver_teams", "approver_principals", "expires_at"]),
        }),
        _ => json!({ "name": kind }),
    }
}

/// `sealed` as OCSF JSON.
pub fn ocsf(sealed: &SealedEvent, ledger_id: &str) -> Value {
    let event = &sealed.event;
    let kind = event.kind.as_str();
    let hash = sealed.hash.to_hex();
    let (class, activity_id, activity_name) = classify(event);
    let (sev_id, sev) = severity_id(event);
    let time = ms(event.ts.as_nanos());
    let mut metadata = json!({
        "version": OCSF_VERSION,
        "product": { "name": "Sealgate", "vendor_name": "Sealgate", "version": env!("CARGO_PKG_VERSION") },
        "uid": hash,
        "sequence": event.seq,
        "event_code": kind,
        "log_name": "ledger",
        "log_provider": "sealgate",
        "logged_time": time,
    });
    if let Some(call) = &event.correlation.call_id {
        metadata["correlation_uid"] = json!(call);
    }
    let mut o = json!({
        "class_uid": class.uid,
        "class_name": class.name,
        "category_uid": class.category_uid,
        "category_name": class.category_name,
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": u64::from(class.uid) * 100 + u64::from(activity_id),
        "type_name": format!("{}: {}", class.name, activity_name),
        "time": time,
        "severity_id": sev_id,
        "severity": sev,
        "metadata": metadata,
        "unmapped": {
            "integrity": {
                "fingerprint": { "algorithm": "BLAKE3", "value": hash },
                "previous_fingerprint": event.prev.to_hex(),
                "chain_uid": ledger_id,
                "sequence": event.seq,
                "key_uid": event.key.to_string(),
            },
            "event": crate::record_envelope(event),
        },
    });
    let obj = o.as_object_mut().expect("a json! object literal is an object");
    if let Some((status_id, status)) = status(event) {
        obj.insert("status_id".into(), json!(status_id));
        obj.insert("status".into(), json!(status));
    }
    if let Some(code) =
        body_str(event, "reason_code").or_else(|| body_str(event, "reason").filter(|_| kind == "access.refused"))
    {
        obj.insert("status_detail".into(), json!(code));
    }
    if let Some(reason) = body_str(event, "reason") {
        obj.insert("message".into(), json!(reason));
    }
    let mut profiles = Vec::new();
    if let Some((action_id, action, disposition_id, disposition)) = control(event) {
        profiles.push("security_control");
        obj.insert("action_id".into(), json!(action_id));
        obj.insert("action".into(), json!(action));
        obj.insert("disposition_id".into(), json!(disposition_id));
        obj.insert("disposition".into(), json!(disposition));
        let rule = body_str(event, "rule");
        let policy_hash = body_str(event, "policy_hash");
        if rule.is_some() || policy_hash.is_some() {
            let mut policy = Map::new();
            if let Some(r) = rule {
                policy.insert("name".into(), json!(r));
            }
            if let Some(h) = policy_hash {
                policy.insert("uid".into(), json!(h));
            }
            if let Some(g) = body_str(event, "gate") {
                policy.insert("group".into(), json!({ "name": g }));
            }
            obj.insert("policy".into(), Value::Object(policy));
        }
    }
    if kind == "tools.drifted" || kind == "alert.raised" {
        profiles.push("security_control");
        obj.insert("is_alert".into(), json!(true));
    }
    if !profiles.is_empty() {
        obj["metadata"]["profiles"] = json!(profiles);
    }
    match class.uid {
        6003 => {
            obj.insert("actor".into(), actor(event));
            let mut api = json!({ "operation": body_str(event, "mcp.method.name").unwrap_or(kind) });
            if let Some(server) = &event.subject.server {
                api["service"] = json!({ "name": server });
            }
            if let Some(id) = request_id(event) {
                api["request"] = json!({ "uid": id });
            }
            if let Some(err) = event.body.get("error") {
                let err = err.to_json();
                let mut response = Map::new();
                if let Some(code) = err.get("code").and_then(Value::as_i64) {
                    response.insert("code".into(), json!(code));
                }
                if let Some(t) = body_str(event, "error.type") {
                    response.insert("error".into(), json!(t));
                }
                if let Some(m) = err.get("message").and_then(Value::as_str).or(err.as_str()) {
                    response.insert("error_message".into(), json!(m));
                }
                api["response"] = Value::Object(response);
            }
            obj.insert("api".into(), api);
            let src = match event.actor.session.as_deref().or(body_str(event, "mcp.session.id")) {
                Some(s) => json!({ "uid": s }),
                None => json!({ "name": event.actor.agent.as_deref().unwrap_or("unknown") }),
            };
            obj.insert("src_endpoint".into(), src);
            if let Some(server) = &event.subject.server {
                obj.insert("dst_endpoint".into(), json!({ "svc_name": server }));
            }
            let mut resources = Vec::new();
            let s = &event.subject;
            for (name, ty) in [(&s.tool, "tool"), (&s.prompt, "prompt"), (&s.resource, "resource")] {
                if let Some(n) = name {
                    resources.push(json!({ "name": n, "type": ty }));
                }
            }
            if !resources.is_empty() {
                obj.insert("resources".into(), Value::Array(resources));
            }
            if let Some(d) = event.body.get("duration_ns").and_then(|v| v.to_json().as_u64()) {
                obj.insert("duration".into(), json!(d / 1_000_000));
            }
        }
        3002 => {
            let principal = body_str(event, "principal");
            let mut u = match principal {
                Some(p) => json!({ "uid": p, "name": p }),
                None => json!({ "name": "unknown" }),
            };
            if let Some(t) = body_str(event, "token") {
                u["credential_uid"] = json!(t);
            }
            obj.insert("user".into(), u);
            let addr = body_str(event, "source.address").unwrap_or("unknown");
            let src = if addr.parse::<std::net::IpAddr>().is_ok() {
                json!({ "ip": addr })
            } else {
                json!({ "name": addr })
            };
            obj.insert("src_endpoint".into(), src);
            if let Some(server) = &event.subject.server {
                obj.insert("dst_endpoint".into(), json!({ "svc_name": server }));
                obj.insert("service".into(), json!({ "name": server }));
            }
            if let Some(n) = event.body.get("count").and_then(|v| v.to_json().as_u64()) {
                obj.insert("count".into(), json!(n));
            }
            for (key, field) in [("first", "start_time"), ("last", "end_time")] {
                if let Some(t) = body_str(event, key).and_then(|t| ledger::Timestamp::parse_rfc3339(t).ok()) {
                    obj.insert(field.into(), json!(ms(t.as_nanos())));
                }
            }
        }
        3003 => {
            // The user whose session or call is authorised; the actor is
            // who decided (an approver, or the gateway).
            let (who, teams) = match kind {
                "session.opened" => (event.actor.principal.as_deref(), event.actor.teams.as_slice()),
                _ => (body_str(event, "requester"), &[][..]),
            };
            obj.insert("user".into(), user(who.unwrap_or("unknown"), teams));
            if kind != "session.opened" {
                obj.insert("actor".into(), actor(event));
            }
            if let Some(s) = body_str(event, "mcp.session.id").or(event.actor.session.as_deref()) {
                obj.insert("session".into(), json!({ "uid": s }));
            }
            if let Some(server) = &event.subject.server {
                obj.insert("dst_endpoint".into(), json!({ "svc_name": server }));
            }
            // OCSF wants exactly one of privileges and group: what was
            // authorised, as `METHOD SERVER[/TARGET]`.
            let server = event.subject.server.as_deref().unwrap_or("");
            let target = event
                .subject
                .tool
                .as_deref()
                .or(event.subject.prompt.as_deref())
                .or(event.subject.resource.as_deref());
            let method = body_str(event, "mcp.method.name").unwrap_or("initialize");
            let privilege = match target {
                Some(t) => format!("{method} {server}/{t}"),
                None => format!("{method} {server}"),
            };
            obj.insert("privileges".into(), json!([privilege]));
        }
        3004 => {
            obj.insert("entity".into(), entity(event));
            obj.insert("actor".into(), actor(event));
        }
        _ => {}
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The golden `alert.raised` event (`tests/data/events/`), with its
    /// body's severity set to `severity`.
    fn alert(severity: &str) -> Event {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/data/events/written-2026-12-07c.jsonl"
        );
        let text = std::fs::read_to_string(path).expect("golden file");
        let line = text
            .lines()
            .find(|l| l.contains("\"kind\":\"alert.raised\""))
            .expect("an alert.raised event");
        let value = ledger::Value::from_json_str(line).expect("JSON");
        let mut event = Event::decode(&value.to_canonical()).expect("event");
        event
            .body
            .insert("severity".into(), ledger::Value::String(severity.into()));
        event
    }

    /// An alert is exported high at least: OTLP ERROR and OCSF High, and
    /// FATAL / Critical when it is critical (docs/EXPORT.md, Severity).
    #[test]
    fn alerts_are_exported_with_high_or_critical_severity() {
        use opentelemetry_proto::tonic::logs::v1::SeverityNumber as S;
        for (severity, otlp, ocsf) in [
            ("medium", S::Error, (4, "High")),
            ("high", S::Error, (4, "High")),
            ("critical", S::Fatal, (5, "Critical")),
        ] {
            let e = alert(severity);
            assert_eq!(crate::record::severity(&e), otlp, "{severity}");
            assert_eq!(severity_id(&e), ocsf, "{severity}");
        }
    }
}
