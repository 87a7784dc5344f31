#!/usr/bin/env python3
"""Drive a whole MCP session against a target with a real MCP client (the
Python `mcp` SDK 2.3.0, as installed by tools/peers.sh) and print ONE JSON
object on stdout describing what happened, for the end-to-end tests to assert
on. Exit 0 only if every requested step is ok, 1 otherwise, 2 on bad usage.

  $MCP_PYTHON tools/mcp_scenario.py -- node "$EVERYTHING" stdio
  $MCP_PYTHON tools/mcp_scenario.py http://127.0.0.1:3001/mcp --header 'Authorization: Bearer T'
  $MCP_PYTHON tools/mcp_scenario.py --steps echo,sampling,ping URL
  $MCP_PYTHON tools/mcp_scenario.py --call get-sum --args '{"a": 1, "b": 2}' URL

Scenario mode prints {"ok", "target", "transport", "steps": {STEP: {"ok",
..., "error"?}}, "serverRequests": [{"method", "step"}], "notifications":
{METHOD: count}, "httpErrors"?: [{"method", "status"}], "error"?}. A failed
request's "error" is the JSON-RPC error {"code", "message", "data"?}; any other
failure is {"type", "message"}. One failing step does not stop the others; a
step gets at most --step-timeout seconds, the whole run --timeout seconds. The
client always advertises sampling, elicitation (form and url) and roots, so
that server-everything registers its conditional tools. The steps run in the
order given (`all`: this order), after `initialize`, which always runs:
  list         tools/list (all pages), prompts/list, resources/list,
               resources/templates/list: names and uris
  logging      logging/setLevel debug, then toggle-simulated-logging (on,
               which logs once at once; off) and wait for a notifications/message
  echo         echo {message}; checks the text
  get-sum      get-sum {a, b}; checks the text
  progress     trigger-long-running-operation with a progress callback: count,
               last progress/total, the progress tokens seen
  sampling     trigger-sampling-request; the sampling callback answers
               "sampled by scenario", which must come back in the tool result
  elicitation  trigger-elicitation-request; the elicitation callback accepts
               with a value for every property of the schema it receives
  roots        get-roots-list; must list the client's one root, file:///tmp
  prompts      prompts/get simple-prompt and args-prompt {city, state}
  resources    resources/read of the first listed resource and of the first
               template (resourceId 1); resources/subscribe + unsubscribe if
               the server advertises resources.subscribe
  completion   completion/complete on a prompt argument (with and without
               context) and on a resource template argument
  ping         ping
Each tool call's raw result is recorded (model_dump by_alias, exclude_none,
mode json). The session-wide count of notifications/message is also put in
steps.logging.sessionCount.

Call mode (--call TOOL [--args JSON]) only initializes, lists tools and calls
TOOL: {"ok", "tool", "arguments", "result", ...} (ok is false when the result
has isError), or {"ok": false, "error": {"code", "message", "data"?},
"request"} when a request gets a JSON-RPC error (e.g. a gateway failing
closed), or {"ok": false, "error": {"type", "message"}} on any other failure;
serverRequests, notifications and httpErrors as above.

Targets: an http(s) URL (streamable HTTP; --header 'Name: value' repeatable),
or a stdio command after `--` (it inherits this process's environment).

What @modelcontextprotocol/server-everything 2026.8.31 offers (dist/ under
its package), and what the steps rely on:
  tools (always): echo {message} -> "Echo: <message>"; get-sum {a, b} ->
    "The sum of <a> and <b> is <a+b>."; trigger-long-running-operation
    {duration (s, default 10), steps (default 5)} -> one notifications/progress
    per step {progress: i, total: steps, progressToken}, only if the call
    carries _meta.progressToken (this SDK uses the request id as the token);
    toggle-simulated-logging {} (logs once at once, then every 5 s, at a random
    level); also get-annotated-message, get-env, get-resource-links,
    get-resource-reference, get-structured-content, get-tiny-image,
    gzip-file-as-resource, toggle-subscriber-updates.
  tools registered on notifications/initialized, from the client's
    capabilities: get-roots-list {} (roots), trigger-sampling-request {prompt,
    maxTokens (default 100)} (sampling: one sampling/createMessage inside the
    call; result text "LLM sampling result: <CreateMessageResult JSON>"),
    trigger-elicitation-request {} (elicitation: one elicitation/create, form
    mode, 13 properties, required ["name"]), trigger-url-elicitation
    (elicitation.url), simulate-research-query (task-based); and, only with
    client tasks capabilities, trigger-sampling-request-async and
    trigger-elicitation-request-async.
  server-to-client requests: roots/list 350 ms after notifications/initialized
    (not tied to any client request; then a notifications/message "Roots
    updated: 1 root(s) received from client"), and again from get-roots-list
    if the roots are not cached yet.
  prompts: simple-prompt; args-prompt {city, state?} -> "What's weather in
    <city>, <state>?"; completable-prompt {department, name} (both complete:
    department from Engineering/Sales/Marketing/Support, name depends on the
    department in the context); resource-prompt {resourceType, resourceId}.
  resources: demo://resource/static/document/<file> for each file of dist/docs
    (static, text); templates demo://resource/dynamic/text/{resourceId} and
    demo://resource/dynamic/blob/{resourceId} (resourceId completes to itself
    when a positive integer). resources/subscribe and unsubscribe each send an
    info notifications/message.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import warnings
from collections import Counter
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable

import anyio
from mcp import ClientSession, StdioServerParameters, types
from mcp.client.session import ClientRequestContext
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError

# logging/setLevel and resources/subscribe are deprecated in the 2026-07-28
# protocol, but they are the 2025-11-25 protocol these servers speak.
warnings.filterwarnings("ignore", category=MCPDeprecationWarning)

SAMPLED_TEXT = "sampled by scenario"
ROOT_URI = "file:///tmp"
ELICIT_NAME = "Scenario User"
ALL_STEPS = ("list", "logging", "echo", "get-sum", "progress", "sampling", "elicitation", "roots",
             "prompts", "resources", "completion", "ping")


class CheckFailed(Exception):
    """A request succeeded but its result is not what the scenario expects."""


def expect(cond: bool, message: str) -> None:
    if not cond:
        raise CheckFailed(message)


def dump(model: Any) -> Any:
    return model.model_dump(by_alias=True, exclude_none=True, mode="json")


def texts(result: dict) -> list[str]:
    """The text of every text content item of a dumped tool/prompt result."""
    items = result.get("content", []) or [m.get("content", {}) for m in result.get("messages", [])]
    return [c.get("text", "") for c in items if c.get("type") == "text"]


def describe(exc: BaseException) -> dict[str, Any]:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    if isinstance(exc, MCPError):
        return dump(exc.error)
    return {"type": type(exc).__name__, "message": str(exc)}


def parse_target(spec: list[str]) -> tuple[str, Any]:
    """[URL] -> ('http', URL); a command (one string is split with shlex) -> ('stdio', argv)."""
    if len(spec) == 1 and spec[0].startswith(("http://", "https://")):
        return "http", spec[0]
    argv = shlex.split(spec[0]) if len(spec) == 1 else list(spec)
    if not argv:
        raise ValueError("empty target")
    return "stdio", argv


def parse_headers(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in pairs:
        k, sep, v = p.partition(":")
        if not sep or not k.strip():
            raise ValueError(f"bad header {p!r}, want 'Name: value'")
        out[k.strip()] = v.strip()
    return out


def sample_value(prop: dict[str, Any]) -> Any:
    """A plausible answer for one property of an elicitation form schema."""
    if "default" in prop:
        return prop["default"]
    if "enum" in prop:
        return prop["enum"][0]
    if "oneOf" in prop:
        return prop["oneOf"][0]["const"]
    kind = prop.get("type")
    if kind == "boolean":
        return True
    if kind in ("integer", "number"):
        return prop.get("minimum", 1)
    if kind == "array":
        items = prop.get("items", {})
        choices = items.get("enum") or [c["const"] for c in items.get("anyOf", [])]
        return choices[: max(1, prop.get("minItems", 1))]
    formats = {"email": "scenario@example.com", "uri": "https://example.com/scenario",
               "date": "2000-01-01", "date-time": "2000-01-01T00:00:00Z"}
    return formats.get(prop.get("format", ""), ELICIT_NAME)


class Client:
    """The client side of the session: callbacks for server-to-client requests,
    and a record of what the server sent, attributed to the running step."""

    def __init__(self) -> None:
        self.step = "initialize"
        self.server_requests: list[dict[str, str]] = []
        self.notifications: Counter[str] = Counter()
        self.progress_tokens: list[str | int] = []
        self.sampling_requests: list[dict] = []
        self.elicitation_requests: list[dict] = []
        self.transport_errors: list[dict] = []
        self.http_errors: list[dict] = []

    def _record(self, method: str) -> None:
        self.server_requests.append({"method": method, "step": self.step})

    async def sampling(self, ctx: ClientRequestContext,
                       params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        self._record("sampling/createMessage")
        self.sampling_requests.append(dump(params))
        return types.CreateMessageResult(role="assistant", model="mcp-scenario", stop_reason="endTurn",
                                         content=types.TextContent(type="text", text=SAMPLED_TEXT))

    async def elicitation(self, ctx: ClientRequestContext,
                          params: types.ElicitRequestParams) -> types.ElicitResult:
        self._record("elicitation/create")
        self.elicitation_requests.append(dump(params))
        if not isinstance(params, types.ElicitRequestFormParams):
            return types.ElicitResult(action="decline")
        props = params.requested_schema.get("properties", {})
        return types.ElicitResult(action="accept", content={k: sample_value(p) for k, p in props.items()})

    async def list_roots(self, ctx: ClientRequestContext) -> types.ListRootsResult:
        self._record("roots/list")
        return types.ListRootsResult(roots=[types.Root(uri=ROOT_URI, name="tmp")])

    async def on_message(self, message: types.ServerNotification | Exception) -> None:
        if isinstance(message, Exception):
            self.transport_errors.append(describe(message))
            return
        self.notifications[message.method] += 1
        if isinstance(message, types.ProgressNotification):
            self.progress_tokens.append(message.params.progress_token)

    async def on_http_response(self, response: Any) -> None:
        if response.status_code >= 400:
            self.http_errors.append({"method": response.request.method, "status": response.status_code})

    def report(self, out: dict) -> None:
        """Add what the server sent beside the steps' own records."""
        out.update(serverRequests=self.server_requests, notifications=dict(self.notifications))
        if self.transport_errors:
            out["transportErrors"] = self.transport_errors
        if self.http_errors:
            out["httpErrors"] = self.http_errors

    def session(self, read: Any, write: Any) -> ClientSession:
        return ClientSession(read, write, sampling_callback=self.sampling,
                             elicitation_callback=self.elicitation, list_roots_callback=self.list_roots,
                             message_handler=self.on_message,
                             client_info=types.Implementation(name="sealgate-mcp-scenario", version="1"))


