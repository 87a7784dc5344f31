//! What the relay recognises: JSON-RPC 2.0 messages as MCP uses them, and
//! the closed catalogue of MCP methods it relays, each with the shape its
//! params (and results) must have.
//!
//! Deny by default: a message is relayed only once it has been recognised
//! here. JSON that is not one JSON-RPC message (batches included: MCP
//! removed them in 2025-06-18), members JSON-RPC does not define, a known
//! method whose params do not parse as that method's, and a method that is
//! not in the catalogue for its direction are all refused. The params are
//! checked against the official Rust SDK's types (`rmcp::model`), by the
//! method named, never by trying types in turn: an untagged union falls
//! through to "custom request" on a malformed `tools/call`.

use serde::de::DeserializeOwned;

use crate::json::{self, Json};

/// A JSON-RPC request id: a string or an integer (MCP forbids null), kept
/// as sent.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Id {
    /// The integer's text.
    Int(Box<str>),
    Str(String),
}

impl Id {
    pub fn to_json(&self) -> Json {
        match self {
            Id::Int(text) => Json::Number(text.clone()),
            Id::Str(s) => Json::String(s.clone()),
        }
    }

    /// An id read from a JSON value (an `id` or a `requestId` member).
    pub fn read(v: &Json) -> Option<Id> {
        match v {
            Json::String(s) => Some(Id::Str(s.clone())),
            // Integers only: no fraction, no exponent.
            Json::Number(text) if text.bytes().all(|b| b.is_ascii_digit() || b == b'-') => Some(Id::Int(text.clone())),
            _ => None,
        }
    }

    pub fn int(n: i64) -> Id {
        Id::Int(n.to_string().into())
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Id::Int(text) => f.write_str(text),
            Id::Str(s) => f.write_str(s),
        }
    }
}

/// One JSON-RPC message.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    Request {
        id: Id,
        method: String,
        params: Option<Json>,
    },
    Notification {
        method: String,
        params: Option<Json>,
    },
    Response {
        id: Id,
        result: Json,
    },
    /// `id` is absent when the error answers a message whose id could not
    /// be read.
    Error {
        id: Option<Id>,
        error: RpcError,
    },
}

/// A JSON-RPC error object.
#[derive(Clone, Debug, PartialEq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub data: Option<Json>,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    pub fn with_data(mut self, data: Json) -> RpcError {
        self.data = Some(data);
        self
    }

    pub fn to_json(&self) -> Json {
        let mut members = vec![
            ("code".to_string(), Json::Number(self.code.to_string().into())),
            ("message".to_string(), Json::String(self.message.clone())),
        ];
        if let Some(data) = &self.data {
            members.push(("data".to_string(), data.clone()));
        }
        Json::Object(members)
    }
}

/// JSON-RPC's own error codes.
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
}

/// Why a message was not recognised: the JSON-RPC error it is answered
/// with (when it can be answered), and the id it carried, if readable.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    pub id: Option<Id>,
    pub method: Option<String>,
    pub error: RpcError,
}

impl Refusal {
    fn new(id: Option<Id>, method: Option<String>, code: i64, message: String) -> Refusal {
        Refusal {
            id,
            method,
            error: RpcError::new(code, message),
        }
    }

    /// The error response for it.
    pub fn answer(&self) -> Message {
        Message::Error {
            id: self.id.clone(),
            error: self.error.clone(),
        }
    }
}

/// At most 64 bytes of a text quoted in an error.
fn clip(text: &str) -> String {
    let mut cut = text.len().min(64);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    if cut < text.len() {
        format!("{}…", &text[..cut])
    } else {
        text.to_string()
    }
}

impl Message {
    /// Reads one message from bytes: strict JSON, then strict JSON-RPC.
    pub fn parse(bytes: &[u8]) -> Result<Message, Refusal> {
        let value = json::parse(bytes).map_err(|e| {
            // The id a lenient reader sees, so the refusal can answer (or
            // fail) the request it names. Never used to relay anything.
            let lenient = serde_json::from_slice::<serde_json::Value>(bytes).ok();
            let id = lenient
                .as_ref()
                .and_then(|v| v.get("id"))
                .map(Json::from_serde)
                .as_ref()
                .and_then(Id::read);
            let method = lenient
                .as_ref()
                .and_then(|v| v.get("method"))
                .and_then(|m| m.as_str())
                .map(str::to_string);
            Refusal::new(
                id,
                method,
                code::PARSE_ERROR,
                format!("parse error: not a json text: {e}"),
            )
        })?;
        Message::from_json(value)
    }

