"""Every family's datapath module provides what the engines and the spec loader ask of it
(:mod:`emulator.families.datapath`), and the engines name no family."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import emulator
from emulator import families

EXPORTS = ("SUPPORT", "HIDDEN", "ORDERED", "slot", "slots", "increments", "stepwise", "reference_step",
           "population", "compiled")


@pytest.mark.parametrize("name", families.names())
def test_datapath_module_exports_the_protocol(name):
    dp = families.get(name).datapath
    for attr in EXPORTS:
        assert hasattr(dp, attr), f"{name}.datapath.{attr}"
    assert set(dp.SUPPORT) == set(families.get(name).state)
    assert isinstance(dp.ORDERED, bool)
    assert not set(dp.HIDDEN) & set(families.get(name).state)
    assert dp.slots(True) >= 1 and dp.slots(False) >= 1


@pytest.mark.parametrize("module", ["engine.py", "fast.py", "reference.py"])
def test_engines_name_no_family(module):
    source = (Path(emulator.__file__).parent / module).read_text()
    code = "\n".join(line.split("#")[0] for line in source.splitlines())
    for name in families.names():
        assert not re.search(rf"[\"']{name}[\"']", code), f"{module} names the family {name!r}"
