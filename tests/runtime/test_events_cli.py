"""``spikeforge events info`` and ``spikeforge events convert``."""

from __future__ import annotations

import json

import numpy as np

from runtime.events import EVENT_DTYPE, read_events, write_events
from spikeforge.cli import main


def sample(tmp_path):
    ev = np.zeros(100, EVENT_DTYPE)
    ev["x"] = np.arange(100) % 50
    ev["y"] = np.arange(100) % 7
    ev["t"] = np.arange(100) * 1000
    ev["p"] = np.arange(100) % 2
    path = tmp_path / "in.raw"
    write_events(path, ev, format="evt3", width=64, height=8)
    return path, ev


def test_info_text_and_json(tmp_path, capsys):
    path, _ = sample(tmp_path)
    assert main(["events", "info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "evt3" in out and "100" in out and "64 x 8 (header)" in out
    assert main(["events", "info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["count"] == 100 and info["duration_us"] == 99_000 and info["on_count"] == 50


def test_convert_streams_and_keeps_geometry(tmp_path, capsys):
    path, ev = sample(tmp_path)
    out = tmp_path / "out.aedat4"
    assert main(["events", "convert", str(path), str(out), "--chunk", "7"]) == 0
    assert "wrote 100 events" in capsys.readouterr().out
    np.testing.assert_array_equal(read_events(out), ev)
    assert main(["events", "info", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["width"] == 64
    back = tmp_path / "back.bin"
    assert main(["events", "convert", str(out), str(back), "--to", "evt2"]) == 0
    np.testing.assert_array_equal(read_events(back, format="evt2"), ev)


def test_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.raw"
    bad.write_bytes(b"% evt 3.0\n% end\n" + b"\x00\x90")
    assert main(["events", "info", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("spikeforge events: error:") and "byte offset 16" in err
    assert main(["events"]) == 2


def test_convert_refuses_bad_requests(tmp_path, capsys):
    path, _ = sample(tmp_path)
    assert main(["events", "convert", str(path), str(tmp_path / "o.xyz")]) == 1
    assert "cannot tell the format" in capsys.readouterr().err
    assert main(["events", "convert", str(path), str(tmp_path / "o.dat")]) == 1
    assert "read but not written" in capsys.readouterr().err
    assert main(["events", "convert", str(path), str(path), "--to", "evt3"]) == 1
    assert "same file" in capsys.readouterr().err
    assert main(["events", "info", str(path), "--format", "evt9"]) == 1
    assert "unknown event format" in capsys.readouterr().err