@asynccontextmanager
async def connect(target: list[str], headers: dict[str, str], client: Client) -> AsyncIterator[ClientSession]:
    """Yield a ClientSession on the target, not yet initialized."""
    kind, where = parse_target(target)
    if kind == "http":
        async with create_mcp_http_client(headers=headers or None) as hc:
            hc.event_hooks["response"].append(client.on_http_response)
            async with streamable_http_client(where, http_client=hc) as (read, write):
                async with client.session(read, write) as session:
                    yield session
    else:
        params = StdioServerParameters(command=where[0], args=where[1:], env=dict(os.environ))
        async with stdio_client(params, errlog=sys.stderr) as (read, write):
            async with client.session(read, write) as session:
                yield session


async def list_all(fetch: Callable[..., Awaitable[Any]], attr: str) -> list[Any]:
    """Every item of a paginated list request."""
    items: list[Any] = []
    cursor = None
    for _ in range(100):
        page = await fetch(params=types.PaginatedRequestParams(cursor=cursor) if cursor else None)
        items += getattr(page, attr)
        cursor = page.next_cursor
        if not cursor:
            return items
    raise CheckFailed(f"more than 100 pages of {attr}")


async def wait_for(cond: Callable[[], bool], seconds: float) -> bool:
    """Poll cond until it holds or seconds pass (notifications are handled in their own tasks)."""
    end = time.monotonic() + seconds
    while not cond() and time.monotonic() < end:
        await anyio.sleep(0.02)
    return cond()