    pub fn from_json(value: Json) -> Result<Message, Refusal> {
        let members = match value {
            Json::Object(members) => members,
            Json::Array(_) => {
                return Err(Refusal::new(
                    None,
                    None,
                    code::INVALID_REQUEST,
                    "invalid request: json-rpc batches are not accepted (mcp removed them in 2025-06-18)".into(),
                ));
            }
            _ => {
                return Err(Refusal::new(
                    None,
                    None,
                    code::INVALID_REQUEST,
                    "invalid request: a json-rpc message is an object".into(),
                ));
            }
        };
        let mut jsonrpc = None;
        let mut id = None;
        let mut method = None;
        let mut params = None;
        let mut result = None;
        let mut error = None;
        let mut unknown = Vec::new();
        for (k, v) in members {
            match k.as_str() {
                "jsonrpc" => jsonrpc = Some(v),
                "id" => id = Some(v),
                "method" => method = Some(v),
                "params" => params = Some(v),
                "result" => result = Some(v),
                "error" => error = Some(v),
                _ => unknown.push(k),
            }
        }
        // Ids and method names are recorded in every event of a message:
        // longer than a ledger name field may be, they are refused here.
        let read_id = id
            .as_ref()
            .and_then(Id::read)
            .filter(|i| i.to_string().len() <= ledger::MAX_NAME_LEN);
        let method_name = method
            .as_ref()
            .and_then(|m| m.as_str().map(str::to_string))
            .filter(|m| m.len() <= ledger::MAX_NAME_LEN);
        let refuse = |message: String| {
            Refusal::new(
                read_id.clone(),
                method_name.clone(),
                code::INVALID_REQUEST,
                format!("invalid request: {message}"),
            )
        };
        if jsonrpc != Some(Json::String("2.0".into())) {
            return Err(refuse("\"jsonrpc\" must be \"2.0\"".into()));
        }
        if !unknown.is_empty() {
            return Err(refuse(format!(
                "members json-rpc does not define: {}",
                unknown.join(", ")
            )));
        }
        // `"id": null` only on an error about a message whose id could not
        // be read.
        let null_error = id == Some(Json::Null) && error.is_some() && method.is_none();
        if let Some(v) = &id
            && read_id.is_none()
            && !null_error
        {
            return Err(refuse(match Id::read(v) {
                Some(_) => format!("\"id\" is longer than {} bytes", ledger::MAX_NAME_LEN),
                None => format!("\"id\" must be a string or an integer, not {}", clip(&v.to_text())),
            }));
        }
        match (method, result, error) {
            (Some(m), None, None) => {
                let Some(name) = method_name.clone() else {
                    return Err(refuse(match m.as_str() {
                        Some(_) => format!("\"method\" is longer than {} bytes", ledger::MAX_NAME_LEN),
                        None => format!("\"method\" must be a string, not {}", clip(&m.to_text())),
                    }));
                };
                if let Some(p) = &params
                    && !p.is_object()
                {
                    return Err(refuse(format!("{name}: \"params\" must be an object")));
                }
                Ok(match read_id {
                    Some(id) => Message::Request {
                        id,
                        method: name,
                        params,
                    },
                    None => Message::Notification { method: name, params },
                })
            }
            (None, Some(result), None) => {
                let Some(id) = read_id.clone() else {
                    return Err(refuse("a response needs an \"id\"".into()));
                };
                if params.is_some() {
                    return Err(refuse("a response has no \"params\"".into()));
                }
                if !result.is_object() {
                    return Err(refuse("\"result\" must be an object".into()));
                }
                Ok(Message::Response { id, result })
            }
            (None, None, Some(error)) => {
                if params.is_some() {
                    return Err(refuse("an error response has no \"params\"".into()));
                }
                let code = error.get("code").and_then(Json::as_i64);
                let message = error.get("message").and_then(Json::as_str);
                let extra = error.as_object().is_some_and(|m| {
                    m.iter()
                        .any(|(k, _)| !matches!(k.as_str(), "code" | "message" | "data"))
                });
                match (code, message, extra) {
                    (Some(code), Some(message), false) => Ok(Message::Error {
                        id: read_id,
                        error: RpcError {
                            code,
                            message: message.to_string(),
                            data: error.get("data").cloned(),
                        },
                    }),
                    _ => Err(refuse(
                        "\"error\" must be an object with an integer \"code\", a string \"message\" and optionally \"data\""
                            .into(),
                    )),
                }
            }
            _ => Err(refuse(
                "a message has exactly one of \"method\", \"result\" or \"error\"".into(),
            )),
        }
    }

