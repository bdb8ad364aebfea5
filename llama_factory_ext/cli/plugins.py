"""``llamafactory-ext plugins``."""

import json


def add_arguments(parser):
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args) -> int:
    import sys

    from .. import plugins
    from ..api import DISABLED_NOTE, pack_disabled

    rows = plugins.describe()
    status = "disabled" if pack_disabled() else "active"
    if args.json:
        if pack_disabled():
            print(DISABLED_NOTE, file=sys.stderr)
        out = [{**r, "status": status} for r in rows]
        out += [{"name": r["name"], "package": r["package"], "status": "left out", "reason": r["reason"]}
                for r in plugins.left_out()]
        print(json.dumps(out, indent=2))
        return 0
    if pack_disabled():
        print(DISABLED_NOTE, file=sys.stderr)
        print("(plugins below are installed, but not active while disabled)")
    for r in rows:
        kind = "built-in" if r["builtin"] else "external"
        print(f"{r['name']}  [{kind}, {r['package']} {r['version']}]")
        print(f"    hooks: {', '.join(r['hooks']) or '-'}")
        if r["strategies"]:
            print(f"    strategies: {', '.join(r['strategies'])}")
        if r["stages"]:
            print(f"    stages: {', '.join(r['stages'])}")
    for r in plugins.left_out():
        print(f"{r['name']}  [left out{', ' + r['package'] if r['package'] else ''}]\n    reason: {r['reason']}")
    return 0
