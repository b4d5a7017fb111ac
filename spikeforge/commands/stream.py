"""``spikeforge stream``: events from a file, a serial eDVS or a synthetic scene into a Program.

Example::

    spikeforge stream --program net.sfp --source "synthetic:bar?speed=200&width=32&height=32" \\
        --target emulator --dt-us 1000 --transforms downsample=2,refractory=1000 --save-spikes out.npz
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the runtime is imported when the command runs, not when the CLI starts
    from runtime.sources import EventSource


def register(sub: Any) -> None:
    p = sub.add_parser(
        "stream",
        help="stream events through transforms into a program (emulator or board) with live statistics",
        description=(
            "Stream events into a compiled program. Sources: FILE, file:FILE?realtime=1&speed=1, "
            "serial:URL?format=E2&baud=4000000, synthetic:poisson|bar|disc|square?k=v. Events pass the "
            "transforms, are binned into steps of --dt-us and mapped onto the program's input axons "
            "(axon = (p*H + y)*W + x by default). Statistics are printed at most every 0.5 s; Ctrl-C ends "
            "the stream with a summary and the spikes so far saved."
        ),
    )
    p.add_argument("--program", required=True, help="program file (.sfp)")
    p.add_argument(
        "--source", required=True, help="FILE | serial:URL[?format=E2&baud=N] | synthetic:NAME[?k=v]"
    )
    p.add_argument(
        "--target", default="emulator", help="emulator (default), emulator:reference, or a board URL"
    )
    p.add_argument("--dt-us", type=int, default=1000, help="step length in µs of sensor time (default 1000)")
    p.add_argument(
        "--transforms",
        default="",
        help="comma-separated: crop=WxH|X0:Y0:WxH, downsample=F, refractory=US, denoise=US, hot=HZ, "
        "merge-polarity, split-polarity[=on|off]",
    )
    p.add_argument("--sensor", help="sensor size WxH[xP] when the source does not state it (P default 2)")
    p.add_argument("--t0-us", type=int, help="time (µs) of step 0 (default: the first event)")
    p.add_argument("--input-port", help="input port when the program has several")
    p.add_argument("--layout", default="pyx", choices=("pyx", "yxp", "pxy"), help="axon layout (default pyx)")
    p.add_argument(
        "--max-count", type=int, help="clip per-axon counts per step (default: the target's limit)"
    )
    p.add_argument("--duration", type=float, help="stop after this many seconds of sensor time")
    p.add_argument("--save-spikes", metavar="OUT.npz", help="save output spikes (also on Ctrl-C)")
    p.add_argument("--baud", type=int, default=3_000_000, help="board link baud rate (default 3000000)")
    p.add_argument("--quiet", action="store_true", help="no live statistics, only the summary")
    p.set_defaults(func=run)


def _sensor(text: str | None, source: EventSource) -> tuple[int, int, int] | None:
    if text is None:
        if source.width is None or source.height is None:
            return None
        return (int(source.width), int(source.height), 2)
    parts = [int(v) for v in text.lower().split("x")]
    if len(parts) not in (2, 3):
        raise ValueError(f"--sensor {text!r}: expected WxH or WxHxP")
    return (parts[0], parts[1], parts[2] if len(parts) == 3 else 2)


def run(args: argparse.Namespace) -> int:
    import emulator
    from runtime.sources import open_source
    from runtime.stream import Streamer, StreamStats, open_target
    from runtime.transforms import parse_transforms

    program = emulator.Program.load(args.program)
    source = open_source(args.source)
    try:
        size = _sensor(args.sensor, source)
        if size is None:
            raise ValueError(f"source {args.source!r} does not state its sensor size; pass --sensor WxH")
        transforms = parse_transforms(args.transforms, size)
        # a live sensor prefers fresh input over complete input; a recording wants every event
        policy = "drop_oldest" if source.live else "block"
        kwargs = {} if args.target.startswith("emulator") else {"baudrate": args.baud, "drop_policy": policy}
        target = open_target(args.target, program, **kwargs)
    except BaseException:
        source.close()
        raise

    def show(stats: StreamStats) -> None:
        print(stats.line(), flush=True)

    try:
        streamer = Streamer(
            program,
            source,
            target,
            dt_us=args.dt_us,
            transforms=transforms,
            size=size,
            t0_us=args.t0_us,
            input_port=args.input_port,
            layout=args.layout,
            max_count=args.max_count,
            duration_s=args.duration,
            on_stats=None if args.quiet else show,
        )
        stats = streamer.run()
    finally:
        target.close()
        source.close()
    if args.save_spikes:
        streamer.save(args.save_spikes)
    print(stats.summary())
    if args.save_spikes:
        print(f"  saved          {args.save_spikes}")
    if streamer.error is not None:
        print(f"spikeforge stream: error: {streamer.error}", file=sys.stderr)
        return 1
    return 130 if stats.ended == "interrupted" else 0
