"""``spikeforge inspect PROGRAM``: what a program uses of its chip."""

from __future__ import annotations

import argparse
import json
from typing import Any

from emulator import Program


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="show cores, neurons, axons, synapses, memory and routes a program uses")
    p.add_argument("program", help="a .sfp program file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--cores", type=int, default=16, help="list at most this many cores (default 16)")
    p.set_defaults(func=run)


def usage(program: Program) -> dict:
    """Resource use of ``program`` against its chip, as plain data."""
    chip = program.spec.chip
    cores: list[dict[str, float]] = [dict(c) for c in program.core_usage()]
    total_syn = sum(c["synapses"] for c in cores)

    def pct(x: float, cap: float) -> float:
        return round(100.0 * x / cap, 1) if cap else 0.0

    for c in cores:
        c["neurons_pct"] = pct(c["neurons"], chip.neurons_per_core)
        c["axons_in_pct"] = pct(c["axons_in"], chip.axons_in_per_core)
        c["synapse_mem_pct"] = pct(c["synapse_bits"], chip.synapse_memory_bits_per_core)
    return {
        "target": program.target,
        "family": program.family,
        "digest": program.digest,
        "cores_used": program.n_cores,
        "cores_available": program.spec.total_cores,
        "chips_used": -(-program.n_cores // chip.cores_per_chip),
        "neurons": program.n_neurons,
        "axons": program.n_axons,
        "synapses": total_syn,
        "routes": int(program.route_src.size),
        "input_routes": int(program.in_dst.size),
        "max_route_delay": int(program.route_delay.max()) if program.route_delay.size else 0,
        "inputs": program.inputs,
        "outputs": program.outputs,
        "populations": {p.name: p.size for p in program.populations.values()},
        "projections": [{"name": p.name, "pre": p.pre, "post": p.post, **dict(p.params), **_learning(p)}
                        for p in program.projections],
        "per_core": cores,
        "metadata": dict(program.metadata),
    }


def _learning(projection: Any) -> dict[str, Any]:
    """A plastic projection's rule and epoch (nothing for a fixed one)."""
    rule = projection.plasticity
    return {} if rule is None else {"plasticity": repr(rule.rule), "epoch": rule.epoch}


def render(u: dict, max_cores: int = 16) -> str:
    lines = [
        f"target {u['target']} ({u['family']})  digest {u['digest'][:16]}…",
        f"cores {u['cores_used']} of {u['cores_available']} ({u['chips_used']} chip(s)); neurons {u['neurons']}; "
        f"axons {u['axons']}; synapses {u['synapses']}; routes {u['routes']} (+{u['input_routes']} from inputs, "
        f"max delay {u['max_route_delay']})",
        "inputs:  " + ", ".join(f"{k}[{v}]" for k, v in u["inputs"].items()),
        "outputs: " + ", ".join(f"{k}[{v}]" for k, v in u["outputs"].items()),
        "populations: " + ", ".join(f"{k}[{v}]" for k, v in u["populations"].items()),
        "projections:",
    ]
    for p in u["projections"]:
        extra = " ".join(f"{k}={v}" for k, v in p.items() if k not in ("name", "pre", "post"))
        lines.append(f"  {p['name']}: {p['pre']} -> {p['post']} {extra}")
    lines.append("")
    head = f"{'core':>5} {'neurons':>12} {'axons in':>14} {'synapses':>9} {'syn mem bits':>20} {'routes out':>10}"
    lines.append(head)
    for c in u["per_core"][:max_cores]:
        lines.append(
            f"{c['core']:>5} {c['neurons']:>6} {c['neurons_pct']:>4}% {c['axons_in']:>7} {c['axons_in_pct']:>5}% "
            f"{c['synapses']:>9} {c['synapse_bits']:>12} {c['synapse_mem_pct']:>6}% {c['axons_out']:>10}"
        )
    if len(u["per_core"]) > max_cores:
        lines.append(f"  … {len(u['per_core']) - max_cores} more cores (--cores N to list more, --json for all)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    program = Program.load(args.program)
    u = usage(program)
    print(json.dumps(u, indent=2) if args.json else render(u, args.cores))
    return 0
