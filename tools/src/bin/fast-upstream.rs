//! `fast-upstream [--record FILE]`: the fast MCP upstream over stdio (tools
//! `echo`, `slow`, `crash`), for the gateway to spawn as a child in tests
//! and benches. See `sealgate_tools::fast_upstream`.

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser)]
#[command(about = "A fast MCP server over stdio (echo, slow, crash) for tests and benches")]
struct Args {
    /// Append every message received, one JSON object per line, to FILE.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(sealgate_tools::fast_upstream::serve_stdio(args.record))?;
    Ok(())
}