class Scenario:
    """The steps; each fills its own record, which survives a later failure."""

    def __init__(self, session: ClientSession, client: Client) -> None:
        self.s = session
        self.c = client

    async def call(self, rec: dict, name: str, arguments: dict, progress_callback: Any = None) -> dict:
        rec.update(tool=name, arguments=arguments)
        rec["result"] = dump(await self.s.call_tool(name, arguments, progress_callback=progress_callback))
        expect(not rec["result"].get("isError", False), f"{name} returned isError")
        return rec["result"]

    async def step_initialize(self, rec: dict) -> None:
        init = dump(await self.s.initialize())
        rec.update({k: init.get(k) for k in ("protocolVersion", "serverInfo", "capabilities")})

    async def step_list(self, rec: dict) -> None:
        rec["tools"] = [t.name for t in await list_all(self.s.list_tools, "tools")]
        rec["prompts"] = [p.name for p in await list_all(self.s.list_prompts, "prompts")]
        rec["resources"] = [r.uri for r in await list_all(self.s.list_resources, "resources")]
        rec["resourceTemplates"] = [t.uri_template for t in
                                    await list_all(self.s.list_resource_templates, "resource_templates")]

    async def step_logging(self, rec: dict) -> None:
        await self.s.set_logging_level("debug")
        before = self.c.notifications["notifications/message"]
        await self.call(rec, "toggle-simulated-logging", {})
        received = await wait_for(lambda: self.c.notifications["notifications/message"] > before, 5)
        rec["stop"] = dump(await self.s.call_tool("toggle-simulated-logging", {}))
        rec["received"] = self.c.notifications["notifications/message"] - before
        expect(received, "no notifications/message within 5 s of toggle-simulated-logging")

    async def step_echo(self, rec: dict) -> None:
        result = await self.call(rec, "echo", {"message": "hello from mcp_scenario"})
        expect("Echo: hello from mcp_scenario" in texts(result), "echo text")

    async def step_get_sum(self, rec: dict) -> None:
        result = await self.call(rec, "get-sum", {"a": 19, "b": 23})
        expect("The sum of 19 and 23 is 42." in texts(result), "get-sum text")

    async def step_progress(self, rec: dict) -> None:
        seen: list[dict] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append({"progress": progress, "total": total} | ({"message": message} if message else {}))

        tokens_before = len(self.c.progress_tokens)
        steps = 4
        result = await self.call(rec, "trigger-long-running-operation", {"duration": 1, "steps": steps},
                                 progress_callback=on_progress)
        await wait_for(lambda: len(seen) >= steps, 2)
        rec.update(count=len(seen), last=seen[-1] if seen else None, notifications=seen,
                   tokens=sorted(set(self.c.progress_tokens[tokens_before:]), key=str))
        expect(any("Long running operation completed" in t for t in texts(result)), "completion text")
        expect(len(seen) == steps, f"{len(seen)} progress notifications, want {steps}")
        expect(seen[-1] == {"progress": steps, "total": steps}, "last progress is not steps/steps")

    async def step_sampling(self, rec: dict) -> None:
        before = len(self.c.sampling_requests)
        result = await self.call(rec, "trigger-sampling-request", {"prompt": "say something", "maxTokens": 20})
        rec["requests"] = self.c.sampling_requests[before:]
        expect(len(rec["requests"]) == 1, f"{len(rec['requests'])} sampling/createMessage requests, want 1")
        expect(any(SAMPLED_TEXT in t for t in texts(result)), f"{SAMPLED_TEXT!r} not in the tool result")

    async def step_elicitation(self, rec: dict) -> None:
        before = len(self.c.elicitation_requests)
        result = await self.call(rec, "trigger-elicitation-request", {})
        rec["requests"] = self.c.elicitation_requests[before:]
        expect(len(rec["requests"]) == 1, f"{len(rec['requests'])} elicitation/create requests, want 1")
        joined = "\n".join(texts(result))
        expect("User provided the requested information" in joined, "elicitation was not accepted")
        expect(f"Name: {ELICIT_NAME}" in joined, "the elicited name is not in the tool result")

    async def step_roots(self, rec: dict) -> None:
        result = await self.call(rec, "get-roots-list", {})
        rec["rootsRequests"] = sum(r["method"] == "roots/list" for r in self.c.server_requests)
        expect(any(ROOT_URI in t for t in texts(result)), f"{ROOT_URI} not in get-roots-list")

    async def step_prompts(self, rec: dict) -> None:
        rec["simple"] = dump(await self.s.get_prompt("simple-prompt"))
        rec["args"] = dump(await self.s.get_prompt("args-prompt", {"city": "Springfield", "state": "Illinois"}))
        expect("This is a simple prompt without arguments." in texts(rec["simple"]), "simple-prompt text")
        expect("What's weather in Springfield, Illinois?" in texts(rec["args"]), "args-prompt text")

    async def step_resources(self, rec: dict) -> None:
        resources = await list_all(self.s.list_resources, "resources")
        templates = await list_all(self.s.list_resource_templates, "resource_templates")
        expect(bool(resources) and bool(templates), "no resources or no resource templates listed")
        uri = resources[0].uri
        rec["read"] = {"uri": uri, "result": dump(await self.s.read_resource(uri))}
        expect(any(c.get("text") or c.get("blob") for c in rec["read"]["result"]["contents"]),
               f"{uri} read empty")
        uri = templates[0].uri_template.replace("{resourceId}", "1")
        rec["readTemplate"] = {"uri": uri, "result": dump(await self.s.read_resource(uri))}
        expect(bool(rec["readTemplate"]["result"]["contents"]), f"{uri} read empty")
        caps = self.s.server_capabilities
        rec["subscribe"] = bool(caps and caps.resources and caps.resources.subscribe)
        if rec["subscribe"]:
            await self.s.subscribe_resource(resources[0].uri)
            await self.s.unsubscribe_resource(resources[0].uri)

    async def step_completion(self, rec: dict) -> None:
        prompt = types.PromptReference(type="ref/prompt", name="completable-prompt")
        done = await self.s.complete(prompt, {"name": "department", "value": "E"})
        rec["department"] = done.completion.values
        done = await self.s.complete(prompt, {"name": "name", "value": ""}, {"department": "Engineering"})
        rec["nameInEngineering"] = done.completion.values
        template = types.ResourceTemplateReference(type="ref/resource",
                                                   uri="demo://resource/dynamic/text/{resourceId}")
        done = await self.s.complete(template, {"name": "resourceId", "value": "7"})
        rec["resourceId"] = done.completion.values
        expect(rec["department"] == ["Engineering"], "department completion")
        expect(rec["nameInEngineering"] == ["Alice", "Bob", "Charlie"], "name completion with context")
        expect(rec["resourceId"] == ["7"], "resourceId completion")

    async def step_ping(self, rec: dict) -> None:
        await self.s.send_ping()