    pub fn to_json(&self) -> Json {
        let mut members = vec![("jsonrpc".to_string(), Json::str("2.0"))];
        match self {
            Message::Request { id, method, params } => {
                members.push(("id".into(), id.to_json()));
                members.push(("method".into(), Json::String(method.clone())));
                if let Some(p) = params {
                    members.push(("params".into(), p.clone()));
                }
            }
            Message::Notification { method, params } => {
                members.push(("method".into(), Json::String(method.clone())));
                if let Some(p) = params {
                    members.push(("params".into(), p.clone()));
                }
            }
            Message::Response { id, result } => {
                members.push(("id".into(), id.to_json()));
                members.push(("result".into(), result.clone()));
            }
            Message::Error { id, error } => {
                members.push(("id".into(), id.as_ref().map_or(Json::Null, Id::to_json)));
                members.push(("error".into(), error.to_json()));
            }
        }
        Json::Object(members)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_json().to_bytes()
    }

    pub fn notification(method: &str, params: Json) -> Message {
        Message::Notification {
            method: method.to_string(),
            params: Some(params),
        }
    }
}

/// Who sends a method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client to server: through the gateway, downstream to upstream.
    Up,
    /// Server to client.
    Down,
}

/// What the relay does with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// `initialize`: opens the session.
    Initialize,
    /// `ping`: relayed, carries nothing.
    Ping,
    /// Moves data or acts: request and decision recorded before it is
    /// forwarded, outcome before it is answered (`tools/call`,
    /// `resources/read`, `prompts/get`).
    Call,
    /// Changes the session or reveals data without being a call
    /// (`completion/complete`, `resources/subscribe`, `resources/unsubscribe`,
    /// `logging/setLevel`, allowed custom methods): gated and recorded as
    /// calls are.
    Gated,
    /// `tools/list`, `prompts/list`, `resources/list`,
    /// `resources/templates/list`: filtered to what the caller may use, and
    /// recorded.
    Listing,
    /// Server-to-client requests that move data (`sampling/createMessage`,
    /// `elicitation/create`, `roots/list`): recorded as calls are.
    ServerCall,
}

/// One method of the catalogue.
pub struct Method {
    pub name: &'static str,
    pub direction: Direction,
    pub class: Class,
    /// The client capability a server-to-client request needs.
    pub client_capability: Option<&'static str>,
    check_params: fn(&Json) -> Result<(), String>,
    check_result: fn(&Json) -> Result<(), String>,
}

impl Method {
    /// Checks a request's params against the method's shape. Absent params
    /// are checked as `{}`.
    pub fn check_params(&self, params: Option<&Json>) -> Result<(), String> {
        let empty = Json::Object(Vec::new());
        let params = params.unwrap_or(&empty);
        // What a call names (tool, prompt, resource) is recorded as a name
        // field of the event; a longer one could not be recorded.
        for key in ["name", "uri"] {
            if let Some(Json::String(named)) = params.get(key)
                && named.len() > ledger::MAX_NAME_LEN
                && self.direction == Direction::Up
            {
                return Err(format!(
                    "{}: params do not fit: {key:?} is longer than {} bytes",
                    self.name,
                    ledger::MAX_NAME_LEN
                ));
            }
        }
        // A task-augmented request (2025-11-25) is answered with a task and
        // runs on in the background, to be fetched with `tasks/result`: the
        // gateway relays no tasks, so it would record a call as failed while
        // it runs and hold it to none of its constraints.
        if params.get("task").is_some() {
            return Err(format!(
                "{}: params do not fit: \"task\": sealgate relays no tasks (task-augmented requests)",
                self.name
            ));
        }
        // Deny by default within params too: a member the request event
        // would not record is not forwarded.
        if let (Some(allowed), Some(members)) = (params_members(self.name, self.direction), params.as_object())
            && let Some((extra, _)) = members.iter().find(|(k, _)| !allowed.contains(&k.as_str()))
        {
            return Err(format!(
                "{}: params do not fit: member {extra:?} is not relayed (known: {})",
                self.name,
                allowed.join(", ")
            ));
        }
        (self.check_params)(params).map_err(|e| format!("{}: params do not fit: {e}", self.name))
    }

