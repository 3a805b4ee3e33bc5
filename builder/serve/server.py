"""The HTTP(S) edge of `bake serve`: stdlib ThreadingHTTPServer, one line of log for every request.

Routes: the seeds (`routing`, for the nodes), `POST /report` (`protocol` + `store`, for the nodes'
bootstraps), and for the operator the live page (`/`, `/app.js`, `/app.css`) and `/api/state`, which
answer only the `--admin` networks (loopback by default: the page shows the nodes' log tails).

Robustness: every connection has a socket timeout (a slow or silent client loses its thread after
HANDLER_TIMEOUT s, TLS handshakes included, which run in the connection's thread, never in the accept
loop); a report body is read only when its declared length is within protocol.MAX_BODY, chunked
bodies are refused; any exception in a handler is answered 500 and logged in one line, the server
goes on. A refused request never reaches the store.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TextIO
from urllib.parse import parse_qs, urlsplit

from ..errors import BakeError, Problem
from ..model.syntax import IPNetwork, split_host_port
from . import page, protocol, routing
from .catalog import Catalog
from .store import Store
from .tls import server_context

HANDLER_TIMEOUT = 10.0
DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_ADMIN: tuple[IPNetwork, ...] = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128"))


class RequestLog:
    """One line per request: time, client, method, path, status and what was decided (thread-safe)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self._lock = threading.Lock()

    def __call__(self, client: str, method: str, path: str, status: int, detail: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        safe = "".join(c if c.isprintable() else "?" for c in path[:200])
        line = f"{stamp} {client} {method} {safe} {status} {detail}\n"
        with self._lock:
            try:
                self.stream.write(line)
                self.stream.flush()
            except (OSError, ValueError):
                pass


@dataclass
class Counters:
    """What the server did, for its log and the tests (never for a decision)."""

    requests: int = 0
    refused: int = 0
    reports: int = 0
    state_requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + 1)


class SeedServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(
        self,
        address: tuple[str, int],
        catalog: Catalog,
        stores: dict[str, Store],
        *,
        tls: ssl.SSLContext | None = None,
        admin: Sequence[IPNetwork] = DEFAULT_ADMIN,
        log: RequestLog | None = None,
        handler: type[BaseHTTPRequestHandler] | None = None,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.catalog = catalog
        self.stores = stores
        self.tls = tls
        self.admin = tuple(admin)
        self.log = log or RequestLog()
        self.counters = Counters()
        super().__init__(address, handler or Handler)

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), int(self.server_address[1])
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self.tls else 'http'}://{host}:{port}/"

    def finish_request(self, request: Any, client_address: Any) -> None:
        """In the connection's thread: the timeout, then the TLS handshake, then the handler."""
        request.settimeout(HANDLER_TIMEOUT)
        handler: Any = self.RequestHandlerClass
        if self.tls is None:
            handler(request, client_address, self)
            return
        try:
            wrapped = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            self.log(client_address[0], "-", "-", 0, f"TLS handshake failed: {exc}")
            return
        try:
            handler(wrapped, client_address, self)
        finally:
            with contextlib.suppress(OSError):
                wrapped.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        self.log(str(client_address[0]), "-", "-", 0, f"connection error: {type(exc).__name__}: {exc}")