async def run_step(out: dict, client: Client, name: str, fn: Callable[[dict], Awaitable[None]],
                   seconds: float) -> None:
    rec: dict[str, Any] = {"ok": False}
    out["steps"][name] = rec
    client.step = name
    try:
        with anyio.fail_after(seconds):
            await fn(rec)
        rec["ok"] = True
    except TimeoutError:
        rec["error"] = {"type": "TimeoutError", "message": f"step took longer than {seconds:.1f} s"}
    except Exception as e:  # noqa: BLE001 - every failure is part of the report
        rec["error"] = describe(e)


async def scenario(args: argparse.Namespace, out: dict) -> None:
    deadline = time.monotonic() + args.timeout
    client = Client()
    out["steps"] = {}
    try:
        with anyio.fail_after(args.timeout + 10):  # the steps keep to args.timeout; this bounds the teardown
            async with connect(args.target, parse_headers(args.header), client) as session:
                run = Scenario(session, client)
                for name in ["initialize", *args.steps]:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        out["steps"][name] = {"ok": False, "error": {"type": "TimeoutError",
                                                                     "message": "not run: --timeout spent"}}
                        continue
                    await run_step(out, client, name, getattr(run, "step_" + name.replace("-", "_")),
                                   left if name == "initialize" else min(args.step_timeout, left))
                    if not out["steps"]["initialize"]["ok"]:
                        break
    finally:
        if "logging" in out["steps"]:
            out["steps"]["logging"]["sessionCount"] = client.notifications["notifications/message"]
        client.report(out)
    out["ok"] = len(out["steps"]) == 1 + len(args.steps) and all(s["ok"] for s in out["steps"].values())


