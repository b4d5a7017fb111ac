"""The xylo family: see :mod:`emulator.families`."""
