//! Reports an auditor runs without writing SQL (`sealgate report NAME`):
//! each is one SQL query over the tables and views, printed by
//! `sealgate report NAME --sql` and listed in `docs/QUERY.md`, so that
//! every figure can be rerun, changed and checked (`--verify`) by hand.

/// A time window, as RFC 3339 instants; `from` inclusive, `to` exclusive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Window {
    pub from: Option<String>,
    pub to: Option<String>,
}

impl Window {
    /// The SQL condition on `column` (a timestamp) for this window.
    pub fn on(&self, column: &str) -> String {
        let mut parts = Vec::new();
        if let Some(from) = &self.from {
            parts.push(format!("{column} >= {}", literal(from)));
        }
        if let Some(to) = &self.to {
            parts.push(format!("{column} < {}", literal(to)));
        }
        if parts.is_empty() {
            "TRUE".into()
        } else {
            parts.join(" AND ")
        }
    }
}

/// The targets of the governance gates (`[gates]` in the config).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Targets {
    /// p95 of `policy.decision`'s `decision_ns`, at most.
    pub decision_p95_ms: f64,
    /// Median wait of the approvals decided in the window, at most.
    pub approval_median_wait_sec: f64,
    /// Quarantined results per executed call, at most.
    pub quarantine_ratio: f64,
}

impl Default for Targets {
    fn default() -> Targets {
        Targets {
            decision_p95_ms: 5.0,
            approval_median_wait_sec: 3600.0,
            quarantine_ratio: 0.01,
        }
    }
}

/// What a report is computed over.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    pub window: Window,
    /// The environment label `servers-touching` asks about.
    pub env: String,
    pub targets: Targets,
}

/// A report: its name, what it answers, and its SQL.
pub struct Report {
    pub name: &'static str,
    pub about: &'static str,
    sql: fn(&Params) -> String,
}

impl Report {
    pub fn sql(&self, p: &Params) -> String {
        (self.sql)(p)
    }
}

/// Every report, in the order `sealgate report` lists them.
pub const REPORTS: &[Report] = &[
    Report {
        name: "servers-touching",
        about: "servers that ran calls in an environment (--env, default prod): calls run and refused, principals, first and last",
        sql: servers_touching,
    },
    Report {
        name: "calls-by-principal",
        about: "each principal's calls: allowed, denied, held for approval, run, failed",
        sql: calls_by_principal,
    },
    Report {
        name: "denials",
        about: "refused calls by server, gate and reason",
        sql: denials,
    },
    Report {
        name: "approvals",
        about: "every request for approval: who asked, who decided, how long it waited, under which policy",
        sql: approvals,
    },
    Report {
        name: "drift",
        about: "tool drift (rug pulls) seen by the gateway, and the calls it refused for it",
        sql: drift,
    },
    Report {
        name: "refused-access",
        about: "unknown or unapproved servers asked for, and refused authentication",
        sql: refused_access,
    },
    Report {
        name: "output-safety",
        about: "results redacted or quarantined, by server and tool",
        sql: output_safety,
    },
    Report {
        name: "gates",
        about: "the governance gates for the window, each with its target and status",
        sql: gates,
    },
];

/// The report called `name`.
pub fn find(name: &str) -> Option<&'static Report> {
    REPORTS.iter().find(|r| r.name == name)
}

/// `s` with LIKE's wildcards (and the escape character) escaped by `\`.
fn like_escaped(s: &str) -> String {
    s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// `s` as an SQL string literal.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn servers_touching(p: &Params) -> String {
    format!(
        "SELECT server,
       count(*) FILTER (WHERE end_kind IN ('execution.completed', 'execution.failed')) AS calls_run,
       count(*) FILTER (WHERE end_kind = 'call.refused') AS calls_refused,
       count(DISTINCT principal) AS principals,
       min(ts) AS first_call, max(ts) AS last_call
FROM calls
WHERE {window} AND (method IS DISTINCT FROM 'initialize')
  AND (',' || env || ',') LIKE {env} ESCAPE '\\'
GROUP BY server
ORDER BY calls_run DESC, server",
        window = p.window.on("ts"),
        env = literal(&format!("%,{},%", like_escaped(&p.env))),
    )
}

fn calls_by_principal(p: &Params) -> String {
    format!(
        "SELECT principal,
       count(*) AS calls,
       count(*) FILTER (WHERE decision IN ('ALLOW', 'ALLOW_WITH_CONSTRAINTS')) AS allowed,
       count(*) FILTER (WHERE decision = 'DENY') AS denied,
       count(*) FILTER (WHERE decision = 'REQUIRE_APPROVAL') AS held,
       count(*) FILTER (WHERE end_kind IN ('execution.completed', 'execution.failed')) AS run,
       count(*) FILTER (WHERE end_kind = 'execution.failed' OR is_error) AS failed,
       count(DISTINCT server) AS servers,
       min(ts) AS first_call, max(ts) AS last_call
FROM calls
WHERE {window} AND (method IS DISTINCT FROM 'initialize')
GROUP BY principal
ORDER BY calls DESC, principal",
        window = p.window.on("ts"),
    )
}

fn denials(p: &Params) -> String {
    format!(
        "SELECT server, refused_by, refused_reason_code AS reason_code,
       count(*) AS calls, count(DISTINCT principal) AS principals,
       min(refused_reason) AS example_reason, max(ts) AS last_call
FROM calls
WHERE {window} AND end_kind = 'call.refused'
GROUP BY server, refused_by, refused_reason_code
ORDER BY calls DESC, server, reason_code",
        window = p.window.on("ts"),
    )
}

