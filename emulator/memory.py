"""The memory budget of a run: how many steps and samples an engine takes at once.

A run of ``B`` samples over ``T`` steps needs about ``B · T · s`` bytes of working memory, where
``s`` is what the engine keeps per step and sample (spike histories, drives, probed states: the
engines' ``step_bytes``). :class:`emulator.Simulator` cuts a run into time chunks and
:func:`emulator.run` also into batch chunks so that each chunk stays within the budget; the
state carried between chunks makes the result identical to one run. The result itself (the
output spikes, probed states and synaptic operations the caller asked for) is allocated once.

The budget is, in order: the ``memory_budget`` argument (bytes, or a string such as
``"512MiB"``, ``"2G"``), the environment variable ``SPIKEFORGE_MEMORY_BUDGET`` (same forms), or
:data:`DEFAULT_FRACTION` of the memory available now, at most :data:`DEFAULT_CAP`.
"""

from __future__ import annotations

import os
import re

from spikeforge.errors import EmulatorError

__all__ = ["DEFAULT_FRACTION", "DEFAULT_CAP", "MIN_CHUNK_ROWS", "available", "budget", "parse", "chunks"]

#: share of the available memory a run may use by default
DEFAULT_FRACTION = 0.25
#: ... and at most this many bytes: beyond ~10^5 rows per product, bigger chunks are not faster
DEFAULT_CAP = 2 << 30
#: a batch is split only when fewer than this many steps of it would fit the budget
MIN_CHUNK_ROWS = 32

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1000, "kib": 1 << 10, "m": 1 << 20, "mb": 1000**2,
          "mib": 1 << 20, "g": 1 << 30, "gb": 1000**3, "gib": 1 << 30, "t": 1 << 40, "tb": 1000**4,
          "tib": 1 << 40}


def available() -> int:
    """Bytes of memory available to this process now: Linux's ``MemAvailable``, else the free
    physical pages, else 4 GiB."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, AttributeError):
        return 4 << 30


def parse(value: int | str, what: str = "memory_budget") -> int:
    """Bytes from ``value``: a positive int, or a number with a unit (``"512MiB"``, ``"1.5G"``;
    k/M/G/T are binary, kB/MB/GB/TB decimal)."""
    if isinstance(value, bool):
        raise EmulatorError(f"{what} = {value!r}; expected bytes (an int) or a size such as '512MiB'")
    if isinstance(value, int):
        n = value
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(value))
        unit = m.group(2).lower() if m else ""
        if m is None or unit not in _UNITS:
            raise EmulatorError(f"{what} = {value!r}; expected bytes or a size such as '512MiB', '2G'")
        n = int(float(m.group(1)) * _UNITS[unit])
    if n <= 0:
        raise EmulatorError(f"{what} = {value!r}; expected a positive size")
    return n


def budget(value: int | str | None = None) -> int:
    """The budget in bytes (module docstring)."""
    if value is not None:
        return parse(value)
    env = os.environ.get("SPIKEFORGE_MEMORY_BUDGET")
    if env:
        return parse(env, "SPIKEFORGE_MEMORY_BUDGET")
    return max(1 << 20, min(DEFAULT_CAP, int(available() * DEFAULT_FRACTION)))


def chunks(total: int, unit_bytes: int, limit: int) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges covering ``range(total)``, each of at most ``limit // unit_bytes``
    units (at least one)."""
    size = max(1, min(total, limit // max(1, unit_bytes))) if total else 1
    return [(lo, min(total, lo + size)) for lo in range(0, total, size)]
