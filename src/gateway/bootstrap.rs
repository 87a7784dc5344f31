//! What the config declares, made into events at start: servers
//! registered (and approved, where the config says so), the policy file
//! loaded, config grants issued or revoked. Every change is an event by
//! `sealgate:config`; nothing is applied silently, and nothing is written
//! when the state already matches.

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::{Context, Result};

use super::Gateway;
use crate::config::{Config, GrantConfig};
use crate::governance::grants::Grantee;
use crate::governance::{Governance, GrantSpec, Principal, Status};

pub const CONFIG_PRINCIPAL: &str = "sealgate:config";

fn config_principal() -> Principal {
    Principal::system(CONFIG_PRINCIPAL)
}

pub async fn bootstrap(gov: &Arc<Governance>, gateway: &Gateway, config: &Config, origin: &str) -> Result<()> {
    let by = config_principal();
    for (name, server) in config.servers.iter().filter(|(_, s)| s.register) {
        let spec = gateway
            .server_spec(name)
            .context("configured server without upstream")?;
        if let Some(r) = gov
            .register(
                &by,
                &spec,
                Some(format!("declared in {origin}")),
                events::RegistrySource::Config,
            )
            .await
            .with_context(|| format!("registering server {name}"))?
        {
            tracing::info!(server = %name, seq = r.seq, "registered from the config");
        }
        let status = gov.view().await?.state.registry.get(name).map(|s| s.status);
        if server.approve && status != Some(Status::Approved) {
            let tools = gateway
                .pin_upstream_tools(name)
                .await
                .with_context(|| format!("listing the tools of {name} to approve it"))?;
            gov.approve_server(&by, name, Some(format!("approve = true in {origin}")), &tools)
                .await
                .with_context(|| format!("approving server {name}"))?;
            tracing::info!(server = %name, tools = tools.len(), "approved from the config");
        }
    }

    if let Some(path) = &config.governance.policy_file {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read policy {}", path.display()))?;
        gov.load_policy(&by, &text, &path.display().to_string())
            .await
            .with_context(|| format!("loading policy {}", path.display()))?;
    }

    reconcile_grants(gov, &by, &config.grants).await
}

/// Issues the config's grants that are not in force, and revokes the
/// grants the config issued earlier that it no longer lists.
async fn reconcile_grants(gov: &Arc<Governance>, by: &Principal, wanted: &[GrantConfig]) -> Result<()> {
    let view = gov.view().await?;
    let key = |principal: &Option<String>, team: &Option<String>, server: &str, tool: &str, env: &Option<String>| {
        (
            principal.clone(),
            team.clone(),
            server.to_string(),
            tool.to_string(),
            env.clone(),
        )
    };
    let wanted_keys: BTreeSet<_> = wanted
        .iter()
        .map(|g| key(&g.principal, &g.team, &g.server, &g.tool, &g.env))
        .collect();
    let mut present = BTreeSet::new();
    for grant in view.state.grants.grants.values() {
        if grant.issued_by.as_deref() != Some(CONFIG_PRINCIPAL) {
            continue;
        }
        let (p, t) = match &grant.grantee {
            Grantee::Principal(p) => (Some(p.clone()), None),
            Grantee::Team(t) => (None, Some(t.clone())),
        };
        let k = key(&p, &t, &grant.server, &grant.tool, &grant.env);
        if wanted_keys.contains(&k) && grant.expires_at.is_none() {
            present.insert(k);
        } else {
            gov.revoke_grant(by, &grant.id, Some("no longer in the config".into()))
                .await
                .with_context(|| format!("revoking config grant {}", grant.id))?;
        }
    }
    for g in wanted {
        if present.contains(&key(&g.principal, &g.team, &g.server, &g.tool, &g.env)) {
            continue;
        }
        let spec = GrantSpec {
            principal: g.principal.clone(),
            team: g.team.clone(),
            server: g.server.clone(),
            tool: g.tool.clone(),
            env: g.env.clone(),
            expires_at: None,
            reason: Some("declared in the config".into()),
        };
        gov.issue_grant(by, &spec)
            .await
            .with_context(|| format!("issuing config grant on {}", g.server))?;
    }
    Ok(())
}