    /// Checks a result against the method's result shape.
    pub fn check_result(&self, result: &Json) -> Result<(), String> {
        (self.check_result)(result).map_err(|e| format!("{}: result does not fit: {e}", self.name))
    }
}

/// The params members a client request may carry, for the methods whose
/// request event records less than the whole params (`None`: any; the
/// whole params are recorded, or the method is the server's).
fn params_members(method: &str, direction: Direction) -> Option<&'static [&'static str]> {
    if direction != Direction::Up {
        return None;
    }
    Some(match method {
        "tools/call" | "prompts/get" => &["name", "arguments", "_meta"],
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => &["uri", "_meta"],
        "tools/list" | "prompts/list" | "resources/list" | "resources/templates/list" => &["cursor", "_meta"],
        "ping" => &["_meta"],
        _ => return None,
    })
}

fn shape<T: DeserializeOwned>(v: &Json) -> Result<(), String> {
    serde_json::from_value::<T>(v.to_serde_typed())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Params that are an object and nothing more is known of (`_meta` only).
fn object(v: &Json) -> Result<(), String> {
    match v {
        Json::Object(_) => match v.get("_meta") {
            None | Some(Json::Object(_)) => Ok(()),
            Some(_) => Err("\"_meta\" must be an object".into()),
        },
        _ => Err("expected an object".into()),
    }
}

/// A resource URI a grant or a rule is matched against, as text: one whose
/// path has a dot segment (`.` or `..`; also percent-encoded, behind an
/// encoded slash or a backslash, or before a query or fragment) is refused,
/// since the server resolves it to another resource than the one matched
/// (`file:///home/*/notes/*` matches `file:///home/a/notes/../../../etc/shadow`).
fn resource_uri(uri: Option<&Json>) -> Result<(), String> {
    let Some(uri) = uri.and_then(Json::as_str) else {
        return Ok(());
    };
    // Decoded until nothing changes (a server may decode more than once),
    // a few times at most: each pass costs the whole text.
    let mut decoded = uri.to_string();
    let mut passes = 0;
    loop {
        let next = percent_decode(&decoded);
        if next == decoded {
            break;
        }
        passes += 1;
        if passes > 3 {
            return Err(format!(
                "the resource uri {uri:?} is percent-encoded more than three times over"
            ));
        }
        decoded = next;
    }
    let dot = |s: &str| matches!(s, "." | "..");
    let has_dot_segment = decoded
        .split(['/', '\\'])
        .any(|segment| dot(segment) || dot(segment.split(['?', '#']).next().unwrap_or("")));
    if has_dot_segment {
        return Err(format!(
            "the resource uri {uri:?} has a dot segment (\".\" or \"..\") in its path, which a server resolves to another resource than the one granted"
        ));
    }
    Ok(())
}

/// `%XX` escapes decoded (invalid UTF-8 replaced); anything else as is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[allow(
    deprecated,
    reason = "roots and logging are deprecated by SEP-2577 but still relayed"
)]
mod shapes {
    use super::*;
    use rmcp::model as m;

