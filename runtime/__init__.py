from runtime.events import EVENT_DTYPE, event_info, iter_events, read_events, write_events  # noqa: F401
