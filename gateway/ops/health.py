"""The daemon's health endpoint and its systemd status line, from ``russak status``'s facts.

``HealthServer`` is an optional HTTP endpoint (``gateway.health_listen``; off by
default, 127.0.0.1 unless a host is written) on the standard library's
``http.server``, in daemon threads beside the scheduler:

- ``GET /healthz``: 200 when ``gateway.ops.status.gather`` finds no problem, 503
  when it does (the same checks as ``russak status``: a dead letter, open
  quarantine, an outbox backlog older than an hour, no live daemon, an old schema)
  or when the facts cannot be read. The body is a small JSON object: ``status``,
  ``summary`` and ``problems``, nothing personal.
- ``GET /metrics``: the Prometheus text format of the daemon's own registry.

It only reads: a request never polls, sends or takes a lock the steps need. It is
meant for a monitoring system on the same host (or behind a firewall): it has no
authentication, so bind it to loopback unless the network is trusted.

``status_line`` is the one line the daemon sends as systemd's ``STATUS=`` after
every poll and tick: ``polled spool 3 s ago; healthy; outbox 0 pending, 0 dead;
quarantine 0``.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from gateway.ops.status import Health

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 10.0  # seconds a client may take to send its request


def status_line(health: Health) -> str:
    """``polled <channel> N s ago[, ...]; <Health.summary()>``, one line, no personal data."""
    polls = []
    for channel in health.channels:
        if not channel.inbound:
            continue
        if channel.last_poll_at is None:
            polls.append(f"{channel.name} never")
        else:
            seconds = max(0, int((health.now - channel.last_poll_at).total_seconds()))
            polls.append(f"{channel.name} {seconds} s ago")
    polled = "polled " + ", ".join(polls) if polls else "no inbound channel"
    return f"{polled}; {health.summary()}"


def healthz_body(health: Health | None, error: str | None = None) -> tuple[int, dict[str, Any]]:
    """The status code and JSON body of ``/healthz``."""
    if health is None:
        problems = [f"health facts cannot be read: {error or 'unknown error'}"]
        return HTTPStatus.SERVICE_UNAVAILABLE, {
            "status": "degraded",
            "summary": "degraded: " + problems[0],
            "problems": problems,
        }
    code = HTTPStatus.OK if health.healthy else HTTPStatus.SERVICE_UNAVAILABLE
    return code, {
        "status": "healthy" if health.healthy else "degraded",
        "summary": health.summary(),
        "problems": list(health.problems),
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        health: Callable[[], Health],
        registry: CollectorRegistry,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.health = health
        self.registry = registry
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "russak-gateway"
    sys_version = ""  # no Python version in the Server header
    timeout = REQUEST_TIMEOUT
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self._healthz()
        elif path == "/metrics":
            self._send(HTTPStatus.OK, CONTENT_TYPE_LATEST, generate_latest(self.server.registry))
        else:
            self._send(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", b"try /healthz or /metrics\n")

    def do_HEAD(self) -> None:
        self.do_GET()

    def _healthz(self) -> None:
        try:
            code, body = healthz_body(self.server.health())
        except Exception as exc:
            log.warning("health: the health facts cannot be read: %s", type(exc).__name__)
            code, body = healthz_body(None, type(exc).__name__)
        data = (json.dumps(body, ensure_ascii=False) + "\n").encode("utf-8")
        self._send(code, "application/json; charset=utf-8", data)

    def _send(self, code: int, content_type: str, data: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("health: %s %s", self.address_string(), format % args)


class HealthServer:
    """``/healthz`` and ``/metrics`` on ``address``, served from a daemon thread.

    ``health`` is called per request (``/healthz`` and each scrape); it reads the
    database and must be safe to call from another thread than the steps.
    """

    def __init__(
        self,
        address: tuple[str, int],
        health: Callable[[], Health],
        registry: CollectorRegistry,
    ) -> None:
        self._server = _Server(address, health, registry)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.5},
            name="russak-health",
            daemon=True,
        )

    @property
    def address(self) -> tuple[str, int]:
        """The bound host and port (the real port when 0 was configured)."""
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