    pub fn initialize(v: &Json) -> Result<(), String> {
        shape::<m::InitializeRequestParams>(v)
    }
    pub fn initialize_result(v: &Json) -> Result<(), String> {
        shape::<m::InitializeResult>(v)
    }
    pub fn call_tool(v: &Json) -> Result<(), String> {
        shape::<m::CallToolRequestParams>(v)
    }
    pub fn call_tool_result(v: &Json) -> Result<(), String> {
        shape::<m::CallToolResult>(v)
    }
    pub fn read_resource(v: &Json) -> Result<(), String> {
        shape::<m::ReadResourceRequestParams>(v)?;
        resource_uri(v.get("uri"))
    }
    pub fn read_resource_result(v: &Json) -> Result<(), String> {
        shape::<m::ReadResourceResult>(v)
    }
    pub fn get_prompt(v: &Json) -> Result<(), String> {
        shape::<m::GetPromptRequestParams>(v)
    }
    pub fn get_prompt_result(v: &Json) -> Result<(), String> {
        shape::<m::GetPromptResult>(v)
    }
    pub fn complete(v: &Json) -> Result<(), String> {
        shape::<m::CompleteRequestParams>(v)?;
        resource_uri(v.get("ref").and_then(|r| r.get("uri")))
    }
    pub fn complete_result(v: &Json) -> Result<(), String> {
        shape::<m::CompleteResult>(v)
    }
    pub fn set_level(v: &Json) -> Result<(), String> {
        shape::<m::SetLevelRequestParams>(v)
    }
    pub fn subscribe(v: &Json) -> Result<(), String> {
        shape::<m::SubscribeRequestParams>(v)?;
        resource_uri(v.get("uri"))
    }
    pub fn unsubscribe(v: &Json) -> Result<(), String> {
        shape::<m::UnsubscribeRequestParams>(v)?;
        resource_uri(v.get("uri"))
    }
    pub fn paginated(v: &Json) -> Result<(), String> {
        shape::<m::PaginatedRequestParams>(v)
    }
    /// A listing that names a tool twice is refused, as a duplicate key
    /// is: clients keep one of the two definitions (the first, the last,
    /// or both for the model to read), and the gateway's filter and pins
    /// would judge another.
    pub fn list_tools_result(v: &Json) -> Result<(), String> {
        shape::<m::ListToolsResult>(v)?;
        let mut seen = std::collections::HashSet::new();
        for tool in v.get("tools").and_then(Json::as_array).into_iter().flatten() {
            if let Some(name) = tool.get("name").and_then(Json::as_str)
                && !seen.insert(name)
            {
                return Err(format!("the tool {name:?} is listed twice"));
            }
        }
        Ok(())
    }
    pub fn list_prompts_result(v: &Json) -> Result<(), String> {
        shape::<m::ListPromptsResult>(v)
    }
    pub fn list_resources_result(v: &Json) -> Result<(), String> {
        shape::<m::ListResourcesResult>(v)
    }
    pub fn list_templates_result(v: &Json) -> Result<(), String> {
        shape::<m::ListResourceTemplatesResult>(v)
    }
    pub fn create_message(v: &Json) -> Result<(), String> {
        shape::<m::CreateMessageRequestParams>(v)
    }
    pub fn create_message_result(v: &Json) -> Result<(), String> {
        shape::<m::CreateMessageResult>(v)
    }
    pub fn elicit(v: &Json) -> Result<(), String> {
        shape::<m::ElicitRequestParams>(v)
    }
    pub fn elicit_result(v: &Json) -> Result<(), String> {
        shape::<m::ElicitResult>(v)
    }
    pub fn list_roots_result(v: &Json) -> Result<(), String> {
        shape::<m::ListRootsResult>(v)
    }
    pub fn progress(v: &Json) -> Result<(), String> {
        shape::<m::ProgressNotificationParam>(v)
    }
    pub fn cancelled(v: &Json) -> Result<(), String> {
        shape::<m::CancelledNotificationParam>(v)
    }
    pub fn logging(v: &Json) -> Result<(), String> {
        shape::<m::LoggingMessageNotificationParam>(v)
    }
    pub fn resource_updated(v: &Json) -> Result<(), String> {
        shape::<m::ResourceUpdatedNotificationParam>(v)
    }
}

macro_rules! method {
    ($name:literal, $dir:ident, $class:ident, $params:path, $result:path) => {
        Method {
            name: $name,
            direction: Direction::$dir,
            class: Class::$class,
            client_capability: None,
            check_params: $params,
            check_result: $result,
        }
    };
    ($name:literal, $dir:ident, $class:ident, $params:path, $result:path, $capability:literal) => {
        Method {
            name: $name,
            direction: Direction::$dir,
            class: Class::$class,
            client_capability: Some($capability),
            check_params: $params,
            check_result: $result,
        }
    };
}

