//! No audit, no execution: with the ledger's disk full, a `tools/call` of a
//! tool with a visible side effect (the official `server-filesystem`'s
//! `write_file`) is refused with a clear JSON-RPC error, and the file is
//! not written. The data dir is a real size-capped tmpfs (needs root, as CI
//! has; under `CI` the test fails rather than skips without it).

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::service::ServiceError;
use rmcp::transport::StreamableHttpClientTransport;
use support::*;

struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, size: &str) -> Result<Mount, String> {
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(Mount(at.to_path_buf()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes zeros into `dir/filler` until the file system says it is full.
fn fill(dir: &Path) {
    let mut f = std::fs::File::create(dir.join("filler")).expect("create filler");
    let block = vec![0u8; 1 << 16];
    loop {
        match f.write_all(&block).and_then(|()| f.sync_data()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(28) => return, // ENOSPC
            Err(e) => panic!("filling the disk failed with something else than ENOSPC: {e}"),
        }
    }
}

fn write_file(path: &Path, content: &str) -> CallToolRequestParams {
    let args = serde_json::json!({"path": path.to_string_lossy(), "content": content});
    CallToolRequestParams::new("write_file").with_arguments(args.as_object().cloned().unwrap_or_default())
}

#[test]
#[ignore = "end-to-end: needs the MCP peers and root (a tmpfs); tools/test.sh runs it"]
fn a_write_is_refused_and_not_performed_when_the_ledger_cannot_record_it() {
    let peers = peers();
    let dir = tempfile::tempdir().expect("tempdir");
    let mount = match Mount::tmpfs(&dir.path().join("data"), "24m") {
        Ok(m) => m,
        Err(e) => panic!("this test mounts a tmpfs (it needs root / CAP_SYS_ADMIN): {e}"),
    };
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).expect("files dir");
    let files_arg = files.to_string_lossy().to_string();
    let config = format!(
        "[gateway]\nlisten = \"127.0.0.1:0\"\nanonymous_principal = \"agent-7\"\n{}",
        stdio_server("fs", "node", &[&peers.filesystem, &files_arg])
    );
    let site = Site::in_dir(dir, &config);
    let gw = site.serve();

    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let before = files.join("before.txt");
    let refused = files.join("refused.txt");
    let (first, second, third) = rt.block_on(async {
        let client =
            ().serve(StreamableHttpClientTransport::from_uri(gw.url("fs")))
                .await
                .expect("session through the gateway");
        let tools = client.list_all_tools().await.expect("tools/list");
        assert!(
            tools.iter().any(|t| t.name == "write_file"),
            "server-filesystem lists write_file"
        );
        // With the ledger writable the write goes through.
        let first = client.call_tool(write_file(&before, "audited")).await;
        fill(&mount.0);
        // The request event carries the arguments: 64 KiB of them cannot fit
        // in what is left of the log's last page.
        let second = client
            .call_tool(write_file(&refused, &"must not be written ".repeat(3300)))
            .await;
        // Still refused: the writer stays poisoned until restart.
        let third = client.call_tool(write_file(&refused, "nor this")).await;
        let _ = client.cancel().await;
        (first, second, third)
    });
    let first = first.expect("first write through the gateway");
    assert_ne!(first.is_error, Some(true), "{first:?}");
    assert_eq!(std::fs::read_to_string(&before).expect("before.txt"), "audited");

    for (n, outcome) in [(2, second), (3, third)] {
        match outcome {
            Err(ServiceError::McpError(e)) => {
                assert_eq!(e.code.0, -32050, "call {n}: {e:?}");
                assert!(e.message.contains("audit ledger"), "call {n}: {}", e.message);
                assert!(e.message.contains("nothing was forwarded"), "call {n}: {}", e.message);
            }
            other => panic!("call {n} with a full ledger disk must be refused, got {other:?}"),
        }
    }
    assert!(!refused.exists(), "the refused write reached the upstream");

    // After a restart with space again, the log verifies and holds the
    // first call in full and nothing of the refused ones.
    gw.stop();
    std::fs::remove_file(mount.0.join("filler")).expect("remove filler");
    site.verify();
    let events = site.events();
    let calls: Vec<_> = audited_calls(&events)
        .into_iter()
        .filter(|(request, _, _)| kind(request) == "tool_call.requested")
        .collect();
    assert_eq!(calls.len(), 1, "only the first write was recorded: {calls:?}");
    let (req, _, done) = &calls[0];
    assert_eq!(req["subject"]["tool"], "write_file");
    assert_eq!(req["actor"]["principal"], "agent-7");
    assert_eq!(kind(done), "execution.completed");
    assert!(
        !events.iter().any(|e| body(e, "arguments")["json"]
            .as_str()
            .is_some_and(|a| a.contains("refused.txt"))),
        "no event mentions the refused write"
    );
}
