use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use ledger::{Actor, Ledger, SigningKey};

use crate::config::Paths;

pub fn run(paths: &Paths, key: Option<&Path>, principal: String) -> Result<ExitCode> {
    let key = match key {
        Some(path) => SigningKey::read(path)?,
        None => SigningKey::generate(),
    };
    // The ledger checks the genesis event (the principal among it) before
    // it makes anything, the data dir included: a refused init leaves none.
    let actor = Actor {
        principal: Some(principal),
        ..Actor::default()
    };
    let ledger = Ledger::create_with(&paths.ledger_dir(), &paths.key_dir(), key, actor, &paths.store)
        .with_context(|| format!("cannot initialize {}", paths.data_dir.display()))?;
    let find_key = crate::gateway::findable::FindKey::path(&paths.key_dir, &ledger.ledger_id());
    crate::gateway::findable::FindKey::create(&paths.key_dir, &ledger.ledger_id())
        .context("cannot create the ledger's find key")?;
    let head = ledger.head();
    let mut out = std::io::stdout().lock();
    writeln!(out, "initialized {}", paths.data_dir.display())?;
    writeln!(out, "ledger_id {}", hex::encode(ledger.ledger_id()))?;
    writeln!(out, "key_id {} ({})", ledger.current_key_id()?, paths.key_dir.display())?;
    writeln!(out, "find_key {}", find_key.display())?;
    writeln!(out, "head {}:{}", head.seq, head.hash)?;
    Ok(ExitCode::SUCCESS)
}
