//! Webhooks (`[[webhooks]]`, `docs/ALERTS.md`): each follows the log on
//! its own task and posts approvals waiting (`approval.requested`, with the
//! approve and deny commands and the admin API's link) and alerts
//! (`alert.raised`), as generic JSON or a Slack-compatible body; retried
//! with exponential backoff; the outcome of each is written to the ledger
//! as `notification.delivered` or `notification.failed`. A webhook resumes
//! after the last outcome it wrote, so a restart neither repeats nor
//! skips a notification (one cut off mid-delivery is sent again).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use events::{NotificationOutcome, NotificationTopic};
use ledger::{Actor, Draft, EventKind, Ledger, SealedEvent, Subject, Timestamp};
use serde_json::{Value, json};

use crate::config::{Format, Topic, WebhookConfig, check_url};

/// The principal of the outcomes the notifier writes.
pub const NOTIFY_ACTOR: &str = "sealgate:notify";

impl WebhookConfig {
    fn topic(&self, e: &SealedEvent) -> Option<NotificationTopic> {
        match e.event.kind {
            EventKind::ApprovalRequested if self.events.contains(&Topic::Approvals) => {
                Some(NotificationTopic::Approval)
            }
            EventKind::AlertRaised if self.events.contains(&Topic::Alerts) => Some(NotificationTopic::Alert),
            _ => None,
        }
    }
}

/// A webhook's URL and headers, read at start.
#[derive(Clone)]
struct Target {
    url: String,
    headers: reqwest::header::HeaderMap,
}

/// The URL as logs and outcomes may name it: scheme, host and port only
/// (user info, path and query may hold the webhook's secret: a Slack URL's
/// path is its token).
fn safe_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!(
            "{}://{}{}",
            u.scheme(),
            u.host_str().unwrap_or("?"),
            u.port().map(|p| format!(":{p}")).unwrap_or_default(),
        ),
        Err(_) => "(invalid url)".into(),
    }
}

fn body_str<'a>(e: &'a SealedEvent, key: &str) -> Option<&'a str> {
    e.event.body.get(key).and_then(ledger::Value::as_str)
}

/// What a webhook is sent for `e`: the message text, and the JSON body in
/// the webhook's format.
/// `admin_url` is the admin API the approval commands and links name;
/// with none (a `sealgate stdio` host, which serves no admin API, and no
/// `admin_url` in the hook), the message names the approval but links and
/// commands nothing: a link to a port nobody serves could be taken by
/// whoever binds it first.
pub fn message(
    hook: &WebhookConfig,
    admin_url: Option<&str>,
    topic: NotificationTopic,
    e: &SealedEvent,
) -> (String, Value) {
    let event = json!({
        "seq": e.event.seq,
        "hash": e.hash.to_hex(),
        "kind": e.event.kind.as_str(),
        "ts": e.event.ts.to_string(),
    });
    let server = e.event.subject.server.as_deref().unwrap_or("?");
    let (text, detail) = match topic {
        NotificationTopic::Approval => {
            let id = body_str(e, "approval_id").unwrap_or("?");
            let what = e
                .event
                .subject
                .tool
                .as_deref()
                .or(e.event.subject.prompt.as_deref())
                .or(e.event.subject.resource.as_deref())
                .unwrap_or("?");
            let requester = e.event.actor.principal.as_deref().unwrap_or("?");
            let expires = body_str(e, "expires_at").unwrap_or("?");
            let head = format!(
                "Approval waiting: {what} on {server}, asked by {requester} (approval {id}, expires {expires})."
            );
            let mut detail = json!({
                "approval_id": id,
                "server": server,
                "tool": what,
                "requester": requester,
                "rule": body_str(e, "rule"),
                "expires_at": expires,
            });
            let text = match admin_url {
                Some(admin_url) => {
                    let api = format!(" --api {admin_url}");
                    let approve = format!("sealgate approvals approve {id}{api}");
                    let deny = format!("sealgate approvals deny {id}{api}");
                    let list = format!("{admin_url}/admin/approvals");
                    detail["approve_command"] = json!(approve);
                    detail["deny_command"] = json!(deny);
                    detail["approvals_url"] = json!(list);
                    detail["approve_url"] = json!(format!("{admin_url}/admin/approvals/{id}/approve"));
                    detail["deny_url"] = json!(format!("{admin_url}/admin/approvals/{id}/deny"));
                    format!("{head}\nApprove: `{approve}`\nDeny: `{deny}`\nQueue: {list}")
                }
                None => format!("{head}\nDecide it through the gateway's admin API."),
            };
            (text, ("approval", detail))
        }
        NotificationTopic::Alert => {
            let body: serde_json::Map<String, Value> =
                e.event.body.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
            let severity = body_str(e, "severity").unwrap_or("high");
            let detection = body_str(e, "detection").unwrap_or("?");
            let summary = body_str(e, "summary").unwrap_or("");
            let text = format!(
                "Sealgate alert ({severity}): {detection} (seq {}).\n{summary}",
                e.event.seq
            );
            (text, ("alert", Value::Object(body)))
        }
    };
    let body = match hook.format {
        Format::Generic => {
            let mut body = json!({ "topic": detail.0, "text": text, "event": event });
            body[detail.0] = detail.1;
            body
        }
        // Server and tool names, requesters and summaries come from
        // callers and upstreams: Slack's control characters are escaped,
        // so none can make a link, a mention or a command of its own.
        Format::Slack => {
            let text = slack_escaped(&text);
            json!({
                "text": text,
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
            })
        }
    };
    (text, body)
}