async def call_one(args: argparse.Namespace, out: dict) -> None:
    out.update(tool=args.call, arguments=args.args)
    client = Client()
    request = "connect"
    try:
        with anyio.fail_after(args.timeout):
            async with connect(args.target, parse_headers(args.header), client) as session:
                request = "initialize"
                await session.initialize()
                request = "tools/list"  # listed first, as the SDK would after the call to validate it
                await list_all(session.list_tools, "tools")
                request = "tools/call"
                out["result"] = dump(await session.call_tool(args.call, args.args))
        out["ok"] = not out["result"].get("isError", False)
    except TimeoutError:
        out.update(error={"type": "TimeoutError", "message": f"run took longer than {args.timeout} s"},
                   request=request)
    except Exception as e:  # noqa: BLE001 - every failure is part of the report
        out.update(error=describe(e), request=request)
    finally:
        client.report(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("target", nargs="+", help="http(s) URL, or stdio command (put -- before it)")
    ap.add_argument("--header", action="append", default=[], help="'Name: value' (HTTP only; repeatable)")
    ap.add_argument("--steps", default="all", help="'all' (default) or a comma list of: " + ",".join(ALL_STEPS))
    ap.add_argument("--call", metavar="TOOL", help="only initialize and call TOOL")
    ap.add_argument("--args", default="{}", help="JSON arguments for --call (default {})")
    ap.add_argument("--timeout", type=float, default=60.0, help="overall seconds (default 60)")
    ap.add_argument("--step-timeout", type=float, default=20.0, help="seconds per step (default 20)")
    args = ap.parse_args()
    steps = ALL_STEPS if args.steps == "all" else [s.strip() for s in args.steps.split(",") if s.strip()]
    args.steps = [s for s in dict.fromkeys(steps) if s != "initialize"]  # given order, once each
    unknown = [s for s in args.steps if s not in ALL_STEPS]
    if unknown:
        ap.error(f"unknown steps {unknown}; known: {', '.join(ALL_STEPS)}")
    try:
        args.args = json.loads(args.args)
    except ValueError as e:
        ap.error(f"--args is not JSON: {e}")
    out: dict[str, Any] = {"ok": False, "target": args.target}
    try:
        out["transport"] = parse_target(args.target)[0]
        anyio.run(call_one if args.call else scenario, args, out)
    except TimeoutError:
        out["error"] = {"type": "TimeoutError", "message": f"run took longer than {args.timeout} s"}
    except Exception as e:  # noqa: BLE001 - report anything (incl. ExceptionGroup) as JSON
        out["error"] = describe(e)
    print(json.dumps(out, indent=2))
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
