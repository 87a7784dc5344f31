//! Sealgate: an MCP governance gateway whose heart is a tamper-evident
//! audit ledger (the `sealgate-ledger` crate). Dependencies run one way:
//! `commands` → `api` → `gateway` → `governance` → `ledger`
//! (`docs/ARCHITECTURE.md`).
#![deny(unsafe_code, clippy::unwrap_used)]

pub mod alerts;
pub mod api;
pub mod checkpoints;
pub mod cli;
pub mod commands;
pub mod config;
pub mod gateway;
pub mod governance;
pub mod json;
pub mod metrics;
