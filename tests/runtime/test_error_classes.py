"""Errors are decided by class, optional extras fail with a message naming the extra, and the runtime's
module names say their jobs (``runtime.stream``: the host streaming session; ``runtime.events.reader``:
the chunked file reader)."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import runtime
from runtime.events import (
    EVENT_DTYPE,
    alloc_events,
    cd_jit,
    dat,
    evt2,
    evt3,
    evt3_jit,
    iter_events,
    read_events,
    write_events,
)
from runtime.events.reader import Header
from runtime.framing import Frame
from runtime.link import Link
from runtime.transforms import no_events, parse_transforms
from spikeforge.cli import COMMANDS, build_parser, main
from spikeforge.errors import (
    EventFormatError,
    LinkClosed,
    LinkError,
    LinkTimeout,
    MissingCodec,
    MissingExtra,
    SpikeforgeError,
)


def _events(n: int = 20) -> np.ndarray:
    ev = np.zeros(n, dtype=EVENT_DTYPE)
    ev["x"], ev["y"], ev["t"], ev["p"] = np.arange(n) % 7, np.arange(n) % 5, np.arange(n) * 10, np.arange(n) % 2
    return ev


def _receive_until_error(link: Link, timeout: float = 2.0) -> list[Frame]:
    got: list[Frame] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got += link.receive(0.05)
    return got


# --- the link: a closed peer is LinkClosed, other port failures get the likely cause ----------------
def test_peer_closing_a_pty_raises_link_closed_and_stays_lost() -> None:
    board = Link.pty().open()
    host = Link(board.url).open()
    board.peer_attached()
    host.close()
    with pytest.raises(LinkClosed) as info:
        _receive_until_error(board)
    assert "unplugged" not in str(info.value)  # the message already says the other side closed it
    with pytest.raises(LinkClosed):  # sticky, and still of its class
        board.receive(0.01)
    board.close()


class _FailingPort:
    """A port whose reads fail as a USB adapter pulled out does (an OSError, not a LinkError)."""

    in_waiting = 0

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def read(self, size: int = 1) -> bytes:
        raise self.exc

    def write(self, data: bytes) -> int:
        raise self.exc

    def close(self) -> None:
        pass


def test_other_port_failures_are_link_errors_with_the_likely_cause() -> None:
    link = Link("fake", _port=_FailingPort(OSError(5, "device gone")))
    with pytest.raises(LinkError) as info:
        link.receive(0.01)
    assert not isinstance(info.value, LinkClosed)
    assert "the other end closed the link or the device was unplugged" in str(info.value)


def test_a_link_error_whose_text_says_closed_still_gets_the_cause() -> None:
    # the decision is by class: a plain LinkError mentioning "closed" is not a LinkClosed
    link = Link("fake", _port=_FailingPort(LinkError("port closed by driver")))
    with pytest.raises(LinkError) as info:
        link.receive(0.01)
    assert type(info.value) is LinkError
    assert str(info.value).endswith("the other end closed the link or the device was unplugged")


def test_a_lost_link_keeps_the_class_of_the_failure() -> None:
    link = Link("fake", _port=_FailingPort(LinkTimeout("write did not drain")))
    with pytest.raises(LinkTimeout):
        link.send(b"\x01\x02\x00")
    with pytest.raises(LinkTimeout):
        link.receive(0.01)


# --- transforms: unknown names and bad values are told apart by where they are found --------------
def test_unknown_transform_is_named_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown transform 'blur'; known: crop, downsample"):
        parse_transforms("blur=3", (8, 8, 2))


def test_a_bad_value_whose_text_looks_like_an_unknown_name_is_still_a_bad_value() -> None:
    # the polarity lookup fails with KeyError('unknown transform'); it is a bad value, reported as one
    with pytest.raises(ValueError, match="bad transform 'split=unknown transform'"):
        parse_transforms("split=unknown transform", (8, 8, 2))


# --- optional extras -------------------------------------------------------------------------------
def test_missing_extra_is_a_spikeforge_import_error_naming_the_extra() -> None:
    err = MissingExtra.needs("--plot", "matplotlib", "plot")
    assert isinstance(err, SpikeforgeError) and isinstance(err, ImportError)
    assert err.extra == "plot" and err.name == "matplotlib"
    assert str(err) == (
        "--plot needs the package 'matplotlib'; install the optional extra: pip install \"spikeforge[plot]\""
    )


def test_missing_codec_is_caught_as_a_missing_extra_and_as_a_format_error(tmp_path, monkeypatch) -> None:
    pytest.importorskip("zstandard")
    path = tmp_path / "z.aedat4"
    write_events(path, _events(), format="aedat4-zstd")
    monkeypatch.setitem(sys.modules, "zstandard", None)
    with pytest.raises(MissingExtra, match=r'pip install "spikeforge\[events\]"') as info:
        read_events(path)
    assert isinstance(info.value, MissingCodec) and isinstance(info.value, EventFormatError)
    assert info.value.extra == "events" and len(info.value.events) == 0  # type: ignore[attr-defined]
    with pytest.raises(MissingCodec):  # not a defect of the file: on_error="stop" does not hide it
        read_events(path, on_error="stop")
    with pytest.raises(MissingCodec):
        list(iter_events(path, on_error="stop"))
    with pytest.raises(MissingCodec, match="writing Zstd-compressed AEDAT 4.0 needs the package 'zstandard'"):
        write_events(tmp_path / "w.aedat4", _events(), format="aedat4-zstd")


def test_plot_without_matplotlib_names_the_extra(tmp_path: Path, monkeypatch, capsys) -> None:
    import emulator

    b = emulator.ProgramBuilder("loihi")
    x = b.input("in", 2)
    h = b.population("h", 2, du=1024, dv=512, vth=20)
    b.connect(x, h, weights=np.ones((2, 2), dtype=np.int64))
    b.output("out", h)
    path = b.build().save(tmp_path / "net.sfp")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["emulate", str(path), "--steps", "5", "--plot", str(tmp_path / "p.png")]) == 1
    err = capsys.readouterr().err
    assert 'pip install "spikeforge[plot]"' in err and "Traceback" not in err
    assert not (tmp_path / "p.png").exists()


@pytest.mark.parametrize(
    ("decoder", "loops", "names"),
    [
        (evt3.Decoder, evt3_jit, ("count_events", "decode_words")),
        (evt2.Decoder, cd_jit, ("evt2_count", "evt2_decode", "dat_decode")),
        (dat.Decoder, cd_jit, ("evt2_count", "evt2_decode", "dat_decode")),
    ],
)
def test_jit_true_without_numba_names_the_fast_extra(monkeypatch, decoder, loops, names) -> None:
    monkeypatch.delenv("SPIKEFORGE_EVENTS_JIT", raising=False)
    monkeypatch.setitem(sys.modules, "numba", None)
    for name in names:
        monkeypatch.setattr(loops, name, None)
    header = Header("evt3" if decoder is evt3.Decoder else "evt2", 0)
    assert not decoder(header).jit  # the default falls back to the numpy decoder: same events
    assert not decoder(header, jit=False).jit
    with pytest.raises(MissingExtra, match=r'pip install "spikeforge\[fast\]"'):
        decoder(header, jit=True)


# --- the command line imports every subcommand -----------------------------------------------------
def test_every_subcommand_is_registered() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")  # argparse keeps subparsers here
    assert set(sub.choices) == set(COMMANDS)  # type: ignore[arg-type]


def test_a_missing_subcommand_module_is_an_error_not_a_skip(monkeypatch) -> None:
    real = importlib.import_module

    def fake(name: str, package: str | None = None):
        if name == "spikeforge.commands.board":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(ModuleNotFoundError):
        build_parser()


# --- module names ----------------------------------------------------------------------------------
def test_the_renamed_modules_are_importable_and_the_old_name_is_gone() -> None:
    reader = importlib.import_module("runtime.events.reader")
    stream = importlib.import_module("runtime.stream")
    assert hasattr(reader, "decode_chunks") and hasattr(reader, "BaseDecoder")
    assert hasattr(stream, "Streamer") and hasattr(stream, "BoardTarget")
    assert importlib.util.find_spec("runtime.events.stream") is None


def test_the_two_empty_event_makers_have_distinct_names() -> None:
    import runtime.events
    import runtime.transforms

    assert not hasattr(runtime.events, "empty_events") and not hasattr(runtime.transforms, "empty_events")
    made = alloc_events(3)
    assert made.shape == (3,) and made.dtype == EVENT_DTYPE
    none = no_events()
    assert none.shape == (0,) and none.dtype == EVENT_DTYPE


def test_public_runtime_names_still_work() -> None:
    for name in ("read_events", "iter_events", "write_events", "Streamer", "load_spikes", "BoardClient", "Link"):
        assert callable(getattr(runtime, name)), name


def test_import_runtime_imports_neither_torch_nor_the_emulator() -> None:
    code = "import sys, runtime; print('torch' in sys.modules, 'emulator' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
