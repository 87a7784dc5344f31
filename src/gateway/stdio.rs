//! One MCP session on the gateway's own stdin and stdout (`sealgate
//! stdio`): newline-delimited messages, read strictly like HTTP bodies.
//! The first request must be `initialize`; the session ends when stdin
//! does.

use std::sync::Arc;

use anyhow::Result;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::lines::{Line, next_line};
use super::mcp::{Message, RpcError, code};
use super::relay::{ClientSink, Core, Downstream, Opening, ServerEntry, Session};
use crate::governance::Principal;

pub async fn serve(
    core: Arc<Core>,
    entry: Arc<ServerEntry>,
    principal: Principal,
    max_message_bytes: usize,
) -> Result<()> {
    let stdin = tokio::io::BufReader::new(tokio::io::stdin());
    serve_lines(core, entry, principal, max_message_bytes, stdin, tokio::io::stdout()).await
}

/// One session on newline-delimited messages read from `input` and
/// written to `output`: the process's stdin and stdout, or a connection
/// to the gateway's local socket (`local`).
pub async fn serve_lines<R, W>(
    core: Arc<Core>,
    entry: Arc<ServerEntry>,
    principal: Principal,
    max_message_bytes: usize,
    mut stdin: R,
    mut out: W,
) -> Result<()>
where
    R: tokio::io::AsyncBufRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(256);
    let writer = tokio::spawn(async move {
        while let Some(line) = rx.recv().await {
            if out.write_all(&line).await.is_err() || out.flush().await.is_err() {
                break;
            }
        }
    });
    let write = |message: Message| {
        let tx = tx.clone();
        async move {
            let mut line = message.to_bytes();
            line.push(b'\n');
            let _ = tx.send(line).await;
        }
    };
    let mut session: Option<Arc<Session>> = None;
    let mut ended_by_client = true;
    // A read error (a local connection reset by a client that went away
    // with answers unread) ends the session like the end of input: it is
    // closed and recorded below, then the error is returned.
    let mut failed = None;
    loop {
        // A session that ended on its own (its upstream exited) ends the
        // process: the client reads end of output.
        let read = match &session {
            Some(s) => tokio::select! {
                line = next_line(&mut stdin, max_message_bytes) => line,
                _ = s.closing() => {
                    ended_by_client = false;
                    break;
                }
            },
            None => next_line(&mut stdin, max_message_bytes).await,
        };
        let next = match read {
            Ok(next) => next,
            Err(e) => {
                failed = Some(e);
                break;
            }
        };
        let line = match next {
            None => break,
            Some(Line::TooLong(n)) => {
                let error = RpcError::new(
                    code::INVALID_REQUEST,
                    format!(
                        "invalid request: a message of {n} bytes exceeds the limit of {max_message_bytes} (gateway.max_body_bytes)"
                    ),
                );
                write(Message::Error { id: None, error }).await;
                continue;
            }
            Some(Line::Text(bytes)) => bytes,
        };
        let size = line.len();
        let message = match Message::parse(&line) {
            Ok(message) => message,
            Err(refusal) => {
                if let Some(s) = &session {
                    s.record_refused_message(&refusal, size).await;
                }
                // Errors answer requests; a refused message may have been one.
                write(refusal.answer()).await;
                continue;
            }
        };
        let Some(s) = session.clone() else {
            match message {
                Message::Request { id, method, params } if method == "initialize" => {
                    let checked = super::mcp::method("initialize", super::mcp::Direction::Up)
                        .map_or(Ok(()), |m| m.check_params(params.as_ref()));
                    let params = match (checked, params) {
                        (Ok(()), Some(p)) => p,
                        (Err(e), _) => {
                            let error = RpcError::new(code::INVALID_PARAMS, format!("invalid params: {e}"));
                            write(Message::Error { id: Some(id), error }).await;
                            continue;
                        }
                        (Ok(()), None) => {
                            let error = RpcError::new(code::INVALID_PARAMS, "invalid params: initialize needs params");
                            write(Message::Error { id: Some(id), error }).await;
                            continue;
                        }
                    };
                    let opening = Opening {
                        core: Arc::clone(&core),
                        server: Arc::clone(&entry),
                        principal: principal.clone(),
                        downstream: Downstream::Stdio,
                        sink: ClientSink::Lines(tx.clone()),
                        id: id.clone(),
                        params,
                    };
                    match Session::open(opening).await {
                        Ok((opened, result)) => {
                            session = Some(opened);
                            write(Message::Response { id, result }).await;
                        }
                        Err(error) => write(Message::Error { id: Some(id), error }).await,
                    }
                }
                Message::Request { id, .. } => {
                    let error = RpcError::new(code::INVALID_REQUEST, "invalid request: send initialize first");
                    write(Message::Error { id: Some(id), error }).await;
                }
                _ => {}
            }
            continue;
        };
        match message {
            Message::Request { id, method, params } => {
                let principal = principal.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    if let Some(answer) = s.request(&principal, id, method, params, size).await {
                        let mut line = answer.to_bytes();
                        line.push(b'\n');
                        let _ = tx.send(line).await;
                    }
                });
            }
            Message::Notification { method, params } => {
                if let Err(e) = s.notify(&principal, &method, params, size).await {
                    tracing::info!(session = %s.id, "notification {method} refused: {}", e.message);
                }
            }
            answer => {
                if let Err(e) = s.respond(&principal, answer, size).await {
                    tracing::info!(session = %s.id, "response refused: {}", e.message);
                }
            }
        }
    }
    if let Some(s) = session {
        if let Some(e) = &failed {
            let why = format!("reading from the client failed: {e}");
            s.close(events::CloseReason::ClientEof, &why, None).await;
        } else if ended_by_client {
            s.close(events::CloseReason::ClientEof, "the client closed stdin", None)
                .await;
        } else {
            // A close is under way: this waits until it is recorded.
            s.close(
                events::CloseReason::UpstreamExit,
                "the upstream ended the session",
                None,
            )
            .await;
        }
    }
    drop(tx);
    // Tasks still finishing may hold the last sender for a moment.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), writer).await;
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}
