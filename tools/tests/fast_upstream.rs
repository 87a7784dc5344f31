//! The fast upstream itself, through a real rmcp client: over HTTP in
//! process and as the stdio binary, each tool, the recording, cancellation
//! and the crash.

use std::time::{Duration, Instant};

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, JsonObject};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use sealgate_tools::fast_upstream::{self, FastUpstream};
use serde_json::{Value, json};

type Client = RunningService<RoleClient, ()>;

fn params(tool: &'static str, args: Value) -> CallToolRequestParams {
    let args: JsonObject = match args {
        Value::Object(m) => m,
        _ => JsonObject::new(),
    };
    CallToolRequestParams::new(tool).with_arguments(args)
}

fn text(result: &rmcp::model::CallToolResult) -> String {
    serde_json::to_value(&result.content).expect("content")[0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn http_client(url: &str) -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    ().serve(StreamableHttpClientTransport::from_uri(url.to_string()))
        .await
        .expect("an MCP session over HTTP")
}

#[tokio::test]
async fn http_echo_slow_and_recording() {
    let (_addr, recorder, handle) = FastUpstream::spawn_http().await.expect("spawn");
    let client = http_client(&handle.url()).await;
    let tools = client.list_all_tools().await.expect("tools/list");
    let names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
    assert_eq!(names, ["echo", "slow", "crash"]);

    let r = client
        .call_tool(params("echo", json!({"message": "hi there"})))
        .await
        .expect("echo");
    assert_eq!(text(&r), "hi there");
    let started = Instant::now();
    let r = client.call_tool(params("slow", json!({"ms": 50}))).await.expect("slow");
    assert_eq!(text(&r), "slept 50 ms");
    assert!(started.elapsed() >= Duration::from_millis(50));

    let methods = recorder.methods();
    for m in ["initialize", "notifications/initialized", "tools/list", "tools/call"] {
        assert!(methods.iter().any(|x| x == m), "{m} not recorded: {methods:?}");
    }
    let echo = recorder
        .received()
        .into_iter()
        .find(|r| r.message["params"]["name"] == "echo")
        .expect("the echo call recorded");
    assert_eq!(echo.message["params"]["arguments"]["message"], "hi there");
    assert_eq!(echo.http_method, "POST");
    assert!(
        echo.header("content-type").is_some_and(|v| v.contains("json")),
        "{:?}",
        echo.headers
    );

    recorder.clear();
    recorder.set_enabled(false);
    client
        .call_tool(params("echo", json!({"message": "quiet"})))
        .await
        .expect("echo");
    assert!(recorder.messages().is_empty(), "recorded while off");
}

#[tokio::test]
async fn http_slow_stops_when_cancelled() {
    let (_addr, recorder, handle) = FastUpstream::spawn_http().await.expect("spawn");
    let client = http_client(&handle.url()).await;
    // Dropping the call's future sends notifications/cancelled.
    let call = client.call_tool(params("slow", json!({"ms": 60_000})));
    assert!(tokio::time::timeout(Duration::from_millis(200), call).await.is_err());
    let cancelled = recorder
        .wait_for(Duration::from_secs(5), |r| {
            r.method() == Some("notifications/cancelled")
        })
        .await;
    assert!(
        cancelled.is_some(),
        "no cancellation received: {:?}",
        recorder.methods()
    );
    // The session is still usable.
    let r = client
        .call_tool(params("echo", json!({"message": "after"})))
        .await
        .expect("echo");
    assert_eq!(text(&r), "after");
}

#[tokio::test]
async fn http_crash_drops_the_call_and_the_server() {
    let (addr, recorder, handle) = FastUpstream::spawn_http().await.expect("spawn");
    let client = http_client(&handle.url()).await;
    // rmcp's client keeps trying to resume the dropped event stream, so the
    // call fails or hangs; it must not be answered.
    let result = tokio::time::timeout(Duration::from_secs(3), client.call_tool(params("crash", json!({})))).await;
    assert!(!matches!(result, Ok(Ok(_))), "crash answered: {result:?}");
    assert!(handle.is_stopped());
    assert!(
        recorder
            .received()
            .iter()
            .any(|r| r.message["params"]["name"] == "crash")
    );
    // Nothing listens any more.
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still listening after a crash"
    );
}

#[tokio::test]
async fn stdio_binary_echo_record_and_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let record = dir.path().join("received.jsonl");
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_fast-upstream"));
    cmd.arg("--record").arg(&record);
    let client: Client = ().serve(TokioChildProcess::new(cmd).expect("spawn")).await.expect("initialize");
    let r = client
        .call_tool(params("echo", json!({"message": "over stdio"})))
        .await
        .expect("echo");
    assert_eq!(text(&r), "over stdio");
    let result = tokio::time::timeout(Duration::from_secs(10), client.call_tool(params("crash", json!({})))).await;
    assert!(matches!(result, Ok(Err(_))), "crash answered: {result:?}");
    let recorded = fast_upstream::read_recording(&record).expect("recording");
    let methods: Vec<_> = recorded.iter().filter_map(|m| m["method"].as_str()).collect();
    assert_eq!(methods[..2], ["initialize", "notifications/initialized"], "{methods:?}");
    assert_eq!(
        recorded.last().expect("last")["params"]["name"],
        "crash",
        "{recorded:?}"
    );
}

#[test]
fn bin_path_builds_and_finds_the_binary() {
    let path = fast_upstream::bin_path().expect("bin_path");
    assert!(path.is_file(), "{}", path.display());
    assert_eq!(path.file_name().and_then(|n| n.to_str()), Some("fast-upstream"));
}
