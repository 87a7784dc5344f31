"""A stdio MCP server (Python MCP SDK) whose tools reach the network, for
the egress tests (tests/egress.rs).

- connect {port}: opens a TCP connection to 127.0.0.1:port and answers
  "connected", or "failed: <error>".
- fetch {url} (pydantic AnyUrl: `format: uri` in its input schema): GETs the
  URL and answers the first 200 characters of the body, or "failed: <error>".
"""

import socket
import urllib.request

from mcp.server.mcpserver import MCPServer
from pydantic import AnyUrl

app = MCPServer("net")


@app.tool(structured_output=False)
def connect(port: int) -> str:
    """Open a TCP connection to 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            return "connected"
    except OSError as e:
        return f"failed: {e}"


@app.tool(structured_output=False)
def fetch(url: AnyUrl) -> str:
    """GET a URL."""
    try:
        with urllib.request.urlopen(str(url), timeout=5) as r:
            return r.read(200).decode("utf-8", "replace")
    except Exception as e:  # noqa: BLE001 - the answer is the failure
        return f"failed: {e}"


app.run("stdio")
