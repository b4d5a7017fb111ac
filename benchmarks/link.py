"""Events per second host → pty → SimBoard over a paced UART, against the link's theoretical capacity.

    python benchmarks/link.py [--baud 3000000] [--seconds 3] [--events-per-step 200]

Both ends of a pty transmit at most baud/10 bytes per second (8N1), as a UART would. The capacity is
baud/10 divided by the wire bytes per event of the very frames sent (4-byte records, the 8-byte run
header, the 6-byte frame header, CRC-32, COBS and the delimiter); the target is a ratio of at least 90 %.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import emulator  # noqa: E402
from runtime.board import sim_board_link  # noqa: E402
from runtime.framing import encode_frame  # noqa: E402
from runtime.host import BoardClient  # noqa: E402
from runtime.protocol import DEFAULT_MAX_PAYLOAD, Events, pack_runs  # noqa: E402


def build_program(n_in: int) -> emulator.Program:
    rng = np.random.default_rng(0)
    b = emulator.ProgramBuilder("loihi")
    x = b.input("in", n_in)
    h = b.population("h", 64, du=3000, dv=2000, vth=200, bias_mant=0, bias_exp=0)
    b.connect(x, h, weights=rng.integers(-20, 60, (64, n_in)), weight_exp=0, num_weight_bits=8)
    b.output("out", h)
    return b.build()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baud", type=int, default=3_000_000)
    parser.add_argument("--seconds", type=float, default=3.0, help="approximate length of the run")
    parser.add_argument("--events-per-step", type=int, default=200)
    parser.add_argument("--inputs", type=int, default=1024, help="input channels of the program")
    parser.add_argument("--steps-per-call", type=int, default=50, help="steps per send_events call")
    args = parser.parse_args()

    program = build_program(args.inputs)
    rng = np.random.default_rng(1)
    bytes_per_s = args.baud / 10
    n_steps = int(args.seconds * bytes_per_s / 4.2 / args.events_per_step) + 1
    steps = np.repeat(np.arange(n_steps), args.events_per_step)
    axons = np.concatenate(
        [rng.choice(args.inputs, args.events_per_step, replace=False) for _ in range(n_steps)]
    )
    n_events = steps.size

    # the exact bytes these events occupy on the wire, framed as the client will frame them
    wire = 0
    for lo in range(0, n_steps, args.steps_per_call):
        hi = min(lo + args.steps_per_call, n_steps)
        sel = slice(lo * args.events_per_step, hi * args.events_per_step)
        runs = pack_runs(Events, 0, lo, hi, steps[sel], axons[sel], None, DEFAULT_MAX_PAYLOAD)
        wire += sum(len(encode_frame(Events.TYPE, 0xFFFF, m.encode(), f)) for m, f in runs)
    bytes_per_event = wire / n_events
    capacity = bytes_per_s / bytes_per_event

    with sim_board_link("loihi", baudrate=args.baud, pace=True) as (link, board, _):
        with BoardClient(link) as client:
            client.hello()
            t_up = time.perf_counter()
            client.upload(program)
            t_up = time.perf_counter() - t_up
            client.start()
            t0 = time.perf_counter()
            for lo in range(0, n_steps, args.steps_per_call):
                hi = min(lo + args.steps_per_call, n_steps)
                sel = slice(lo * args.events_per_step, hi * args.events_per_step)
                client.send_events(steps[sel], axons[sel], end_step=hi)
            client.flush(timeout=10.0)
            elapsed = time.perf_counter() - t0
            stats = client.stats()
            host = client.counters()
            spikes = client.take_spikes()

    rate = n_events / elapsed
    ratio = rate / capacity
    print(f"link            {args.baud:,} baud paced (8N1: {bytes_per_s:,.0f} B/s), host -> pty -> SimBoard")
    size = len(program.to_bytes())
    print(f"program         loihi, {args.inputs} inputs -> 64 neurons; upload {size:,} B in {t_up:.2f} s")
    print(f"events          {n_events:,} over {n_steps:,} steps ({args.events_per_step}/step)")
    print(f"wire bytes      {bytes_per_event:.3f} per event framed (4.000 raw)")
    print(f"capacity        {capacity:,.0f} events/s")
    print(f"measured        {rate:,.0f} events/s in {elapsed:.2f} s")
    print(f"ratio           {ratio:.1%}  (target >= 90%)")
    print(
        f"board           steps_run={stats['steps_run']:,} events_rx={stats['events_rx']:,} "
        f"lost_frames={stats['event_frames_lost']} overflow={stats['event_frames_overflow']} "
        f"spikes_tx={stats['spikes_tx']:,}; host credit_requests={host.get('credit_requests', 0)} "
        f"spikes_rx={sum(run.steps.size for run in spikes.values()):,}"
    )
    return 0 if ratio >= 0.9 else 1


if __name__ == "__main__":
    sys.exit(main())
