"""EVT 2.1 forced to the legacy (IMX636) half order, whatever the header says; see ``evt21``."""

from __future__ import annotations

from typing import BinaryIO

from runtime.events import evt21
from runtime.events.evt21 import BYTES_PER_EVENT, GRANULE, Decoder
from runtime.events.reader import Header

NAME = "evt21-legacy"
__all__ = ["BYTES_PER_EVENT", "GRANULE", "NAME", "Decoder", "read_header"]


def read_header(fh: BinaryIO) -> Header:
    header = evt21.read_header(fh)
    header.meta["layout"] = "legacy"
    return header
