# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared code of the turnkey.cluster Proxmox VE modules: connection options, a proxmoxer client with
retries on transient failures, UPID task polling, and failures that carry Proxmox's own error text."""

from __future__ import annotations

import re
import time
import traceback

from ansible.module_utils.basic import env_fallback, missing_required_lib
from ansible.module_utils.six.moves.urllib.parse import urlparse

PROXMOXER_IMPORT_ERROR = None
try:
    from proxmoxer import ProxmoxAPI
    from proxmoxer.core import ResourceException
except ImportError:
    PROXMOXER_IMPORT_ERROR = traceback.format_exc()
    ProxmoxAPI = None

    class ResourceException(Exception):
        pass

try:
    from requests.exceptions import ConnectionError as RequestsConnectionError
    from requests.exceptions import Timeout as RequestsTimeout

    CONNECTION_ERRORS = (RequestsConnectionError, RequestsTimeout, ConnectionError)
except ImportError:
    CONNECTION_ERRORS = (ConnectionError,)


def proxmox_argument_spec():
    """The connection options (doc fragment turnkey.cluster.proxmox)."""
    return dict(
        api_url=dict(type="str", required=True, fallback=(env_fallback, ["PROXMOX_URL"])),
        api_token_id=dict(type="str", fallback=(env_fallback, ["PROXMOX_TOKEN_ID"])),
        api_token_secret=dict(type="str", no_log=True, fallback=(env_fallback, ["PROXMOX_TOKEN_SECRET"])),
        api_user=dict(type="str", fallback=(env_fallback, ["PROXMOX_USER"])),
        api_password=dict(type="str", no_log=True, fallback=(env_fallback, ["PROXMOX_PASSWORD"])),
        validate_certs=dict(type="bool", default=True),
        ca_path=dict(type="path", fallback=(env_fallback, ["PROXMOX_CACERT"])),
        node=dict(type="str", default="pve"),
        api_timeout=dict(type="int", default=30),
        api_retries=dict(type="int", default=5),
    )


PROXMOX_REQUIRED_TOGETHER = [["api_token_id", "api_token_secret"], ["api_user", "api_password"]]
PROXMOX_REQUIRED_ONE_OF = [["api_token_id", "api_user"]]

LOCK_TIMEOUT = re.compile(r"can't lock file '[^']*' - got timeout")
RETRY_STATUSES = (502, 503, 504, 595, 596, 597)


class ProxmoxError(Exception):
    """A failed call or task, with what fail_json should carry."""

    def __init__(self, msg, proxmox_error=None, status=None, task_log=None, upid=None, ambiguous=False):
        super().__init__(msg)
        self.msg = msg
        self.proxmox_error = proxmox_error
        self.status = status
        self.task_log = task_log
        self.upid = upid
        # The request may have been carried out all the same (a timeout, a reset, a gateway's 5xx).
        self.ambiguous = ambiguous

    def fail_fields(self):
        fields = {"msg": self.msg, "proxmox_error": self.proxmox_error, "status": self.status}
        if self.task_log is not None:
            fields["task_log"] = self.task_log
        if self.upid:
            fields["upid"] = self.upid
        return fields


def error_text(exc):
    """Proxmox's own message from a proxmoxer ResourceException (pveproxy puts it in the status text;
    parameter errors come per parameter)."""
    content = (getattr(exc, "content", None) or "").strip()
    errors = getattr(exc, "errors", None)
    if isinstance(errors, dict) and errors:
        details = "; ".join("%s: %s" % (key, str(value).strip()) for key, value in sorted(errors.items()))
        return "%s (%s)" % (content, details) if content else details
    if errors:
        return "%s (%s)" % (content, str(errors).strip()) if content else str(errors).strip()
    return content or str(exc)


def is_transient(exc):
    """Worth another try: a lock timeout, a gateway/unavailable status, a connection error."""
    if isinstance(exc, CONNECTION_ERRORS):
        return True
    if isinstance(exc, ResourceException):
        status = getattr(exc, "status_code", None)
        return status in RETRY_STATUSES or bool(LOCK_TIMEOUT.search(error_text(exc)))
    return False


