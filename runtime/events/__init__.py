"""Event files: read, stream, write and describe Prophesee, iniVation and NumPy event recordings.

Events are ``EVENT_DTYPE`` structured arrays (fields ``x``, ``y`` uint16; ``t`` int64 µs; ``p`` int8
0/1), accessed by field name. See ``docs/events.md`` for the formats and error behaviour.
"""

from runtime.events.api import convert, iter_events, read_events, read_header, write_events
from runtime.events.detect import FORMATS
from runtime.events.dtype import EVENT_DTYPE, FIELD_ALIASES, alloc_events, as_events
from runtime.events.info import EventInfo, event_info
from runtime.events.reader import EventFormatWarning, Header

__all__ = [
    "EVENT_DTYPE",
    "FIELD_ALIASES",
    "FORMATS",
    "EventFormatWarning",
    "EventInfo",
    "Header",
    "alloc_events",
    "as_events",
    "convert",
    "event_info",
    "iter_events",
    "read_events",
    "read_header",
    "write_events",
]