/// `text` with `&`, `<` and `>` escaped as Slack's message format asks.
fn slack_escaped(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// How one delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub delivered: bool,
    pub attempts: u64,
    pub status: Option<u16>,
    pub error: Option<String>,
}

/// Posts `body` until a 2xx, an answer not worth retrying (a 4xx other
/// than 408 and 429), `max_attempts`, or `stop`.
async fn deliver(
    client: &reqwest::Client,
    hook: &WebhookConfig,
    target: &Target,
    body: &Value,
    stop: &AtomicBool,
) -> Delivery {
    let mut wait = Duration::from_millis(hook.backoff_ms);
    let mut last = Delivery {
        delivered: false,
        attempts: 0,
        status: None,
        error: None,
    };
    while last.attempts < hook.max_attempts {
        last.attempts += 1;
        let sent = client
            .post(&target.url)
            .headers(target.headers.clone())
            .timeout(Duration::from_secs(hook.timeout_sec))
            .json(body)
            .send()
            .await;
        let retry = match sent {
            Ok(resp) => {
                let status = resp.status();
                last.status = Some(status.as_u16());
                if status.is_success() {
                    last.delivered = true;
                    last.error = None;
                    return last;
                }
                last.error = Some(format!("{} answered {status}", safe_url(&target.url)));
                status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429
            }
            Err(e) => {
                last.status = None;
                // reqwest's error names the URL; keep only what it says
                // went wrong.
                let kind = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "cannot connect"
                } else {
                    "request failed"
                };
                last.error = Some(format!("{}: {kind}", safe_url(&target.url)));
                true
            }
        };
        if !retry || last.attempts >= hook.max_attempts || stop.load(Ordering::Relaxed) {
            break;
        }
        tracing::warn!(
            webhook = %hook.name,
            attempt = last.attempts,
            "webhook: {} (retrying in {wait:?})",
            last.error.as_deref().unwrap_or("?")
        );
        pause(wait, stop).await;
        wait = (wait * 2).min(Duration::from_secs(60));
    }
    last
}

/// Sleeps `d`, or less once `stop` is set.
async fn pause(d: Duration, stop: &AtomicBool) {
    let until = tokio::time::Instant::now() + d;
    while !stop.load(Ordering::Relaxed) && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100).min(until - tokio::time::Instant::now())).await;
    }
}

/// The `notification.*` event of a delivery.
pub fn outcome_draft(
    hook: &str,
    topic: NotificationTopic,
    e: &SealedEvent,
    d: &Delivery,
) -> Result<Draft, events::Error> {
    let kind = if d.delivered {
        EventKind::NotificationDelivered
    } else {
        EventKind::NotificationFailed
    };
    let mut draft = Draft::new(kind);
    draft.actor = Actor {
        principal: Some(NOTIFY_ACTOR.into()),
        ..Actor::default()
    };
    draft.subject = Subject {
        server: e.event.subject.server.clone(),
        ..Subject::default()
    };
    draft.body = events::encode(&NotificationOutcome {
        webhook: hook.to_owned(),
        topic,
        event_seq: e.event.seq,
        event_hash: e.hash.to_hex(),
        attempts: d.attempts,
        status: d.status.map(u64::from),
        error: d.error.clone(),
    })?;
    Ok(draft)
}

