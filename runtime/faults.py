"""A seeded fault injector for the bytes one side puts on the wire.

A pty or ``loop://`` never loses a byte; a UART with a marginal cable does. :class:`FaultInjector` sits in a
:class:`runtime.link.Link`'s transmit path (``Link(..., faults=FaultInjector(...))``) and damages what
that side sends; give each side its own injector to damage both directions. It is pure: ``apply(bytes)``
returns the bytes to transmit, so the same seed and the same writes give the same faults.

Frame faults (a frame = bytes up to and including a 0x00 delimiter), each with its own rate per frame:

* ``drop``: the frame vanishes;
* ``corrupt``: 1 to ``max_flips`` bits flip inside the frame body (never its delimiter);
* ``duplicate``: the frame is sent twice;
* ``delay``: the frame is held back and sent after ``delay_frames`` later frames (reordering).

Byte faults, rates per byte, applied after the frame faults and anywhere (delimiters included, as line
noise would): ``byte_drop``, ``byte_flip`` (one random bit), ``byte_duplicate``.

Every fault is counted in :attr:`FaultInjector.counts`; ``damaged`` lists the ordinals (0-based, in write
order) of frames dropped or corrupted by frame faults.
"""

from __future__ import annotations

import random
from collections import Counter

import numpy as np


class FaultInjector:
    """Seeded, reproducible damage to a byte stream; see the module docstring for the fault kinds."""

    def __init__(
        self,
        seed: int = 0,
        *,
        drop: float = 0.0,
        corrupt: float = 0.0,
        duplicate: float = 0.0,
        delay: float = 0.0,
        delay_frames: int = 1,
        max_flips: int = 3,
        byte_drop: float = 0.0,
        byte_flip: float = 0.0,
        byte_duplicate: float = 0.0,
    ) -> None:
        for name, rate in (
            ("drop", drop),
            ("corrupt", corrupt),
            ("duplicate", duplicate),
            ("delay", delay),
            ("byte_drop", byte_drop),
            ("byte_flip", byte_flip),
            ("byte_duplicate", byte_duplicate),
        ):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"fault rate {name}={rate} outside [0, 1]")
        if delay_frames < 1 or max_flips < 1:
            raise ValueError("delay_frames and max_flips must be ≥ 1")
        self.rates = {"drop": drop, "corrupt": corrupt, "duplicate": duplicate, "delay": delay}
        self.byte_rates = {"drop": byte_drop, "flip": byte_flip, "duplicate": byte_duplicate}
        self.delay_frames = delay_frames
        self.max_flips = max_flips
        self._rng = random.Random(seed)
        self._np_rng = np.random.default_rng(seed)
        self._partial = b""
        self._held: list[tuple[int, bytes]] = []  # (frames still to wait, frame bytes)
        self._delayed: bytes | None = None
        self.counts: Counter[str] = Counter()
        self.damaged: list[int] = []
        self.enabled = True

    @classmethod
    def damaging(cls, fraction: float, seed: int = 0) -> FaultInjector:
        """An injector that drops or corrupts ``fraction`` of frames, half each."""
        return cls(seed, drop=fraction / 2, corrupt=fraction / 2)

    def apply(self, data: bytes) -> bytes:
        """The bytes to transmit in place of ``data``. A trailing partial frame waits for its delimiter."""
        if not self.enabled:
            return data
        chunks = (self._partial + data).split(b"\x00")
        self._partial = chunks.pop()
        out = bytearray()
        for body in chunks:
            out += self._frame(body + b"\x00")
        return self._bytes(bytes(out)) if any(self.byte_rates.values()) else bytes(out)

    def flush(self) -> bytes:
        """Release held frames and any partial frame (without further damage)."""
        out = b"".join(frame for _, frame in self._held) + self._partial
        self._held.clear()
        self._partial = b""
        return out

    def _frame(self, frame: bytes) -> bytes:
        ordinal = self.counts["frames"]
        self.counts["frames"] += 1
        out = bytearray(self._damage(frame, ordinal))
        # frames held back go out after `delay_frames` later frames, so they arrive out of order
        waiting = []
        for left, held in self._held:
            if left <= 1:
                out += held
            else:
                waiting.append((left - 1, held))
        self._held = waiting
        if self._delayed is not None:
            self._held.append((self.delay_frames, self._delayed))
            self._delayed = None
        return bytes(out)

    def _damage(self, frame: bytes, ordinal: int) -> bytes:
        rates = self.rates
        if rates["drop"] and self._rng.random() < rates["drop"]:
            self.counts["frames_dropped"] += 1
            self.damaged.append(ordinal)
            return b""
        if rates["corrupt"] and len(frame) > 1 and self._rng.random() < rates["corrupt"]:
            frame = self._flip(frame)
            self.counts["frames_corrupted"] += 1
            self.damaged.append(ordinal)
        if rates["delay"] and self._rng.random() < rates["delay"]:
            self.counts["frames_delayed"] += 1
            self._delayed = frame
            return b""
        if rates["duplicate"] and self._rng.random() < rates["duplicate"]:
            self.counts["frames_duplicated"] += 1
            return frame + frame
        return frame

    def _flip(self, frame: bytes) -> bytes:
        damaged = bytearray(frame)
        for _ in range(self._rng.randint(1, self.max_flips)):
            pos = self._rng.randrange(len(damaged) - 1)  # the delimiter stays, so damage stays in this frame
            damaged[pos] ^= 1 << self._rng.randrange(8)
            self.counts["bits_flipped"] += 1
        return bytes(damaged)

    def _bytes(self, data: bytes) -> bytes:
        if not data:
            return data
        arr = np.frombuffer(data, dtype=np.uint8).copy()
        rng = self._np_rng
        flip = rng.random(arr.size) < self.byte_rates["flip"]
        arr[flip] ^= (1 << rng.integers(0, 8, size=int(flip.sum()))).astype(np.uint8)
        keep = rng.random(arr.size) >= self.byte_rates["drop"]
        reps = keep.astype(np.int64) + (rng.random(arr.size) < self.byte_rates["duplicate"]) * keep
        self.counts["bytes"] += arr.size
        self.counts["bytes_flipped"] += int(flip.sum())
        self.counts["bytes_dropped"] += int((~keep).sum())
        self.counts["bytes_duplicated"] += int((reps > 1).sum())
        return np.repeat(arr, reps).tobytes()
