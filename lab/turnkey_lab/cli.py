"""`lab`: run the local twin of the homelab on loopback. See docs/lab.md."""

from __future__ import annotations

import argparse
import json
import sys

from . import components as registry
from . import control, supervisor
from .components import PROFILES
from .state import DIR_ENV, NET_ENV, LabError, parse_net

COMMANDS = ("up", "down", "status", "reset", "env")


def _names(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


def _net(value: str) -> str:
    try:
        return parse_net(value)
    except LabError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _global_options(parser: argparse.ArgumentParser, default) -> None:
    parser.add_argument("--state-dir", default=default, metavar="DIR",
                        help=f"the lab's state folder (default: ${DIR_ENV}, else ./.lab)")
    parser.add_argument("--net", default=default, type=_net, metavar="127.N",
                        help=f"loopback /16 the components listen in (default: ${NET_ENV}, else the last "
                             "`up`'s, else 127.10)")


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="lab", description=__doc__)
    _global_options(main, None)
    # The same options after the command; SUPPRESS keeps a sub-parser from resetting what came before it.
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, argparse.SUPPRESS)
    sub = main.add_subparsers(dest="command", required=True, metavar="{" + ",".join(COMMANDS) + "}")

    up = sub.add_parser("up", parents=[common], help="start the lab (or check it runs), wait until healthy")
    up.add_argument("--profile", choices=PROFILES,
                    help="fast: in-memory storage; realistic (default): persistent storage, e.g. raft")
    up.add_argument("--components", type=_names, metavar="A,B",
                    help=f"run only these (known: {', '.join(registry.names())})")
    up.add_argument("--timeout", type=float, metavar="SECONDS", help="how long to wait for health")
    sub.add_parser("down", parents=[common], help="stop every lab process")
    status = sub.add_parser("status", parents=[common], help="per component: pid, alive, healthy, restarts")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    sub.add_parser("reset", parents=[common], help="down, then wipe data, logs and credentials (keeps CA and "
                                                   "vault password)")
    sub.add_parser("env", parents=[common], help="print shell exports: eval \"$(lab env)\"")

    # Internal: what `lab up` runs detached.
    internal = sub.add_parser("_supervise", parents=[common])
    internal.add_argument("--profile", choices=PROFILES, required=True)
    internal.add_argument("--components", type=_names, required=True)
    return main


def _say(message: str) -> None:
    print(message, flush=True)


def _print_status(result: dict) -> None:
    sup = result["supervisor"]
    supervisor_state = f"pid {sup['pid']}" if sup["alive"] else "not running"
    print(f"lab {result['state_dir']}  net {result['net']}  profile {result['profile'] or '-'}  "
          f"supervisor {supervisor_state}")
    rows = [("NAME", "PID", "ALIVE", "HEALTHY", "RESTARTS", "URL", "DETAIL")]
    for name, c in result["components"].items():
        yes_no = ["yes" if c[key] else "no" for key in ("alive", "healthy")]
        rows.append((name, str(c["pid"] or "-"), *yes_no, str(c["restarts"]), c["url"], c["detail"]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1])


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        lab = control.resolve_lab(args.state_dir, args.net)
        if args.command == "up":
            control.up(lab, args.profile, args.components, args.timeout, _say)
        elif args.command == "down":
            control.down(lab, _say)
        elif args.command == "reset":
            control.reset(lab, _say)
        elif args.command == "status":
            result = control.status(lab)
            if args.json:
                print(json.dumps(result, indent=2))
            else:
                _print_status(result)
            return 0 if result["ok"] else 1
        elif args.command == "env":
            for name, value in control.shell_env(lab).items():
                print(f"export {name}={value}")
        elif args.command == "_supervise":
            return supervisor.main(lab, args.profile, registry.build(lab, args.profile, args.components))
    except LabError as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # The supervisor has its own session: it keeps running without us.
        print("lab: interrupted; see `lab status`, or stop everything with `lab down`", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
