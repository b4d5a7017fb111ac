"""``spikeforge events``: describe and convert event files.

``spikeforge events info FILE [--format F] [--json]`` prints count, time span, sensor size, mean rate
and polarity balance. ``spikeforge events convert IN OUT [--from F] [--to F] [--width W --height H]``
streams IN into OUT chunk by chunk (bounded memory); OUT's format comes from ``--to`` or its extension.
"""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "events",
        help="describe and convert event-camera files (EVT 2/2.1/3, DAT, AEDAT 2/3.1/4, npy/npz)",
        description="Describe and convert event-camera files.",
    )
    sub = parser.add_subparsers(dest="events_command", metavar="ACTION")

    info = sub.add_parser("info", help="count, duration, resolution, rate and polarity balance of a file")
    info.add_argument("file")
    info.add_argument("--format", default=None, help="override format detection (e.g. evt3, aedat4)")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(func=_info)

    convert = sub.add_parser("convert", help="convert IN to OUT, streaming")
    convert.add_argument("input")
    convert.add_argument("output")
    convert.add_argument("--from", dest="in_format", default=None, help="input format (default: detect)")
    convert.add_argument(
        "--to",
        dest="out_format",
        default=None,
        help="output format: evt2, evt3, aedat4, aedat4-lz4, aedat4-zstd, npy, npz (default: extension)",
    )
    convert.add_argument("--width", type=int, default=None, help="sensor width for the output header")
    convert.add_argument("--height", type=int, default=None, help="sensor height for the output header")
    convert.add_argument("--chunk", type=int, default=1_000_000, help="events per chunk (memory bound)")
    convert.set_defaults(func=_convert)

    parser.set_defaults(func=lambda args: _usage(parser))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _info(args: argparse.Namespace) -> int:
    from runtime.events import event_info

    info = event_info(args.file, format=args.format)
    if args.json:
        print(json.dumps(info.as_dict(), indent=2))
        return 0
    size = f"{info.width} x {info.height} ({info.resolution_source})" if info.width else "unknown"
    span = f"{info.t_start} .. {info.t_end} us" if info.count else "-"
    print(f"file        {info.path} ({info.file_bytes} bytes)")
    print(f"format      {info.format}")
    print(f"events      {info.count}")
    print(f"time        {span} (duration {info.duration_us / 1e6:.6f} s)")
    print(f"resolution  {size}")
    print(f"mean rate   {info.mean_rate_hz / 1e3:.3f} kev/s")
    if info.count:
        print(f"polarity    ON {info.on_count}, OFF {info.off_count} (ON fraction {info.on_fraction:.3f})")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from runtime.events import convert

    n = convert(
        args.input,
        args.output,
        format=args.in_format,
        out_format=args.out_format,
        width=args.width,
        height=args.height,
        chunk_events=args.chunk,
    )
    print(f"wrote {n} events to {args.output}")
    return 0