/// Every request method the gateway relays.
pub static METHODS: &[Method] = &[
    method!(
        "initialize",
        Up,
        Initialize,
        shapes::initialize,
        shapes::initialize_result
    ),
    method!("ping", Up, Ping, object, object),
    method!("tools/call", Up, Call, shapes::call_tool, shapes::call_tool_result),
    method!(
        "resources/read",
        Up,
        Call,
        shapes::read_resource,
        shapes::read_resource_result
    ),
    method!("prompts/get", Up, Call, shapes::get_prompt, shapes::get_prompt_result),
    method!(
        "completion/complete",
        Up,
        Gated,
        shapes::complete,
        shapes::complete_result
    ),
    method!("logging/setLevel", Up, Gated, shapes::set_level, object),
    method!("resources/subscribe", Up, Gated, shapes::subscribe, object),
    method!("resources/unsubscribe", Up, Gated, shapes::unsubscribe, object),
    method!("tools/list", Up, Listing, shapes::paginated, shapes::list_tools_result),
    method!(
        "prompts/list",
        Up,
        Listing,
        shapes::paginated,
        shapes::list_prompts_result
    ),
    method!(
        "resources/list",
        Up,
        Listing,
        shapes::paginated,
        shapes::list_resources_result
    ),
    method!(
        "resources/templates/list",
        Up,
        Listing,
        shapes::paginated,
        shapes::list_templates_result
    ),
    method!("ping", Down, Ping, object, object),
    method!(
        "sampling/createMessage",
        Down,
        ServerCall,
        shapes::create_message,
        shapes::create_message_result,
        "sampling"
    ),
    method!(
        "elicitation/create",
        Down,
        ServerCall,
        shapes::elicit,
        shapes::elicit_result,
        "elicitation"
    ),
    method!(
        "roots/list",
        Down,
        ServerCall,
        object,
        shapes::list_roots_result,
        "roots"
    ),
];

/// The catalogue entry of a request method in a direction.
pub fn method(name: &str, direction: Direction) -> Option<&'static Method> {
    METHODS.iter().find(|m| m.name == name && m.direction == direction)
}

/// Whether `name` is a method of the MCP specification (any version the
/// gateway knows, either direction, requests and notifications): such a
/// name is never relayed as a custom method, so a malformed standard
/// request cannot pass as an allowed custom one.
pub fn is_mcp_method(name: &str) -> bool {
    METHODS.iter().any(|m| m.name == name)
        || NOTIFICATIONS.iter().any(|n| n.name == name)
        || RESERVED.contains(&name)
        || name.starts_with("notifications/")
}

/// Methods of the specification (or its drafts) the gateway does not relay.
const RESERVED: &[&str] = &[
    "server/discover",
    "tasks/get",
    "tasks/list",
    "tasks/result",
    "tasks/cancel",
    "tasks/update",
    "subscriptions/listen",
    "skills/list",
    "skills/get",
    "resources/directory/read",
];

/// A notification of the catalogue.
pub struct NotificationKind {
    pub name: &'static str,
    pub direction: Direction,
    check_params: fn(&Json) -> Result<(), String>,
}

impl NotificationKind {
    pub fn check_params(&self, params: Option<&Json>) -> Result<(), String> {
        let empty = Json::Object(Vec::new());
        (self.check_params)(params.unwrap_or(&empty)).map_err(|e| format!("{}: params do not fit: {e}", self.name))
    }
}

/// Every notification the gateway relays.
pub static NOTIFICATIONS: &[NotificationKind] = &[
    NotificationKind {
        name: "notifications/initialized",
        direction: Direction::Up,
        check_params: object,
    },
    NotificationKind {
        name: "notifications/cancelled",
        direction: Direction::Up,
        check_params: shapes::cancelled,
    },
    NotificationKind {
        name: "notifications/progress",
        direction: Direction::Up,
        check_params: shapes::progress,
    },
    NotificationKind {
        name: "notifications/roots/list_changed",
        direction: Direction::Up,
        check_params: object,
    },
    NotificationKind {
        name: "notifications/cancelled",
        direction: Direction::Down,
        check_params: shapes::cancelled,
    },
    NotificationKind {
        name: "notifications/progress",
        direction: Direction::Down,
        check_params: shapes::progress,
    },
    NotificationKind {
        name: "notifications/message",
        direction: Direction::Down,
        check_params: shapes::logging,
    },
    NotificationKind {
        name: "notifications/resources/updated",
        direction: Direction::Down,
        check_params: shapes::resource_updated,
    },
    NotificationKind {
        name: "notifications/resources/list_changed",
        direction: Direction::Down,
        check_params: object,
    },
    NotificationKind {
        name: "notifications/tools/list_changed",
        direction: Direction::Down,
        check_params: object,
    },
    NotificationKind {
        name: "notifications/prompts/list_changed",
        direction: Direction::Down,
        check_params: object,
    },
];

