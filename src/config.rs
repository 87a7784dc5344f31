//! The TOML config file. Every key is documented in `docs/CONFIG.md`;
//! unknown keys are rejected by name.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::cli::Global;

pub const DEFAULT_CONFIG: &str = "sealgate.toml";
pub const DEFAULT_DATA_DIR: &str = "sealgate-data";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the ledger lives. Default `./sealgate-data`.
    pub data_dir: Option<PathBuf>,
    /// Where signing keys live. Default `<data_dir>/keys`.
    pub key_dir: Option<PathBuf>,
}

/// Paths after flags, environment, config file and defaults are applied
/// (in that order of precedence).
#[derive(Debug, Clone)]
pub struct Paths {
    pub data_dir: PathBuf,
    pub key_dir: PathBuf,
}

impl Paths {
    pub fn ledger_dir(&self) -> PathBuf {
        self.data_dir.join("ledger")
    }

    pub fn key_dir(&self) -> ledger::KeyDir {
        ledger::KeyDir::new(&self.key_dir)
    }
}

pub fn load(path: &Path) -> Result<Config> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
    toml::from_str(&text).map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))
}

pub fn resolve(global: &Global) -> Result<Paths> {
    let config = match &global.config {
        Some(path) => load(path)?,
        None if Path::new(DEFAULT_CONFIG).exists() => load(Path::new(DEFAULT_CONFIG))?,
        None => Config::default(),
    };
    let data_dir = global
        .data_dir
        .clone()
        .or(config.data_dir)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let key_dir = global
        .key_dir
        .clone()
        .or(config.key_dir)
        .unwrap_or_else(|| ledger::Ledger::default_key_dir(&data_dir));
    Ok(Paths { data_dir, key_dir })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_named() {
        let err = toml::from_str::<Config>("data_dir = \"x\"\ndata_dri = \"y\"\n").expect_err("unknown key");
        let msg = err.to_string();
        assert!(msg.contains("data_dri"), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
    }
}
