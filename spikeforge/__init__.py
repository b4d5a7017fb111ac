"""spikeforge: a neuromorphic deployment toolchain (compiler, bit-accurate emulator, runtime)."""

__version__ = "0.1.0"
