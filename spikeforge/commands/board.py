"""``spikeforge board``: serve a SimBoard on a serial port or a new pseudo-terminal until interrupted.

spikeforge board --port /dev/ttyUSB1 --target loihi --baud 3000000
spikeforge board --pty --target loihi          # prints the pty path a host opens, e.g. /dev/pts/7
"""

from __future__ import annotations

import argparse
import sys
import threading


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "board",
        help="serve a simulated board (SimBoard) on a serial port or a pty",
        description="Answer the spikeforge board protocol on a serial link, running uploaded programs in "
        "the bit-accurate emulator. Stop with Ctrl-C.",
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--port", metavar="URL", help="serial device or pyserial URL (socket://host:port, ...)"
    )
    where.add_argument("--pty", action="store_true", help="create a pseudo-terminal and print its path")
    p.add_argument("--target", required=True, help="chip this board emulates (a hw_specs name), e.g. loihi")
    p.add_argument("--baud", type=int, default=3_000_000, help="baud rate (default 3000000)")
    p.add_argument("--pace", action="store_true", help="transmit no faster than the baud rate, like a UART")
    p.add_argument("--credits", type=int, default=32, help="EVENTS frames the board queues (default 32)")
    p.add_argument(
        "--max-payload", type=int, default=1024, help="largest frame payload, bytes (default 1024)"
    )
    p.add_argument("--engine", default="fast", help="emulator engine: fast or reference (default fast)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import hw_specs
    from runtime.board import SimBoard
    from runtime.link import Link

    hw_specs.load(args.target)  # an unknown target fails now, with the list of known ones
    if args.pty:
        link = Link.pty(keep_slave_open=True, baudrate=args.baud, pace=args.pace)
    else:
        link = Link(args.port, baudrate=args.baud, pace=args.pace)
    with link:
        board = SimBoard(
            link, args.target, credits=args.credits, max_payload=args.max_payload, engine=args.engine
        )
        print(f"spikeforge board: {args.target} SimBoard serving {link.url} at {args.baud} baud", flush=True)
        if args.pty:
            print(link.url, flush=True)
        stop = threading.Event()
        try:
            board.serve(stop)
        except KeyboardInterrupt:
            pass
        finally:
            stats = board.stats()
            summary = ", ".join(
                f"{k}={stats[k]}"
                for k in ("steps_run", "events_rx", "event_frames_lost", "spikes_tx", "nacks_tx")
            )
            print(f"spikeforge board: stopped ({summary})", file=sys.stderr)
    return 0