/// Where webhook `name` resumes: after the newest event it wrote an
/// outcome for, within the last `max_age` before the head; else at the
/// first event of that span. Blocking.
pub fn resume_from(ledger: &Ledger, name: &str, max_age: Duration) -> Result<u64, ledger::Error> {
    let head = ledger.head();
    let since = head
        .ts
        .as_nanos()
        .saturating_sub(u64::try_from(max_age.as_nanos()).unwrap_or(u64::MAX));
    let from = ledger
        .locate_at_or_after(Timestamp::from_nanos(since))?
        .seq
        .unwrap_or(head.seq + 1)
        .min(head.seq + 1);
    let mut next = from;
    if from <= head.seq {
        for e in ledger.events(from, head.seq)? {
            let e = e?;
            if matches!(
                e.event.kind,
                EventKind::NotificationDelivered | EventKind::NotificationFailed
            ) && let Ok(o) = events::decode::<NotificationOutcome>(&e.event)
                && o.webhook == name
            {
                next = next.max(o.event_seq + 1);
            }
        }
    }
    Ok(next)
}

/// One webhook following the log until `stop`.
async fn follow(ledger: Arc<Ledger>, hook: WebhookConfig, admin_url: Option<String>, stop: Arc<AtomicBool>) {
    let target = match resolve(&hook) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(webhook = %hook.name, "webhook stopped: {e}");
            return;
        }
    };
    // A redirect is a failure, not followed: it would carry the hook's
    // headers (secrets by reference) to wherever it points.
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(webhook = %hook.name, "webhook stopped: cannot build its HTTP client: {e}");
            return;
        }
    };
    let max_age = Duration::from_secs(hook.max_age_sec);
    let l = Arc::clone(&ledger);
    let name = hook.name.clone();
    let mut next = match tokio::task::spawn_blocking(move || resume_from(&l, &name, max_age)).await {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => {
            tracing::error!(webhook = %hook.name, "webhook stopped: reading the ledger: {e}");
            return;
        }
        Err(e) => {
            tracing::error!(webhook = %hook.name, "webhook stopped: {e}");
            return;
        }
    };
    tracing::info!(webhook = %hook.name, url = %safe_url(&target.url), from = next, "webhook following the log");
    while !stop.load(Ordering::Relaxed) {
        let head = ledger.head().seq;
        if next > head {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let to = head.min(next + 999);
        let l = Arc::clone(&ledger);
        let from = next;
        let batch = tokio::task::spawn_blocking(move || -> Result<Vec<SealedEvent>, ledger::Error> {
            l.events(from, to)?.collect()
        })
        .await;
        let batch = match batch {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                tracing::error!(webhook = %hook.name, "webhook: reading the ledger at seq {from}: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => {
                tracing::error!(webhook = %hook.name, "webhook stopped: {e}");
                return;
            }
        };
        for e in batch {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let Some(topic) = hook.topic(&e) else {
                next = e.event.seq + 1;
                continue;
            };
            let age = Timestamp::now().as_nanos().saturating_sub(e.event.ts.as_nanos());
            if u128::from(age) > max_age.as_nanos() {
                next = e.event.seq + 1;
                continue;
            }
            let (_, body) = message(&hook, admin_url.as_deref(), topic, &e);
            let d = deliver(&client, &hook, &target, &body, &stop).await;
            if !d.delivered && stop.load(Ordering::Relaxed) {
                // Cut off by the shutdown: sent again after the restart,
                // not recorded as failed.
                return;
            }
            if d.delivered {
                tracing::info!(webhook = %hook.name, seq = e.event.seq, attempts = d.attempts, "webhook: delivered");
            } else {
                tracing::warn!(
                    webhook = %hook.name,
                    seq = e.event.seq,
                    attempts = d.attempts,
                    "webhook: gave up: {}",
                    d.error.as_deref().unwrap_or("?")
                );
            }
            record(&ledger, &hook.name, topic, &e, &d, &stop).await;
            next = e.event.seq + 1;
        }
    }
}

/// Writes a delivery's outcome, retrying with backoff until durable or
/// `stop` (a failure is logged; no call waits for it).
async fn record(
    ledger: &Ledger,
    hook: &str,
    topic: NotificationTopic,
    e: &SealedEvent,
    d: &Delivery,
    stop: &AtomicBool,
) {
    let draft = match outcome_draft(hook, topic, e, d) {
        Ok(d) => d,
        Err(err) => {
            tracing::error!(webhook = %hook, "webhook: cannot build the outcome's body: {err}");
            return;
        }
    };
    let mut wait = Duration::from_millis(200);
    loop {
        match ledger.append(draft.clone()).await {
            Ok(_) => return,
            Err(err) => {
                tracing::error!(webhook = %hook, seq = e.event.seq, "webhook: cannot write the outcome (retrying in {wait:?}): {err}");
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                pause(wait, stop).await;
                wait = (wait * 2).min(Duration::from_secs(30));
            }
        }
    }
}

