"""plugins/module_utils/hcloud.py without the lab: the 429 pacing, against a tiny local HTTP server."""

from __future__ import annotations

import http.server
import json
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.toolfree  # needs none of the Go tools (runs while they build)

REPO = Path(__file__).resolve().parents[3]
if str(REPO / "collections") not in sys.path:
    sys.path.insert(0, str(REPO / "collections"))

from ansible_collections.turnkey.cluster.plugins.module_utils import hcloud  # noqa: E402


class Answer:
    def __init__(self, status, headers):
        self.status_code = status
        self.headers = headers


def test_pause_follows_the_refill_interval_and_the_reset():
    now = 1000.0
    full_in_an_hour = {"RateLimit-Limit": "3600", "RateLimit-Remaining": "0", "RateLimit-Reset": "4600"}
    assert hcloud.rate_limit_pause(Answer(429, full_in_an_hour), 0, now) == pytest.approx(1.0)
    assert hcloud.rate_limit_pause(Answer(429, full_in_an_hour), 2, now) == pytest.approx(1.5625)
    assert hcloud.rate_limit_pause(Answer(429, full_in_an_hour), 40, now) == 30.0  # capped
    slow_budget = {"RateLimit-Limit": "360", "RateLimit-Reset": "4600"}  # 10 s per request
    assert hcloud.rate_limit_pause(Answer(429, slow_budget), 0, now) == pytest.approx(10.0)
    nearly_full = {"RateLimit-Limit": "3600", "RateLimit-Reset": "1000.3"}
    assert hcloud.rate_limit_pause(Answer(429, nearly_full), 5, now) == pytest.approx(1.0)  # one refill
    assert hcloud.rate_limit_pause(Answer(429, {}), 0, now) == 1.0  # no headers: 1 s


class Handler(http.server.BaseHTTPRequestHandler):
    plan: list[int] = []
    remaining = "3000"

    def do_GET(self):  # noqa: N802 (http.server's name)
        status = self.plan.pop(0) if self.plan else 200
        body = json.dumps({"error": {"code": "rate_limit_exceeded", "message": "limit", "details": {}}}
                          if status == 429 else {"ok": True}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("RateLimit-Limit", "3600")
        self.send_header("RateLimit-Remaining", "0" if status == 429 else self.remaining)
        self.send_header("RateLimit-Reset", str(int(time.time()) + 3000))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d" % httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def test_session_rides_a_storm_longer_than_the_library_retries(server):
    slept = []
    session = hcloud.RateLimitedSession(max_wait=300, sleep=slept.append)
    Handler.plan, Handler.remaining = [429] * 8, "3000"
    answer = session.request("GET", server + "/v1/locations", timeout=5)
    assert answer.status_code == 200 and session.throttled == 8
    assert len(slept) == 8 and 1.0 <= slept[0] <= 1.1 and slept[-1] == pytest.approx(1.25 ** 7, rel=0.1)


def test_session_gives_up_after_max_wait_and_spaces_requests_when_low(server):
    clock = [0.0]
    session = hcloud.RateLimitedSession(max_wait=3, sleep=lambda s: clock.__setitem__(0, clock[0] + s),
                                        clock=lambda: clock[0])
    Handler.plan, Handler.remaining = [429] * 20, "3000"
    assert session.request("GET", server + "/v1/x", timeout=5).status_code == 429  # the library then raises
    assert session.waited == pytest.approx(3.0)
    Handler.plan, Handler.remaining = [], "5"
    slept = []
    session = hcloud.RateLimitedSession(sleep=slept.append)
    session.request("GET", server + "/v1/x", timeout=5)
    session.request("GET", server + "/v1/x", timeout=5)
    assert slept == [1.0]  # 5 left: the second request waited one refill interval
