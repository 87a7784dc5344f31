//! The per-family views over `events`, in SQL, registered with every query
//! (and with the log-only rerun of `--verify`, so both see the same
//! definitions). Each view's row carries `seq` and `hash` of the event it
//! is about (for `calls`, the request; for `approvals`, the request for
//! approval); the other events a row joins are named by their own
//! `*_seq` columns. `docs/QUERY.md` documents every column.

/// `(name, definition)`, in registration order.
pub const VIEWS: &[(&str, &str)] = &[
    ("decisions", DECISIONS),
    ("approvals", APPROVALS),
    ("calls", CALLS),
    ("sessions", SESSIONS),
];

/// Whether a query with text `sql` needs view `name`: it names it, or
/// names a view built on it (`calls` uses `approvals`). A name counts
/// wherever it stands as a word (in a string or a comment too: planning
/// a view that is not used costs time, not answers).
pub fn wanted(sql: &str, name: &str) -> bool {
    let users: &[&str] = match name {
        "approvals" => &["approvals", "calls"],
        other => &[other][..],
    };
    let text = sql.to_ascii_lowercase();
    users.iter().any(|u| mentions(&text, u))
}

fn mentions(text: &str, word: &str) -> bool {
    let ident = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    text.match_indices(word)
        .any(|(i, _)| !ident(text[..i].chars().next_back()) && !ident(text[i + word.len()..].chars().next()))
}

/// One row per `policy.decision`.
const DECISIONS: &str = "
SELECT seq, hash, ts, call_id, answers AS request_seq, request_id, trace_id,
       principal, teams, agent, session, server, env, tool, prompt, resource, method,
       decision, gate, reason_code, reason, rule, policy_hash, grant_id, action, decision_ns
FROM events WHERE kind = 'policy.decision'";

/// One row per `approval.requested`, with how it ended (`pending` while
/// nothing has), who ended it and how long the call waited.
const APPROVALS: &str = "
SELECT r.seq, r.hash, r.ts AS requested_at, r.approval_id, r.call_id, r.answers AS request_seq,
       r.principal AS requester, r.teams AS requester_teams, r.session, r.server, r.env,
       r.tool, r.prompt, r.resource, r.method, r.rule, r.policy_hash, r.args_digest,
       CASE a.kind WHEN 'approval.granted' THEN 'granted' WHEN 'approval.denied' THEN 'denied'
                   WHEN 'approval.expired' THEN 'expired' ELSE 'pending' END AS status,
       a.seq AS resolved_seq, a.ts AS resolved_at, a.principal AS approver,
       a.teams AS approver_teams, a.reason,
       CAST(a.ts AS BIGINT) - CAST(r.ts AS BIGINT) AS wait_ns
FROM events r
LEFT JOIN events a ON a.approval_id = r.approval_id
     AND a.kind IN ('approval.granted', 'approval.denied', 'approval.expired')
WHERE r.kind = 'approval.requested'";

/// One row per call (a `tool_call.requested` or `mcp.requested` and every
/// event with its `call_id`): the request, its decision, its approval, how
/// it ended (`end_kind`: `execution.*`, `call.refused`, or `session.opened`
/// for an `initialize`; NULL: cut off, the gateway stopped mid-call) and
/// whether output safety acted on it.
const CALLS: &str = "
SELECT q.seq, q.hash, q.ts, q.call_id, q.kind AS request_kind, q.method, q.request_id, q.trace_id,
       q.principal, q.teams, q.agent, q.session, q.server, q.env, q.tool, q.prompt, q.resource,
       q.args_digest, q.args_bytes,
       d.seq AS decision_seq, d.decision, d.gate, d.reason_code, d.reason, d.rule, d.policy_hash,
       d.grant_id, d.action, d.decision_ns,
       p.approval_id, p.status AS approval, p.approver, p.wait_ns AS approval_wait_ns,
       e.seq AS end_seq, e.kind AS end_kind, e.ts AS ended_at, e.outcome, e.duration_ns,
       e.is_error, e.error_type, e.result_digest, e.result_bytes,
       e.refused_by, e.reason_code AS refused_reason_code, e.reason AS refused_reason,
       COALESCE(s.redacted, false) AS output_redacted,
       COALESCE(s.quarantined, false) AS output_quarantined
FROM events q
LEFT JOIN events d ON d.call_id = q.call_id AND d.kind = 'policy.decision'
LEFT JOIN approvals p ON p.call_id = q.call_id
LEFT JOIN events e ON e.call_id = q.call_id
     AND e.kind IN ('execution.completed', 'execution.failed', 'call.refused', 'session.opened')
LEFT JOIN (SELECT call_id, bool_or(kind = 'output.redacted') AS redacted,
                  bool_or(kind = 'output.quarantined') AS quarantined
           FROM events WHERE kind IN ('output.redacted', 'output.quarantined')
           GROUP BY call_id) s ON s.call_id = q.call_id
WHERE q.kind IN ('tool_call.requested', 'mcp.requested')";

/// One row per `session.opened`, with the session's calls so far, its
/// last event and its end (`session.closed`: NULL while open, or if the
/// gateway stopped without closing it).
const SESSIONS: &str = "
SELECT o.session, o.seq, o.hash, o.ts AS opened_at, o.principal, o.teams, o.agent,
       o.server, o.env, o.auth_method, o.outcome,
       COALESCE(a.calls, 0) AS calls, COALESCE(a.denied, 0) AS denied, a.last_seen,
       c.ts AS closed_at, c.reason AS close_reason, c.duration_ns
FROM events o
LEFT JOIN events c ON c.kind = 'session.closed' AND c.session = o.session
LEFT JOIN (SELECT session,
                  count(*) FILTER (WHERE kind IN ('tool_call.requested', 'mcp.requested')
                                   AND (method IS DISTINCT FROM 'initialize')) AS calls,
                  count(*) FILTER (WHERE kind = 'policy.decision' AND decision = 'DENY') AS denied,
                  max(ts) AS last_seen
           FROM events WHERE session IS NOT NULL GROUP BY session) a ON a.session = o.session
WHERE o.kind = 'session.opened'";

#[cfg(test)]
mod tests {
    use super::wanted;

    #[test]
    fn a_view_is_wanted_where_its_name_stands_as_a_word() {
        assert!(wanted("SELECT * FROM calls", "calls"));
        assert!(wanted("SELECT * FROM CALLS c", "calls"));
        assert!(wanted("select * from \"calls\"", "calls"));
        assert!(
            wanted("SELECT * FROM calls", "approvals"),
            "calls is built on approvals"
        );
        assert!(!wanted("SELECT * FROM calls", "sessions"));
        assert!(!wanted("SELECT recalls, calls_x FROM events", "calls"));
        assert!(!wanted("SELECT seq FROM events WHERE hash = 'x'", "decisions"));
        assert!(wanted("SELECT 1 FROM events JOIN decisions USING (seq)", "decisions"));
    }
}