fn resolve(hook: &WebhookConfig) -> Result<Target, String> {
    let at = format!("webhooks {:?}", hook.name);
    let url = hook.url.resolve().map_err(|e| format!("{at}: url: {e:#}"))?;
    check_url(&at, &url)?;
    let mut map = reqwest::header::HeaderMap::new();
    for (k, v) in &hook.headers {
        let value = v
            .resolve()
            .map_err(|e| format!("webhooks {:?} headers.{k}: {e:#}", hook.name))?;
        let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
            .map_err(|e| format!("webhooks {:?} headers.{k}: {e}", hook.name))?;
        let value = reqwest::header::HeaderValue::from_str(&value)
            .map_err(|_| format!("webhooks {:?} headers.{k}: not a valid header value", hook.name))?;
        map.insert(name, value);
    }
    Ok(Target { url, headers: map })
}

/// Starts every webhook on one thread with a runtime of its own
/// (`sealgate-notify`), until `stop`. The headers are checked now, so a
/// reference that cannot be read stops the start.
pub fn spawn(
    ledger: Arc<Ledger>,
    hooks: &[WebhookConfig],
    default_admin_url: Option<&str>,
    stop: Arc<AtomicBool>,
) -> Result<Option<std::thread::JoinHandle<()>>, String> {
    if hooks.is_empty() {
        return Ok(None);
    }
    for h in hooks {
        h.check()?;
        resolve(h)?;
    }
    let hooks = hooks.to_vec();
    let default_admin_url = default_admin_url.map(|u| u.trim_end_matches('/').to_owned());
    std::thread::Builder::new()
        .name("sealgate-notify".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("webhooks: cannot start their runtime: {e}");
                    return;
                }
            };
            rt.block_on(async {
                let tasks: Vec<_> = hooks
                    .into_iter()
                    .map(|h| {
                        let admin = h
                            .admin_url
                            .as_deref()
                            .map(|u| u.trim_end_matches('/').to_owned())
                            .or_else(|| default_admin_url.clone());
                        tokio::spawn(follow(Arc::clone(&ledger), h, admin, Arc::clone(&stop)))
                    })
                    .collect();
                for t in tasks {
                    let _ = t.await;
                }
            });
        })
        .map(Some)
        .map_err(|e| format!("cannot start the webhooks thread: {e}"))
}

#[cfg(test)]
mod slack_tests {
    #[test]
    fn slack_text_cannot_make_links_or_mentions() {
        assert_eq!(
            super::slack_escaped("server <https://evil|Approve> & <!channel>"),
            "server &lt;https://evil|Approve&gt; &amp; &lt;!channel&gt;"
        );
    }
}

#[cfg(test)]
mod message_tests {
    use super::*;

    fn approval_requested() -> SealedEvent {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/events/written-2026-12-07h.jsonl"
        );
        let text = std::fs::read_to_string(path).expect("golden file");
        let line = text
            .lines()
            .find(|l| l.contains("\"kind\":\"approval.requested\""))
            .expect("an approval.requested event");
        // The message reads the envelope only: a record with a zero hash
        // and signature (decoding checks the format, not the chain).
        let mut record = vec![ledger::RECORD_VERSION];
        record.extend([0u8; 32 + 64]);
        record.extend(ledger::Value::from_json_str(line).expect("event").to_canonical());
        SealedEvent::decode(&record).expect("record")
    }

    fn hook() -> WebhookConfig {
        toml::from_str("name = \"ops\"\nurl = \"https://hooks.example.com/x\"").expect("hook")
    }

    /// With an admin API, the message carries the commands and links; with
    /// none (a stdio host), it names the approval and links nothing.
    #[test]
    fn approval_links_name_the_admin_api_or_nothing() {
        let e = approval_requested();
        let (text, body) = message(&hook(), Some("https://gw.example.com"), NotificationTopic::Approval, &e);
        assert!(text.contains("--api https://gw.example.com"), "{text}");
        assert!(
            body["approval"]["approve_url"]
                .as_str()
                .is_some_and(|u| u.starts_with("https://gw.example.com/"))
        );
        let (text, body) = message(&hook(), None, NotificationTopic::Approval, &e);
        assert!(!text.contains("--api") && !text.contains("http"), "{text}");
        assert!(text.contains("Approval waiting"), "{text}");
        for key in [
            "approve_url",
            "deny_url",
            "approvals_url",
            "approve_command",
            "deny_command",
        ] {
            assert!(body["approval"].get(key).is_none(), "{key} in {body}");
        }
    }
}
