//! `sealgate policy check` and `sealgate policy test`: a policy file checked,
//! or a described call evaluated against it, without a gateway or a ledger.
//!
//! Exit codes: 0 when the policy is valid (whatever `test`'s verdict), 1 when
//! it is not (the error, with file, line, column and rule id, on stderr), 2
//! for anything else (an unreadable file).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use serde_json::json;

use crate::cli::{ActionArg, PolicyCommand, ReportFormat};
use crate::governance::policy::{Action, Evaluation, Facts, Policy};

pub fn run(command: PolicyCommand) -> Result<ExitCode> {
    match command {
        PolicyCommand::Check { file, output } => {
            let policy = match load(&file)? {
                Ok(policy) => policy,
                Err(code) => return Ok(code),
            };
            check(&policy, output)?;
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Test {
            file,
            server,
            method,
            tool,
            principal,
            team,
            env,
            risk,
            action,
            output,
        } => {
            let policy = match load(&file)? {
                Ok(policy) => policy,
                Err(code) => return Ok(code),
            };
            let facts = Facts {
                server: &server,
                method: &method,
                target: tool.as_deref(),
                principal: &principal,
                teams: &team,
                env: &env,
                risk: &risk,
                action: action.map(|a| match a {
                    ActionArg::Read => Action::Read,
                    ActionArg::Write => Action::Write,
                    ActionArg::Destructive => Action::Destructive,
                }),
            };
            let evaluation = policy.evaluate(&facts);
            print_evaluation(&policy, &facts, &evaluation, output)?;
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Load { .. } => anyhow::bail!("policy load goes through the admin API"),
    }
}

/// The policy, or exit code 1 after printing why it is invalid. A file that
/// cannot be read is an error (exit 2).
fn load(file: &Path) -> Result<Result<Policy, ExitCode>> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read policy {}", file.display()))?;
    match Policy::parse_bytes(&bytes, &file.display().to_string()) {
        Ok(policy) => Ok(Ok(policy)),
        Err(e) => {
            eprintln!("error: {e}");
            Ok(Err(ExitCode::from(1)))
        }
    }
}

fn check(policy: &Policy, output: ReportFormat) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match output {
        ReportFormat::Text => {
            writeln!(out, "ok {}", policy.origin())?;
            writeln!(out, "rules {}", policy.rules().len())?;
            writeln!(out, "hash {}", policy.hash())?;
            writeln!(out, "bytes {}", policy.text().len())?;
            for r in policy.rules() {
                writeln!(
                    out,
                    "  line {:>4}  {:<22}  {}{}",
                    r.line(),
                    r.verdict().to_string(),
                    r.id(),
                    r.description().map(|d| format!("  ({})", d.trim())).unwrap_or_default()
                )?;
            }
        }
        ReportFormat::Json => {
            let rules: Vec<_> = policy
                .rules()
                .iter()
                .map(|r| json!({"id": r.id(), "line": r.line(), "decision": r.verdict().to_string(), "description": r.description()}))
                .collect();
            let v = json!({
                "ok": true,
                "file": policy.origin(),
                "rules": policy.rules().len(),
                "hash": policy.hash(),
                "bytes": policy.text().len(),
                "rule_list": rules,
            });
            writeln!(out, "{v}")?;
        }
    }
    Ok(())
}

fn print_evaluation(policy: &Policy, facts: &Facts<'_>, e: &Evaluation, output: ReportFormat) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match output {
        ReportFormat::Text => {
            writeln!(out, "verdict {}", e.verdict)?;
            writeln!(out, "rule {}", e.rule.as_deref().unwrap_or("-"))?;
            writeln!(out, "reason {}", e.reason)?;
            if let Some(a) = &e.approval {
                let mut parts = vec![format!("timeout_sec={}", a.timeout_sec)];
                if !a.approvers.teams.is_empty() {
                    parts.push(format!("teams={}", a.approvers.teams.join(",")));
                }
                if !a.approvers.principals.is_empty() {
                    parts.push(format!("principals={}", a.approvers.principals.join(",")));
                }
                writeln!(out, "approval {}", parts.join(" "))?;
            }
            if let Some(c) = &e.constraints {
                let mut parts = Vec::new();
                if let Some(v) = c.max_runtime_sec {
                    parts.push(format!("max_runtime_sec={v}"));
                }
                if let Some(v) = c.max_retries {
                    parts.push(format!("max_retries={v}"));
                }
                if let Some(v) = c.max_result_bytes {
                    parts.push(format!("max_result_bytes={v}"));
                    parts.push(format!("on_oversize={}", c.on_oversize.as_str()));
                }
                if let Some(list) = &c.network_allowlist {
                    parts.push(format!("network_allowlist={}", list.entries().join(",")));
                }
                writeln!(out, "constraints {}", parts.join(" "))?;
            }
            writeln!(out, "output secrets={} pii={}", e.output.secrets, e.output.pii)?;
            writeln!(out, "policy_hash {}", policy.hash())?;
        }
        ReportFormat::Json => {
            let v = json!({
                "verdict": e.verdict.to_string(),
                "rule": e.rule,
                "reason": e.reason,
                "approval": e.approval,
                "constraints": e.constraints,
                "output": e.output,
                "policy_hash": policy.hash(),
                "call": {
                    "server": facts.server,
                    "method": facts.method,
                    "target": facts.target,
                    "principal": facts.principal,
                    "teams": facts.teams,
                    "env": facts.env,
                    "risk": facts.risk,
                    "action": facts.action,
                },
            });
            writeln!(out, "{v}")?;
        }
    }
    Ok(())
}
