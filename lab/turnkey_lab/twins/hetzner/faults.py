"""The Hetzner twin's faults: the base kinds plus four of its own (POST /_lab/faults bodies).

  {"kind": "rate_limit_storm", "count": 5}            the next 5 API requests get 429 rate_limit_exceeded
  {"kind": "action_error", "match": "create_image",    the next matching action ends in status error
   "code": "action_failed", "message": "..."}          (base kind `task_fail` works the same)
  {"kind": "stuck_initializing", "match": "worker"}   the next server whose name matches never leaves
                                                      `initializing` (its create_server action never ends)
  {"kind": "answer_lost", "match": "POST /servers"}   the next matching request IS done, but its answer is
                                                      a 504 `timeout` (a gateway gave up waiting): a client
                                                      that sends it again blindly does it twice
Base kinds: `http_5xx` (status 500/502/503/504 -> server_error/bad_gateway/unavailable/timeout), `slow`.
"""

from __future__ import annotations

from ..faults import Faults


class HetznerFaults(Faults):
    KINDS = (*Faults.KINDS, "rate_limit_storm", "action_error", "stuck_initializing", "answer_lost")