class ProxmoxClient:
    """proxmoxer with the module's connection options, retries and task polling."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.node = module.params["node"]
        self.retries = max(0, module.params["api_retries"])
        self.retried = 0  # how many transient failures were absorbed (returned by the modules)
        self.reread = 0  # how many ambiguous answers to a non-idempotent call were settled by reading the state
        if PROXMOXER_IMPORT_ERROR:
            module.fail_json(msg=missing_required_lib("proxmoxer"), exception=PROXMOXER_IMPORT_ERROR)
        self.api = self._connect()

    # -- connection -------------------------------------------------------------------------------
    def _connect(self):
        params = self.params
        url = urlparse(params["api_url"] if "://" in params["api_url"] else "https://" + params["api_url"])
        if url.scheme != "https" or not url.hostname:
            self.module.fail_json(msg="api_url must be https://host[:port], got %r" % params["api_url"])
        self.endpoint = "%s:%d" % (url.hostname, url.port or 8006)  # one Proxmox VE API (the storage slots' key)
        verify = params["validate_certs"]
        if verify and params["ca_path"]:
            verify = params["ca_path"]
        options = dict(port=url.port or 8006, verify_ssl=verify, timeout=params["api_timeout"], service="PVE")
        if params["api_token_id"]:
            user, sep, name = params["api_token_id"].partition("!")
            if not sep or not user or not name:
                self.module.fail_json(msg="api_token_id must be user@realm!name, got %r" % params["api_token_id"])
            options.update(user=user, token_name=name, token_value=params["api_token_secret"])
        else:
            options.update(user=params["api_user"], password=params["api_password"])
        try:
            return self.retry(lambda: ProxmoxAPI(url.hostname, **options), "connect to %s" % url.netloc)
        except ProxmoxError as exc:
            self.fail(exc)

    def fail(self, exc, **extra):
        fields = exc.fail_fields()
        fields.update(extra)
        self.module.fail_json(**fields)

    # -- calls ------------------------------------------------------------------------------------
    def _sleep(self, attempt):
        time.sleep(min(8.0, 0.5 * (2 ** attempt)))

    def retry(self, call, what, idempotent=True):
        """call() with exponential backoff on transient failures; ProxmoxError when it fails for good.
        A non-idempotent call (create, clone, start) is retried only on a lock timeout, which Proxmox
        answers before doing anything; other transient failures are raised as ambiguous, for the caller
        to read the state before trying again."""
        attempt = 0
        while True:
            try:
                return call()
            except (ResourceException,) + CONNECTION_ERRORS as exc:
                status = getattr(exc, "status_code", None)
                text = error_text(exc) if isinstance(exc, ResourceException) else str(exc)
                refused_before = isinstance(exc, ResourceException) and bool(LOCK_TIMEOUT.search(text))
                if is_transient(exc) and attempt < self.retries and (idempotent or refused_before):
                    self._sleep(attempt)
                    attempt += 1
                    self.retried += 1
                    continue
                raise ProxmoxError("Proxmox VE: %s failed: %s" % (what, text), proxmox_error=text, status=status,
                                   ambiguous=is_transient(exc) and not refused_before) from None

    def get(self, path, **params):
        return self.retry(lambda: self.api(path).get(**params), "GET %s" % path)

    def post(self, path, **params):
        return self.retry(lambda: self.api(path).post(**params), "POST %s" % path)

    def put(self, path, **params):
        return self.retry(lambda: self.api(path).put(**params), "PUT %s" % path)

    def delete(self, path, **params):
        return self.retry(lambda: self.api(path).delete(**params), "DELETE %s" % path)

    def node_path(self, *parts):
        return "/".join(["nodes", self.node] + [str(part) for part in parts])

    # -- tasks ------------------------------------------------------------------------------------
    def task_log(self, upid):
        try:
            lines = self.get(self.node_path("tasks", upid, "log"), limit=1000)
        except ProxmoxError:
            return []
        return [line.get("t", "") for line in lines or []]

    def wait_task(self, upid, timeout=600, what="task"):
        """Polls a UPID until it stops; returns its status dict. Raises ProxmoxError on a failed task
        (with the task's log lines) or when it runs longer than timeout seconds."""
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            status = self.get(self.node_path("tasks", upid, "status"))
            if status.get("status") == "stopped":
                exitstatus = status.get("exitstatus")
                if exitstatus != "OK":
                    raise ProxmoxError("Proxmox VE: %s failed: %s" % (what, exitstatus), proxmox_error=exitstatus,
                                       status=status.get("status"), task_log=self.task_log(upid), upid=upid)
                return status
            if time.monotonic() > deadline:
                raise ProxmoxError("Proxmox VE: %s still running after %d s (task %s)" % (what, timeout, upid),
                                   proxmox_error="timeout", status=status.get("status"),
                                   task_log=self.task_log(upid), upid=upid)
            time.sleep(delay)
            delay = min(1.0, delay * 1.5)

    def run_task(self, method, path, what, timeout=600, landed=None, **params):
        """Starts a task (POST/PUT/DELETE answering a UPID) and waits for it; a task that failed on a lock
        timeout is started again, with backoff. Returns (upid, status).

        landed: for a call that must not run twice (create, clone, start). After an ambiguous answer the
        call is not repeated blindly: landed() reads the state (waiting for a task it may have started) and
        says whether the call took effect; only when it did not is it tried again. Then upid is None."""
        attempt = 0
        while True:
            try:
                upid = self.retry(lambda: getattr(self.api(path), method)(**params),
                                  "%s %s" % (method.upper(), path), idempotent=landed is None)
            except ProxmoxError as exc:
                if not (exc.ambiguous and landed is not None and attempt < self.retries):
                    raise
                self.reread += 1
                if landed():
                    return None, {"status": "stopped", "exitstatus": "OK"}
                self._sleep(attempt)
                attempt += 1
                continue
            try:
                return upid, self.wait_task(upid, timeout, what)
            except ProxmoxError as exc:
                if exc.proxmox_error and LOCK_TIMEOUT.search(exc.proxmox_error) and attempt < self.retries:
                    self._sleep(attempt)
                    attempt += 1
                    self.retried += 1
                    continue
                raise
