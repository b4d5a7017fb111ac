"""The ASCII header of Prophesee ``.raw`` and ``.dat`` files.

Layout: lines ``b"% <keyword> <value>\\n"`` at the start of the file, optionally ending with the line
``b"% end\\n"``; binary data starts right after. Without ``% end`` the header ends at the first
line that does not start with ``%`` (openeb's rule; a first data byte equal to ``0x25`` would be
mistaken for a header line, which is why writers here always emit ``% end``).

Keys understood: ``evt`` (``2.0``/``2.1``/``3.0``), ``format`` (``EVT2;height=H;width=W`` and
``endianness=legacy`` for EVT 2.1), ``geometry`` (``WxH``), ``Width``/``Height`` (DAT) and
``spikeforge_t_offset`` (microseconds added to every timestamp; written by our writers when the
first timestamp does not fit the format's time range).
"""

from __future__ import annotations

from typing import BinaryIO

from runtime.events.reader import Header, format_error

#: a header longer than this is taken as a corrupt file rather than read on forever
MAX_HEADER_BYTES = 1 << 20


def read_lines(fh: BinaryIO) -> tuple[list[tuple[str, str]], int]:
    """Read the ``%`` lines from the start of ``fh``; return ``[(key, value)]`` and the data offset."""
    fh.seek(0)
    items: list[tuple[str, str]] = []
    offset = 0
    while True:
        first = fh.read(1)
        if first != b"%":
            break
        line = first + fh.readline(MAX_HEADER_BYTES)
        if not line.endswith(b"\n"):
            raise format_error("header line has no end of line (file truncated inside the header?)", offset)
        offset += len(line)
        if offset > MAX_HEADER_BYTES:
            raise format_error(f"header longer than {MAX_HEADER_BYTES} bytes", offset)
        text = line[1:].decode("latin-1").strip()
        if text == "end":
            return items, offset
        key, _, value = text.partition(" ")
        items.append((key, value.strip()))
    return items, offset


def parse(fh: BinaryIO, fmt: str) -> Header:
    """Read a Prophesee header into a ``Header`` (format name ``fmt``), with width/height if given."""
    items, offset = read_lines(fh)
    meta = {key.lower(): value for key, value in items}
    width = height = None
    fmt_value = meta.get("format", "")
    for part in fmt_value.split(";")[1:]:
        k, _, v = part.partition("=")
        meta[f"format.{k.strip().lower()}"] = v.strip()
    try:
        if "format.width" in meta and "format.height" in meta:
            width, height = int(meta["format.width"]), int(meta["format.height"])
        elif "geometry" in meta:
            w, _, h = meta["geometry"].lower().partition("x")
            width, height = int(w), int(h)
        elif "width" in meta and "height" in meta:
            width, height = int(meta["width"]), int(meta["height"])
    except ValueError:
        raise format_error(f"header has an unreadable sensor size in {items}", 0) from None
    return Header(format=fmt, data_offset=offset, width=width, height=height, meta=meta)


def t_offset(header: Header) -> int:
    """Microseconds to add to every decoded timestamp (``% spikeforge_t_offset``), 0 if absent."""
    try:
        return int(header.meta.get("spikeforge_t_offset", "0"))
    except ValueError:
        raise format_error("header key spikeforge_t_offset is not an integer", 0) from None


def evt_version(header_meta: dict[str, str]) -> str | None:
    """``"evt2"``, ``"evt21"`` or ``"evt3"`` from the ``evt``/``format`` keys, or None if absent."""
    fmt = header_meta.get("format", "").split(";")[0].strip().upper()
    if fmt in ("EVT2", "EVT20"):
        return "evt2"
    if fmt == "EVT21":
        return "evt21"
    if fmt in ("EVT3", "EVT30"):
        return "evt3"
    evt = header_meta.get("evt", "").strip()
    return {"2.0": "evt2", "2.1": "evt21", "3.0": "evt3"}.get(evt)


def build(fmt_line: str, evt: str, width: int | None, height: int | None, t_offset_us: int) -> bytes:
    """Header bytes for our writers: ``% evt``, ``% format``, ``% geometry``, offset, ``% end``."""
    lines = [f"% evt {evt}"]
    if width is not None and height is not None:
        lines.append(f"% format {fmt_line};height={height};width={width}")
        lines.append(f"% geometry {width}x{height}")
    else:
        lines.append(f"% format {fmt_line}")
    if t_offset_us:
        lines.append(f"% spikeforge_t_offset {t_offset_us}")
    lines.append("% end")
    return ("\n".join(lines) + "\n").encode("ascii")
