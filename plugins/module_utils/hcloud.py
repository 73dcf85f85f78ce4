# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small base for turnkey.cluster modules that talk to the Hetzner Cloud API through the `hcloud` library.

What it adds to the library:

- the connection options every module shares (`hcloud_argument_spec()`, doc fragment
  turnkey.cluster.hcloud): `api_token` (no_log, env HCLOUD_TOKEN), `api_endpoint` (env HCLOUD_ENDPOINT),
  `ca_path` (env REQUESTS_CA_BUNDLE) and `rate_limit_wait`;
- CA handling: the library uses `requests`, which verifies with $REQUESTS_CA_BUNDLE when it is set; an
  explicit `ca_path` is passed with every request, so it wins over the variable (requests #3829);
- a rate-limit aware session: a `429 rate_limit_exceeded` is retried after a pause derived from the
  headers (`rate_limit_pause`: the refill interval, growing 1.25x per 429 in a row, capped by 30 s and by
  `RateLimit-Reset`), for up to `rate_limit_wait` seconds,
  so a storm of 429s is ridden through instead of failing after the library's 5 retries; when
  `RateLimit-Remaining` gets low, requests are spaced by the refill interval (limit per hour);
- action polling with exponential backoff and a deadline (`HcloudApi.wait_action`), and calls retried
  while a resource is locked by another action (`HcloudApi.call_unlocked`);
- writes sent once (`HcloudApi.write`): the library retries any request after a timeout, a 502 or a 504,
  when a POST may already have been done (a second server, a second attach); a write is not retried then
  but fails with `ambiguous=True`, so the module re-reads the state and decides again;
- structured failures: `fail_json(msg, hcloud_error={code, message, details})`;
- the common end of a module's main() (`run_module`).
"""

from __future__ import annotations

import random
import time
import traceback

from ansible.module_utils.basic import env_fallback, missing_required_lib

try:
    import requests
    from hcloud import Client
    from hcloud._exceptions import APIException, HCloudException
    from hcloud.actions import ActionException
except ImportError:
    HAS_HCLOUD = False
    HCLOUD_IMPORT_ERROR = traceback.format_exc()
    requests = None
    Client = APIException = HCloudException = ActionException = None
else:
    HAS_HCLOUD = True
    HCLOUD_IMPORT_ERROR = None

DEFAULT_ENDPOINT = "https://api.hetzner.cloud/v1"
LOW_REMAINING = 10  # below this many requests left, space requests by the refill interval


def hcloud_argument_spec(**options):
    """A module's options plus the connection options (doc fragment turnkey.cluster.hcloud)."""
    return dict(
        options,
        api_token=dict(type="str", required=True, no_log=True, fallback=(env_fallback, ["HCLOUD_TOKEN"])),
        api_endpoint=dict(type="str", default=DEFAULT_ENDPOINT, fallback=(env_fallback, ["HCLOUD_ENDPOINT"])),
        ca_path=dict(type="path", fallback=(env_fallback, ["REQUESTS_CA_BUNDLE"])),
        rate_limit_wait=dict(type="int", default=300),
    )


# Answers that leave open whether a write was done: a gateway or the server gave up after the request
# reached it, or the connection broke (codes as Hetzner names them, or the bare status without a body).
AMBIGUOUS = ("timeout", "bad_gateway", "server_error", "connection_error", 500, 502, 504)
# Answers that say the write was not done and can be sent again: locked by another action, a conflict.
NOT_DONE = ("locked", "conflict")


class HcloudFailure(Exception):
    """A failure with Hetzner's error code, message and details; `ambiguous`: a write may have been done."""

    def __init__(self, code, message, details=None, ambiguous=False):
        super().__init__("%s (%s)" % (message, code))
        self.code = code
        self.message = message
        self.details = details or {}
        self.ambiguous = ambiguous

    def as_dict(self):
        return {"code": self.code, "message": self.message, "details": self.details}


def _header_number(response, name):
    try:
        return float(response.headers.get(name))
    except (TypeError, ValueError):
        return None


def rate_limit_pause(response, attempt, now=None):
    """Seconds to wait after the attempt-th 429 in a row (0-based).

    The budget refills continuously (RateLimit-Limit per hour), so one request's worth comes back every
    3600/limit seconds: wait that long, 1.25 times longer after each further 429 in a row (other clients
    compete for the same budget), at most 30 s, and never past RateLimit-Reset (the budget is full then)."""
    now = time.time() if now is None else now
    limit = _header_number(response, "RateLimit-Limit")
    per_request = 3600.0 / limit if limit else 1.0
    pause = min(per_request * 1.25 ** attempt, 30.0)
    reset = _header_number(response, "RateLimit-Reset")
    if reset is not None:
        pause = min(pause, max(reset - now, per_request))
    return max(pause, 0.05)


if HAS_HCLOUD:

    class RateLimitedSession(requests.Session):
        """A requests.Session that rides through 429 answers and slows down when the budget runs low."""

        def __init__(self, ca_path=None, max_wait=300.0, sleep=time.sleep, clock=time.monotonic):
            super().__init__()
            self.ca_path = ca_path
            self.max_wait = max_wait
            self.sleep = sleep
            self.clock = clock
            self.throttled = 0  # 429 answers ridden through
            self.waited = 0.0  # seconds spent waiting for the rate limit
            self._space = 0.0  # pause before the next request while the budget is low

        def request(self, method, url, *args, **kwargs):  # pylint: disable=arguments-differ
            if self.ca_path:
                kwargs["verify"] = self.ca_path
            started = self.clock()
            attempt = 0
            while True:
                if self._space:
                    self._pause(self._space)
                response = super().request(method, url, *args, **kwargs)
                self._note_budget(response)
                if response.status_code != 429:
                    return response
                spent = self.clock() - started
                if spent >= self.max_wait:
                    return response  # the library raises rate_limit_exceeded (after its own retries)
                self.throttled += 1
                pause = rate_limit_pause(response, attempt) * random.uniform(1.0, 1.1)
                self._pause(min(pause, self.max_wait - spent))
                attempt += 1

        def _note_budget(self, response):
            remaining = _header_number(response, "RateLimit-Remaining")
            limit = _header_number(response, "RateLimit-Limit")
            if remaining is None or not limit or response.status_code == 429:
                self._space = 0.0
            elif remaining < LOW_REMAINING:
                self._space = 3600.0 / limit  # the budget refills continuously: limit per hour
            else:
                self._space = 0.0

        def _pause(self, seconds):
            if seconds > 0:
                self.waited += seconds
                self.sleep(seconds)


class HcloudApi:
    """The `hcloud` client of a module, with the session above, action polling and structured failures."""

    def __init__(self, module):
        self.module = module
        if not HAS_HCLOUD:
            module.fail_json(msg=missing_required_lib("hcloud (and requests)"), exception=HCLOUD_IMPORT_ERROR)
        params = module.params
        self.client = Client(token=params["api_token"], api_endpoint=params["api_endpoint"].rstrip("/"),
                             application_name="turnkey.cluster", timeout=30)
        self.session = RateLimitedSession(ca_path=params.get("ca_path"),
                                          max_wait=float(params.get("rate_limit_wait") or 300))
        # The library keeps one requests.Session per base client; this one replaces it.
        for base in (self.client._client, getattr(self.client, "_client_hetzner", None)):
            if base is not None:
                base._session = self.session

    def rate_limit_report(self):
        return {"throttled": self.session.throttled, "waited": round(self.session.waited, 2)}

    def wait_action(self, action, deadline, what="action"):
        """Poll an action until it ends, with exponential backoff (0.1 s doubling to 5 s) until `deadline`
        (a time.monotonic() value). Raises HcloudFailure when it ends in error or the deadline passes."""
        interval = 0.1
        current = action
        while True:
            if current.status == "success":
                return current
            if current.status == "error":
                error = current.error or {}
                raise HcloudFailure(error.get("code", "action_failed"), error.get("message", "%s failed" % what),
                                    {"action": {"id": current.id, "command": current.command}})
            if time.monotonic() >= deadline:
                raise HcloudFailure("timeout", "%s did not finish in time" % what,
                                    {"action": {"id": current.id, "command": current.command,
                                                "progress": current.progress}})
            time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
            interval = min(interval * 2, 5.0)
            current = self.call(self.client.actions.get_by_id, current.id)

    def wait_actions(self, actions, deadline, what="action"):
        """wait_action for each of a list of actions (set_rules and apply_to_resources answer several)."""
        return [self.wait_action(action, deadline, what) for action in actions or []]

    def call_unlocked(self, deadline, function, *args, **kwargs):
        """call(), retried with backoff while the resource is locked by another action (423), until deadline."""
        interval = 0.2
        while True:
            try:
                return self.call(function, *args, **kwargs)
            except HcloudFailure as failure:
                if failure.code != "locked" or time.monotonic() >= deadline:
                    raise
            time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
            interval = min(interval * 2, 5.0)

    def write(self, deadline, function, *args, **kwargs):
        """A call that changes something, sent once: the library's own retries are off for it (they follow
        answers that leave open whether it was done). Retried with backoff while the answer says it was not
        done (423 locked, 409 conflict), until deadline. An ambiguous answer raises HcloudFailure with
        ambiguous=True: the caller re-reads the state instead of sending it again blindly."""
        bases = [base for base in (self.client._client, getattr(self.client, "_client_hetzner", None)) if base]
        saved = [base._retry_max_retries for base in bases]
        interval = 0.2
        try:
            for base in bases:
                base._retry_max_retries = 0  # the library's attribute; 429s are still ridden through by the session
            while True:
                try:
                    return self.call(function, *args, **kwargs)
                except HcloudFailure as failure:
                    if failure.code in AMBIGUOUS:
                        failure.ambiguous = True
                        raise
                    if failure.code not in NOT_DONE or time.monotonic() >= deadline:
                        raise
                time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
                interval = min(interval * 2, 5.0)
        finally:
            for base, value in zip(bases, saved):
                base._retry_max_retries = value

    def call(self, function, *args, **kwargs):
        """Calls the library, turning its exceptions into HcloudFailure."""
        try:
            return function(*args, **kwargs)
        except APIException as exc:
            raise HcloudFailure(exc.code, exc.message, exc.details) from exc
        except ActionException as exc:
            error = getattr(exc.action, "error", None) or {}
            raise HcloudFailure(error.get("code", "action_failed"), error.get("message", str(exc)),
                                {"action": {"id": exc.action.id, "command": exc.action.command}}) from exc
        except HCloudException as exc:
            raise HcloudFailure("hcloud_error", str(exc)) from exc
        except requests.RequestException as exc:
            raise HcloudFailure("connection_error", str(exc)) from exc

    def fail(self, msg, failure, **result):
        """fail_json with Hetzner's error as hcloud_error={code, message, details}."""
        self.module.fail_json(msg="%s: %s" % (msg, failure), hcloud_error=failure.as_dict(),
                              hcloud_rate_limit=self.rate_limit_report(), **result)


def label_selector(labels):
    """A label selector matching every one of the labels (k=v,...), in a stable order."""
    return ",".join("%s=%s" % item for item in sorted((labels or {}).items()))


def deadline_after(seconds):
    return time.monotonic() + float(seconds)


def run_module(module, run, result, failure_msg):
    """Runs run(module, api, result) and exits the module the way every hcloud_* module does: a HcloudFailure
    fails with failure_msg and hcloud_error; `changed` follows result["changes"] when the module lists its
    changes; the diff is only returned in diff mode; the rate-limit report is always returned."""
    api = HcloudApi(module)
    try:
        run(module, api, result)
    except HcloudFailure as failure:
        api.fail(failure_msg, failure, **result)
    if "changes" in result:
        result["changed"] = bool(result["changes"])
    if not module._diff:
        result.pop("diff", None)
    module.exit_json(hcloud_rate_limit=api.rate_limit_report(), **result)