fn approvals(p: &Params) -> String {
    format!(
        "SELECT seq, hash, requested_at, requester, server, tool, status, approver,
       CAST(wait_ns AS DOUBLE) / 1e9 AS wait_sec, rule, policy_hash, approval_id, reason
FROM approvals
WHERE {window}
ORDER BY seq",
        window = p.window.on("requested_at"),
    )
}

fn drift(p: &Params) -> String {
    format!(
        "SELECT seq, hash, ts, kind, server, tool, principal, session, reason_code
FROM events
WHERE {window}
  AND (kind = 'tools.drifted'
       OR (kind = 'call.refused' AND reason_code IN ('tool_drifted', 'tool_changed')))
ORDER BY seq",
        window = p.window.on("ts"),
    )
}

fn refused_access(p: &Params) -> String {
    format!(
        "SELECT seq, hash, ts, kind, server, principal, COALESCE(reason_code, reason) AS reason,
       COALESCE(count, 1) AS attempts
FROM events
WHERE {window}
  AND (kind = 'access.refused'
       OR (kind = 'policy.decision' AND gate = 'registry'))
ORDER BY seq",
        window = p.window.on("ts"),
    )
}

fn output_safety(p: &Params) -> String {
    format!(
        "SELECT server, tool,
       count(*) FILTER (WHERE end_kind IN ('execution.completed', 'execution.failed')) AS calls_run,
       count(*) FILTER (WHERE output_redacted) AS redacted,
       count(*) FILTER (WHERE output_quarantined) AS quarantined
FROM calls
WHERE {window} AND (output_redacted OR output_quarantined)
GROUP BY server, tool
ORDER BY quarantined DESC, redacted DESC, server, tool",
        window = p.window.on("ts"),
    )
}

fn gates(p: &Params) -> String {
    let t = p.targets;
    let w = p.window.on("ts");
    let wa = p.window.on("resolved_at");
    format!(
        "WITH c AS (SELECT * FROM calls WHERE {w}),
g AS (
  SELECT 1 AS n, 'policy decision latency p95 (ms)' AS gate,
         approx_percentile_cont(CAST(decision_ns AS DOUBLE) / 1e6, 0.95) AS value,
         {decision} AS target, '<=' AS op
  FROM decisions WHERE {w} AND decision_ns IS NOT NULL
  UNION ALL
  SELECT 2, 'unapproved high-risk writes', CAST(count(*) AS DOUBLE), 0.0, '<='
  FROM c WHERE action IN ('write', 'destructive')
    AND end_kind IN ('execution.completed', 'execution.failed')
    AND (approval IS NULL OR approval <> 'granted')
  UNION ALL
  SELECT 3, 'approval queue median wait (s)',
         median(CAST(wait_ns AS DOUBLE) / 1e9), {wait}, '<='
  FROM approvals WHERE {wa} AND status <> 'pending'
  UNION ALL
  SELECT 4, 'unknown-server connections',
         CAST(COALESCE(sum(CASE WHEN kind = 'access.refused' THEN count ELSE 1 END), 0) AS DOUBLE), 0.0, '<='
  FROM events WHERE {w}
    AND ((kind = 'policy.decision' AND reason_code = 'unregistered_server')
         OR (kind = 'access.refused' AND reason = 'unknown_server'))
  UNION ALL
  SELECT 5, 'output quarantine ratio',
         CAST(count(*) FILTER (WHERE output_quarantined) AS DOUBLE)
           / CAST(nullif(count(*) FILTER (WHERE end_kind IN ('execution.completed', 'execution.failed')), 0) AS DOUBLE),
         {ratio}, '<='
  FROM c
)
SELECT gate, value, op || ' ' || CAST(target AS VARCHAR) AS target,
       CASE WHEN value IS NULL THEN 'NO DATA'
            WHEN value <= target THEN 'PASS' ELSE 'FAIL' END AS status
FROM g ORDER BY n",
        decision = float(t.decision_p95_ms),
        wait = float(t.approval_median_wait_sec),
        ratio = float(t.quarantine_ratio),
    )
}

/// A finite float as an SQL DOUBLE literal.
fn float(x: f64) -> String {
    let x = if x.is_finite() { x } else { 0.0 };
    format!("CAST({x:?} AS DOUBLE)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_in_parameters_stay_inside_their_literal() {
        let p = Params {
            window: Window {
                from: Some("2026-01-01T00:00:00Z' OR '1'='1".into()),
                to: None,
            },
            env: "prod' OR 'x".into(),
            targets: Targets::default(),
        };
        let sql = servers_touching(&p);
        assert!(sql.contains("ts >= '2026-01-01T00:00:00Z'' OR ''1''=''1'"), "{sql}");
        assert!(sql.contains("LIKE '%,prod'' OR ''x,%' ESCAPE"), "{sql}");
        let p = Params {
            env: "us_east%".into(),
            ..p
        };
        let sql = servers_touching(&p);
        assert!(sql.contains(r"LIKE '%,us\_east\%,%' ESCAPE '\'"), "{sql}");
    }

    #[test]
    fn every_report_is_named_once() {
        let mut names: Vec<_> = REPORTS.iter().map(|r| r.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), REPORTS.len());
        assert!(find("gates").is_some() && find("nope").is_none());
    }
}
