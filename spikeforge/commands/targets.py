"""``spikeforge targets [show NAME|PATH] [--json]``: the chip targets and their limits."""

from __future__ import annotations

import argparse
import json

import hw_specs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("targets", help="list chip targets and their key limits; 'targets show NAME' for one")
    p.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    p.add_argument("name", nargs="?", help="target name or path to a .toml spec (with 'show')")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.action == "show":
        if not args.name:
            print("spikeforge targets show: name a target, e.g. 'spikeforge targets show loihi'")
            return 2
        spec = hw_specs.load(args.name)
        if args.json:
            print(json.dumps(spec.to_dict(), indent=2, sort_keys=True))
        else:
            print(_show(spec))
        return 0
    specs = [hw_specs.load(n) for n in hw_specs.available()]
    rows = [s.summary() for s in specs]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(_table(rows))
    return 0


def _table(rows: list[dict]) -> str:
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols), "  ".join("-" * widths[c] for c in cols)]
    lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in cols) for r in rows]
    return "\n".join(lines)


def _show(spec: hw_specs.HwSpec) -> str:
    d = spec.to_dict()
    out = [f"{spec.name} ({spec.family}) — {spec.description}",
           f"file: {spec.where()}  sha256: {spec.digest[:16]}…", ""]
    for section in ("chip", "synapse", "registers", "defaults", "state", "learning", "link", "energy"):
        values = d[section]
        if not values:
            continue
        out.append(f"[{section}]")
        width = max(len(k) for k in values)
        for k, v in values.items():
            if isinstance(v, dict):
                v = ", ".join(f"{a}={b}" for a, b in v.items())
            out.append(f"  {k.ljust(width)}  {v}")
        out.append("")
    return "\n".join(out).rstrip()
