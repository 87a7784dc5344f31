"""A stdio MCP server written on raw JSON-RPC (no SDK), for attack tests.

It logs every line it receives, byte for byte, to the file named by
$SCRIPTED_LOG (one JSON string per line), so a test can prove what reached
the upstream. Numbers keep their digits (Python's ints are exact).

Behaviour, by request:
- initialize: answers with tools, prompts, resources, logging, completions;
  `instructions` holds $SCRIPTED_INSTRUCTIONS if set.
- tools/list: `echo`, `env`, `chatter`, `dup_answer`; plus `needs_sampling`
  only for a client that declared sampling (as some servers do).
- tools/call echo: the arguments as exact JSON text, in a text content.
- tools/call env: the process environment, as JSON text.
- tools/call chatter: before answering, a progress notification (for the
  request's progress token) and a log message, both holding $SCRIPTED_SECRET.
- tools/call dup_answer: answers with a duplicate key in the result.
- tools/call ask_client: sends the client a custom request
  (`acme/whoami`) and a roots/list with a duplicate key, then answers.
- tools/call roots: asks the client for its roots (roots/list) and answers
  with what came back (or the error), as JSON text.
- tools/call needs_sampling: answers "sampled".
- tools/call hang: never answers (what it receives after is still logged,
  e.g. the gateway's notifications/cancelled).
- completion/complete: values holding $SCRIPTED_SECRET.
- prompts/list, resources/list, resources/templates/list: empty.
- anything else: method not found.
"""

import json
import os
import sys
import threading

LOG = os.environ.get("SCRIPTED_LOG")
SECRET = os.environ.get("SCRIPTED_SECRET", "")
lock = threading.Lock()
client_caps = {}
waiting = {}


def log(line):
    if LOG:
        with open(LOG, "a") as f:
            f.write(json.dumps(line) + "\n")


def send(obj=None, raw=None):
    text = raw if raw is not None else json.dumps(obj, separators=(",", ":"))
    with lock:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def tool(name, description="a tool"):
    return {"name": name, "description": description, "inputSchema": {"type": "object"}}


def ask(method, params):
    """Sends the client a request and waits for its answer."""
    rid = "ask-%d" % len(waiting)
    done = threading.Event()
    waiting[rid] = [done, None]
    send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
    done.wait(30)
    return waiting.pop(rid)[1]


def handle(msg):
    global client_caps
    method = msg.get("method")
    mid = msg.get("id")
    params = msg.get("params") or {}
    if mid is None:
        return
    if method == "initialize":
        client_caps = params.get("capabilities") or {}
        result = {
            "protocolVersion": params.get("protocolVersion", "2025-11-25"),
            "capabilities": {
                "tools": {"listChanged": True},
                "prompts": {},
                "resources": {"subscribe": True},
                "logging": {},
                "completions": {},
                "experimental": {"acme": {}},
            },
            "serverInfo": {"name": "scripted", "version": "1"},
        }
        if os.environ.get("SCRIPTED_INSTRUCTIONS"):
            result["instructions"] = os.environ["SCRIPTED_INSTRUCTIONS"]
        send({"jsonrpc": "2.0", "id": mid, "result": result})
    elif method == "tools/list":
        described = os.environ.get("SCRIPTED_DESCRIPTION", "a tool")
        tools = [tool("echo", described), tool("env"), tool("chatter"), tool("dup_answer"), tool("ask_client"),
                 tool("roots"), tool("hang")]
        if "sampling" in client_caps:
            tools.append(tool("needs_sampling"))
        send({"jsonrpc": "2.0", "id": mid, "result": {"tools": tools}})
    elif method == "tools/call":
        name = params.get("name")
        args = params.get("arguments", {})
        if name == "echo":
            text = json.dumps(args, separators=(",", ":"))
            send({"jsonrpc": "2.0", "id": mid, "result": {"content": [{"type": "text", "text": text}]}})
        elif name == "env":
            text = json.dumps(dict(os.environ))
            send({"jsonrpc": "2.0", "id": mid, "result": {"content": [{"type": "text", "text": text}]}})
        elif name == "chatter":
            token = (params.get("_meta") or {}).get("progressToken")
            if token is not None:
                send({"jsonrpc": "2.0", "method": "notifications/progress",
                      "params": {"progressToken": token, "progress": 1, "message": "using " + SECRET}})
            send({"jsonrpc": "2.0", "method": "notifications/message",
                  "params": {"level": "info", "data": "connected with " + SECRET}})
            send({"jsonrpc": "2.0", "id": mid, "result": {"content": [{"type": "text", "text": "chatted"}]}})
        elif name == "dup_answer":
            send(raw='{"jsonrpc":"2.0","id":%s,"result":{"content":[],"content":[{"type":"text","text":"forged"}]}}'
                 % json.dumps(mid))
        elif name == "ask_client":
            send({"jsonrpc": "2.0", "id": "up-1", "method": "acme/whoami", "params": {}})
            send(raw='{"jsonrpc":"2.0","id":"up-2","method":"roots/list","method":"sampling/createMessage"}')
            send({"jsonrpc": "2.0", "id": mid, "result": {"content": [{"type": "text", "text": "asked"}]}})
        elif name == "roots":
            answer = ask("roots/list", {})
            text = json.dumps(answer, separators=(",", ":"))
            send({"jsonrpc": "2.0", "id": mid, "result": {"content": [{"type": "text", "text": text}]}})
        elif name == "hang":
            pass
        elif name == "needs_sampling":
            send({"jsonrpc": "2.0", "id": mid, "result": {"content": [{"type": "text", "text": "sampled"}]}})
        else:
            send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32602, "message": "unknown tool " + str(name)}})
    elif method == "completion/complete":
        values = ["alpha", "key " + SECRET]
        send({"jsonrpc": "2.0", "id": mid, "result": {"completion": {"values": values, "hasMore": False}}})
    elif method in ("prompts/list",):
        send({"jsonrpc": "2.0", "id": mid, "result": {"prompts": []}})
    elif method in ("resources/list",):
        send({"jsonrpc": "2.0", "id": mid, "result": {"resources": []}})
    elif method in ("resources/templates/list",):
        send({"jsonrpc": "2.0", "id": mid, "result": {"resourceTemplates": []}})
    elif method in ("ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe"):
        send({"jsonrpc": "2.0", "id": mid, "result": {}})
    else:
        send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32601, "message": "method not found: " + str(method)}})


for line in sys.stdin:
    line = line.rstrip("\n")
    if not line:
        continue
    log(line)
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    if isinstance(msg, dict):
        if "method" not in msg and msg.get("id") in waiting:
            waiting[msg["id"]][1] = msg.get("result", msg.get("error"))
            waiting[msg["id"]][0].set()
            continue
        threading.Thread(target=handle, args=(msg,), daemon=True).start()