class Handler(BaseHTTPRequestHandler):
    server: SeedServer
    server_version = "bake-serve"
    sys_version = ""
    protocol_version = "HTTP/1.0"

    # -- plumbing ----------------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:
        """The base class's own messages (a malformed request line, a timeout) go to our log."""
        self.server.log(self.client_address[0], "-", "-", 0, format % args)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None  # every request is logged by `_done`, with what was decided

    def _done(self, status: int, detail: str) -> None:
        self.server.counters.add("requests")
        if status >= 400:
            self.server.counters.add("refused")
        self.server.log(self.client_address[0], self.command, self.path, status, detail)

    def _send(
        self, status: int, body: bytes = b"", ctype: str = "text/plain; charset=utf-8", **headers: str
    ) -> None:
        self.send_response(status)
        if status != HTTPStatus.NO_CONTENT:
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _refuse(self, status: int, detail: str) -> None:
        """A short answer (the reason stays in the log: it may name nodes), then the log line."""
        self.close_connection = True
        self._send(status, f"{status} {HTTPStatus(status).phrase}\n".encode())
        self._done(status, detail)

    def _admin(self) -> bool:
        source = routing.source_address(self.client_address[0])
        if source is not None and any(source.version == n.version and source in n for n in self.server.admin):
            return True
        self._refuse(403, f"refused: {source} is not in the --admin networks (the page shows log tails)")
        return False

    def _run(self, handler: Any) -> None:
        try:
            handler()
        except (ConnectionError, TimeoutError, ssl.SSLError) as exc:
            self.close_connection = True
            self.server.log(self.client_address[0], self.command, self.path, 0, f"connection lost: {exc}")
        except Exception as exc:  # a bug: answered and logged, the server goes on
            self.close_connection = True
            with contextlib.suppress(Exception):
                self._send(500, b"500 Internal Server Error\n")
            self._done(500, f"internal error: {type(exc).__name__}: {exc}")

    # -- GET / HEAD --------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._run(self._get)

    def do_HEAD(self) -> None:
        self._run(self._get)

    def _get(self) -> None:
        url = urlsplit(self.path)
        path = url.path
        if path in ("/", "/index.html", page.STATE_ROUTE, page.SCRIPT_ROUTE, page.STYLE_ROUTE):
            self._operator(path)
            return
        try:
            query = parse_qs(url.query, keep_blank_values=True, max_num_fields=4)
        except ValueError:
            self._refuse(400, "refused: too many query fields")
            return
        decision = routing.decide(self.server.catalog, path, query, self.client_address[0])
        if not decision.ok or decision.file is None:
            self._refuse(decision.status, decision.reason)
            return
        try:
            fh = decision.file.open("rb")
        except OSError as exc:
            self._refuse(404, f"{decision.reason}: {exc.strerror}")
            return
        with fh:
            size = os.fstat(fh.fileno()).st_size
            self.send_response(200)
            self.send_header("Content-Type", decision.content_type)
            self.send_header("Content-Length", str(size))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            if self.command != "HEAD":
                shutil.copyfileobj(fh, self.wfile, 1 << 20)
        self._done(200, f"served {decision.reason} ({size} bytes)")

    def _operator(self, path: str) -> None:
        if not self._admin():
            return
        security = {"Content_Security_Policy": page.CSP, "Referrer_Policy": "no-referrer"}
        if path == page.STATE_ROUTE:
            self.server.counters.add("state_requests")
            doc = page.state_document(self.server.catalog, self.server.stores)
            self._send(200, json.dumps(doc).encode(), "application/json", **security)
            self._done(200, f"state (version {doc['version']})")
        else:
            name = {page.SCRIPT_ROUTE: "app.js", page.STYLE_ROUTE: "app.css"}.get(path, "index.html")
            self._send(200, page.asset(name), page.ASSETS[name], **security)
            self._done(200, f"page {name}")

    # -- POST /report ------------------------------------------------------------------------------

    def do_POST(self) -> None:
        self._run(self._post)

    def _post(self) -> None:
        if urlsplit(self.path).path != protocol.PATH:
            self._refuse(404, "no such route")
            return
        if self.headers.get("Transfer-Encoding") is not None:
            self._refuse(411, "refused report: a chunked body (give Content-Length)")
            return
        declared = self.headers.get("Content-Length")
        if declared is None:
            self._refuse(411, "refused report: no Content-Length")
            return
        if not declared.strip().isdigit():
            self._refuse(400, f"refused report: Content-Length {declared[:20]!r}")
            return
        length = int(declared)
        if length > protocol.MAX_BODY:
            self._refuse(
                413, f"refused report: {length} bytes declared (at most {protocol.MAX_BODY}), not read"
            )
            return
        try:
            raw = self.rfile.read(length)
        except TimeoutError:
            self._refuse(408, "refused report: the body did not come in time")
            return
        if len(raw) != length:
            self._refuse(400, f"refused report: {len(raw)} of {length} bytes")
            return
        status, detail = self._report(raw)
        if status == 204:
            self.server.counters.add("reports")
            self._send(204)
            self._done(204, detail)
        else:
            self._refuse(status, detail)

    def _report(self, raw: bytes) -> tuple[int, str]:
        try:
            report = protocol.parse(raw)
        except protocol.ReportError as exc:
            return exc.status, f"refused report: {exc.reason}"
        who = f"{report.cluster}/{report.node}"
        node = self.server.catalog.node(report.cluster, report.node)
        if node is None:
            return 403, f"refused report: no node {who}"
        store = self.server.stores.get(report.cluster)
        if node.key is None or store is None:
            return (
                403,
                f"refused report: cluster {report.cluster} takes no reports (no cluster.seed.reportUrl)",
            )
        if not protocol.signature_ok(node.key, raw, self.headers.get(protocol.SIGNATURE_HEADER)):
            return 403, f"refused report: bad signature for {who} (another node's key, or altered)"
        outcome = store.apply(report)
        if not outcome.accepted:
            return 409, f"refused report from {who}: {outcome.reason}"
        return 204, f"report {who} seq {report.seq}: {outcome.reason}"


# --------------------------------------------------------------------------------------------------
# starting it


def parse_listen(text: str) -> tuple[str, int]:
    try:
        host, port = split_host_port(text, 8080)
    except ValueError as exc:
        raise BakeError([Problem("--listen", f"{text!r}: {exc}")]) from None
    return host, port


def make_server(
    catalog: Catalog,
    listen: tuple[str, int],
    *,
    tls: bool = False,
    admin: Sequence[IPNetwork] = DEFAULT_ADMIN,
    log: RequestLog | None = None,
    handler: type[BaseHTTPRequestHandler] | None = None,
) -> SeedServer:
    """The server, its stores opened (each cluster whose nodes report), bound and ready to serve;
    `handler` is a subclass of Handler (the page test drives a scripted reporter from it)."""
    context = None
    if tls:
        with_cert = [c for c in catalog.clusters.values() if c.server_pem is not None]
        if len(catalog.clusters) != 1 or not with_cert:
            raise BakeError(
                [
                    Problem(
                        "--tls",
                        "needs one cluster whose bundle holds a seed server certificate (set "
                        "cluster.seed.reportUrl or httpBaseUrl to an https:// URL and bake); serve other "
                        "clusters from their own `bake serve --tls`",
                    )
                ]
            )
        pem = with_cert[0].server_pem
        assert pem is not None
        context = server_context(*pem)
    else:
        https = [c.name for c in catalog.clusters.values() if (c.report_url or "").startswith("https://")]
        if https:
            raise BakeError(
                [Problem("--tls", f"the nodes of {', '.join(https)} report to an https:// URL: pass --tls")]
            )
    stores = {name: Store(c.state, name) for name, c in catalog.clusters.items() if c.reports}
    try:
        return SeedServer(listen, catalog, stores, tls=context, admin=admin, log=log, handler=handler)
    except OSError as exc:
        for store in stores.values():
            store.close()
        raise BakeError(
            [Problem("--listen", f"cannot listen on {listen[0]}:{listen[1]}: {exc.strerror}")]
        ) from None


def run(server: SeedServer) -> None:
    """Serve until SIGINT or SIGTERM, then close the stores (their state stays on disk)."""

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()
        for store in server.stores.values():
            store.close()
