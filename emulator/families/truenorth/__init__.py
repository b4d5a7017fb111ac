"""The truenorth family: see :mod:`emulator.families`."""