pub fn notification(name: &str, direction: Direction) -> Option<&'static NotificationKind> {
    NOTIFICATIONS
        .iter()
        .find(|n| n.name == name && n.direction == direction)
}

/// The `_meta.progressToken` of a request's params.
pub fn progress_token(params: Option<&Json>) -> Option<Json> {
    params
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get("progressToken"))
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Message, Refusal> {
        Message::parse(text.as_bytes())
    }

    #[test]
    fn messages_are_read_strictly() {
        let m = parse(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"n":123456789012345678901}}}"#)
            .expect("request");
        let Message::Request { id, method, params } = &m else {
            panic!("{m:?}")
        };
        assert_eq!((id, method.as_str()), (&Id::int(7), "tools/call"));
        assert_eq!(
            params
                .as_ref()
                .and_then(|p| p.pointer("/arguments/n"))
                .map(Json::to_text),
            Some("123456789012345678901".into())
        );
        assert_eq!(
            m.to_json().to_text(),
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"n":123456789012345678901}}}"#
        );
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Ok(Message::Notification { .. })
        ));
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#),
            Ok(Message::Response { .. })
        ));
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#),
            Ok(Message::Error { id: None, .. })
        ));
        assert!(parse(r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#).is_err());
        assert!(parse(r#"{"jsonrpc":"2.0","id":null,"result":{}}"#).is_err());
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32700,"message":"x","data":[1]}}"#),
            Ok(Message::Error { .. })
        ));
    }

    #[test]
    fn what_is_not_one_message_is_refused_with_the_right_code() {
        let cases = [
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","name":"echo"}}"#,
                code::PARSE_ERROR,
            ),
            (r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#, code::INVALID_REQUEST),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"ping","extra":1}"#,
                code::INVALID_REQUEST,
            ),
            (r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#, code::INVALID_REQUEST),
            (r#"{"id":1,"method":"ping"}"#, code::INVALID_REQUEST),
            (r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#, code::INVALID_REQUEST),
            (r#"{"jsonrpc":"2.0","id":1e3,"method":"ping"}"#, code::INVALID_REQUEST),
            (r#"{"jsonrpc":"2.0","id":[1],"method":"ping"}"#, code::INVALID_REQUEST),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":[]}"#,
                code::INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}"#,
                code::INVALID_REQUEST,
            ),
            (r#"{"jsonrpc":"2.0","id":1,"result":[]}"#, code::INVALID_REQUEST),
            (r#"{"jsonrpc":"2.0","result":{}}"#, code::INVALID_REQUEST),
            (r#"{"jsonrpc":"2.0","id":1,"method":7}"#, code::INVALID_REQUEST),
            (
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":"x","message":"m"}}"#,
                code::INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"m","x":1}}"#,
                code::INVALID_REQUEST,
            ),
            ("not json", code::PARSE_ERROR),
        ];
        for (text, want) in cases {
            let refusal = parse(text).expect_err(text);
            assert_eq!(refusal.error.code, want, "{text}: {}", refusal.error.message);
        }
        // The id is kept where it could be read, so the error answers it.
        let r = parse(r#"{"jsonrpc":"2.0","id":"r-1","method":"ping","extra":1}"#).expect_err("extra");
        assert_eq!(r.id, Some(Id::Str("r-1".into())));
    }

    #[test]
    fn params_are_checked_against_the_named_method() {
        let call = method("tools/call", Direction::Up).expect("tools/call");
        let ok = crate::json::parse(br#"{"name":"echo","arguments":{"m":"hi"}}"#).expect("json");
        assert!(call.check_params(Some(&ok)).is_ok());
        for bad in [
            r#"{"arguments":{}}"#,
            r#"{"name":7}"#,
            r#"{"name":"echo","arguments":[1]}"#,
            r#"{"name":"echo","arguments":"x"}"#,
        ] {
            let v = crate::json::parse(bad.as_bytes()).expect("json");
            assert!(call.check_params(Some(&v)).is_err(), "{bad}");
        }
        assert!(call.check_params(None).is_err(), "tools/call needs a name");
        let task = crate::json::parse(br#"{"name":"echo","arguments":{},"task":{"ttl":1000}}"#).expect("json");
        assert!(call.check_params(Some(&task)).is_err(), "a task-augmented call");
        // Names the ledger could not record are refused.
        let long = Json::object([("name", Json::String("x".repeat(ledger::MAX_NAME_LEN + 1)))]);
        assert!(call.check_params(Some(&long)).is_err());
        let long_method = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"{}"}}"#,
            "m".repeat(ledger::MAX_NAME_LEN + 1)
        );
        assert_eq!(
            Message::parse(long_method.as_bytes())
                .expect_err("long method")
                .error
                .code,
            code::INVALID_REQUEST
        );
        let long_id = format!(
            r#"{{"jsonrpc":"2.0","id":"{}","method":"ping"}}"#,
            "i".repeat(ledger::MAX_NAME_LEN + 1)
        );
        assert!(Message::parse(long_id.as_bytes()).is_err());
        // Members the request event would not record are refused.
        let extra = crate::json::parse(br#"{"name":"echo","arguments":{},"inputResponses":{}}"#).expect("json");
        let e = call.check_params(Some(&extra)).expect_err("an unrecorded member");
        assert!(e.contains("inputResponses"), "{e}");
        let meta = crate::json::parse(br#"{"name":"echo","_meta":{"progressToken":1,"acme/x":2}}"#).expect("json");
        assert!(call.check_params(Some(&meta)).is_ok());
        // A number too large for serde_json is still no string.
        let huge = crate::json::parse(br#"{"name":1e400,"arguments":{}}"#).expect("json");
        assert!(call.check_params(Some(&huge)).is_err(), "a number passed for a name");
        let read = method("resources/read", Direction::Up).expect("resources/read");
        assert!(
            read.check_params(Some(&crate::json::parse(br#"{"uri":1}"#).expect("json")))
                .is_err()
        );
        // Resource URIs whose path a server resolves elsewhere.
        for uri in [
            "file:///a/notes/../../etc/shadow",
            "file:///a/notes/%2e%2E/x",
            "file:///a/notes/..%2fx",
            "file:///a/notes/%252e%252e/x",
            "file:///a/notes/..\\x",
            "file:///a/notes/./x",
            "file:///a/notes/..",
            "file:///a/notes/..?x=1",
        ] {
            let v = Json::object([("uri", Json::str(uri))]);
            assert!(read.check_params(Some(&v)).is_err(), "{uri}");
        }
        for uri in [
            "file:///a/notes/todo.txt",
            "file:///a/notes/..hidden",
            "test://static/resource/1",
            "file:///a/%zz",
        ] {
            let v = Json::object([("uri", Json::str(uri))]);
            assert!(read.check_params(Some(&v)).is_ok(), "{uri}");
        }
        let nested = format!("file:///a/%{}2e", "25".repeat(100_000));
        let v = Json::object([("uri", Json::String(nested))]);
        assert!(read.check_params(Some(&v)).is_err(), "encoded over and over");
        let sub = method("resources/subscribe", Direction::Up).expect("subscribe");
        let v = Json::object([("uri", Json::str("file:///a/../b"))]);
        assert!(sub.check_params(Some(&v)).is_err());
        // A listing that names a tool twice.
        let listing = method("tools/list", Direction::Up).expect("tools/list");
        let twice = crate::json::parse(
            br#"{"tools":[{"name":"a","inputSchema":{"type":"object"}},{"name":"a","description":"other","inputSchema":{"type":"object"}}]}"#,
        )
        .expect("json");
        assert!(listing.check_result(&twice).is_err(), "a tool listed twice");
        // A server-to-client method is not a client-to-server one.
        assert!(method("sampling/createMessage", Direction::Up).is_none());
        assert!(method("tools/call", Direction::Down).is_none());
        assert!(is_mcp_method("tools/call") && is_mcp_method("tasks/get") && is_mcp_method("notifications/x"));
        assert!(!is_mcp_method("acme/custom"));
    }
}
