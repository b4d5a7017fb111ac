from runtime.board import BoardThread, SimBoard, sim_board_link  # noqa: F401
from runtime.events import EVENT_DTYPE, event_info, iter_events, read_events, write_events  # noqa: F401
from runtime.faults import FaultInjector  # noqa: F401
from runtime.host import BoardClient, BoardRefused, SpikeRun  # noqa: F401
from runtime.link import Link  # noqa: F401
from runtime.sources import (  # noqa: F401
    FileSource,
    MovingBarSource,
    MovingShapeSource,
    PoissonSource,
    SerialSource,
    open_source,
)
from runtime.stream import Streamer, load_spikes  # noqa: F401
from runtime.transforms import (  # noqa: F401
    Crop,
    Denoise,
    Downsample,
    HotPixels,
    MergePolarity,
    Pipeline,
    Refractory,
    SplitPolarity,
    TimeBinner,
    ToAxons,
)
