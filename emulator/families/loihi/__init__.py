"""The loihi family: see :mod:`emulator.families`."""
