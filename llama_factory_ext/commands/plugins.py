"""``llamafactory-ext plugins``."""

import json


def add_arguments(parser):
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args) -> int:
    from .. import plugins

    rows = plugins.describe()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        kind = "built-in" if r["builtin"] else "external"
        print(f"{r['name']}  [{kind}, {r['package']} {r['version']}]")
        print(f"    hooks: {', '.join(r['hooks']) or '-'}")
        if r["strategies"]:
            print(f"    strategies: {', '.join(r['strategies'])}")
        if r["stages"]:
            print(f"    stages: {', '.join(r['stages'])}")
    return 0
