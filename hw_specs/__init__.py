"""Chip descriptions: TOML target files and their loader.

Everything a chip *is* lives in data: ``hw_specs/<name>.toml``. Adding a chip variant is a
new TOML file (or the user's own file passed by path), never a copied module.

>>> spec = load("loihi")
>>> spec.chip.neurons_per_core
1024
"""

from __future__ import annotations

import hashlib
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from spikeforge.errors import SpecError

__all__ = ["HwSpec", "ChipLimits", "StateFormat", "Range", "load", "available", "FAMILIES", "SPEC_DIR"]

SPEC_DIR = Path(__file__).resolve().parent

#: neuron families the emulator implements, with the registers, states and projection
#: fields each family's spec must declare (the declarations live with each family, in
#: ``emulator.families``; this is a read-only view of them)
def _families() -> Mapping[str, Mapping[str, tuple[str, ...]]]:
    from emulator import families

    return MappingProxyType({
        name: MappingProxyType({"registers": f.registers, "state": f.state, "synapse": f.synapse})
        for name, f in families.REGISTRY.items()
    })


def __getattr__(name: str) -> Any:
    # FAMILIES is computed on first use: the family package imports this module
    if name == "FAMILIES":
        return _families()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

_CHIP_KEYS = (
    "cores_per_chip", "max_chips", "mesh", "neurons_per_core", "axons_in_per_core", "axons_out_per_core",
    "synapse_memory_bits_per_core", "fan_out_per_neuron", "input_channels", "readout_neurons", "max_input_count",
)


@dataclass(frozen=True)
class Range:
    """An inclusive integer range ``[lo, hi]`` a register or field may take."""

    lo: int
    hi: int

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and self.lo <= value <= self.hi

    def __str__(self) -> str:
        return f"[{self.lo}, {self.hi}]"


@dataclass(frozen=True)
class StateFormat:
    """A state register: ``bits`` wide two's complement, ``overflow`` is ``wrap`` or ``saturate``."""

    bits: int
    overflow: str

    @property
    def lo(self) -> int:
        return -(1 << (self.bits - 1))

    @property
    def hi(self) -> int:
        return (1 << (self.bits - 1)) - 1


@dataclass(frozen=True)
class ChipLimits:
    """Sizes of one chip and its cores (counts; memory in bits). A limit of 0 means "no limit"."""

    cores_per_chip: int
    max_chips: int
    mesh: tuple[int, int]
    neurons_per_core: int
    axons_in_per_core: int
    axons_out_per_core: int
    synapse_memory_bits_per_core: int
    fan_out_per_neuron: int
    input_channels: int
    readout_neurons: int
    max_input_count: int
    max_spikes_per_step: int = 1
    readout_max_spikes_per_step: int = 1
    threshold_rng_bits: int = 8
    clip_input_counts: bool = False


@dataclass(frozen=True)
class HwSpec:
    """A hardware target, loaded from a TOML file. Frozen: a spec is a value.

    ``digest`` is the SHA-256 of the file's bytes; ``text`` the file itself, which a Program
    embeds so that it always runs on exactly the chip it was built for.
    """

    name: str
    family: str
    description: str
    path: str
    digest: str
    text: str
    chip: ChipLimits
    synapse: Mapping[str, Any]
    registers: Mapping[str, Range]
    defaults: Mapping[str, int]
    state: Mapping[str, StateFormat]
    learning: Mapping[str, Any] = field(default_factory=dict)
    link: Mapping[str, Any] = field(default_factory=dict)
    energy: Mapping[str, float] = field(default_factory=dict)

    def synapse_range(self, key: str) -> Range:
        """The ``[lo, hi]`` range of a projection field such as ``weight`` or ``delay``."""
        lo, hi = self.synapse[key]
        return Range(int(lo), int(hi))

    @property
    def total_cores(self) -> int:
        return self.chip.cores_per_chip * self.chip.max_chips

    def where(self) -> str:
        """Where the spec came from, for error messages: ``hw_specs/loihi.toml``."""
        p = Path(self.path)
        try:
            return str(p.relative_to(SPEC_DIR.parent))
        except ValueError:
            return str(p)

    def summary(self) -> dict[str, Any]:
        """The key limits, as plain data (for ``spikeforge targets``)."""
        c = self.chip
        return {
            "name": self.name,
            "family": self.family,
            "cores": f"{c.cores_per_chip} x {c.max_chips} chips",
            "neurons/core": c.neurons_per_core,
            "axons in/out": f"{c.axons_in_per_core}/{c.axons_out_per_core}",
            "synapse mem/core": f"{c.synapse_memory_bits_per_core // 8192} KiB",
            "weights": f"[{self.synapse['weight'][0]}, {self.synapse['weight'][1]}]",
            "state bits": ",".join(f"{k}:{v.bits}" for k, v in self.state.items()),
        }

    def to_dict(self) -> dict[str, Any]:
        """The whole spec as JSON-ready data."""
        return {
            "name": self.name,
            "family": self.family,
            "description": self.description,
            "path": self.path,
            "digest": self.digest,
            "chip": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(self.chip).items()},
            "synapse": dict(self.synapse),
            "registers": {k: [r.lo, r.hi] for k, r in self.registers.items()},
            "defaults": dict(self.defaults),
            "state": {k: {"bits": s.bits, "overflow": s.overflow} for k, s in self.state.items()},
            "learning": dict(self.learning),
            "link": dict(self.link),
            "energy": dict(self.energy),
        }


def available() -> list[str]:
    """Names of the targets shipped in ``hw_specs/``."""
    return sorted(p.stem for p in SPEC_DIR.glob("*.toml"))


def load(name_or_path: str | Path | HwSpec) -> HwSpec:
    """Load a target by name (``"loihi"``) or from a TOML file path.

    Raises :class:`SpecError` naming the file, key, value and what was expected when the
    file is missing, malformed or incomplete.
    """
    if isinstance(name_or_path, HwSpec):
        return name_or_path
    text_path = Path(name_or_path)
    if text_path.suffix == ".toml" or text_path.exists() or "/" in str(name_or_path):
        path = text_path
        if not path.is_file():
            raise SpecError(f"hardware spec file {path} does not exist; known targets: {', '.join(available())}")
    else:
        path = SPEC_DIR / f"{name_or_path}.toml"
        if not path.is_file():
            raise SpecError(
                f"unknown target {str(name_or_path)!r}; known targets: {', '.join(available())} "
                "(or pass the path of your own .toml spec)"
            )
    return loads(path.read_bytes(), path=str(path))


def loads(data: bytes, path: str = "<embedded>") -> HwSpec:
    """Parse a spec from the bytes of a TOML file (``path`` only names it in errors)."""
    try:
        text = data.decode("utf-8")
        doc = tomllib.loads(text)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SpecError(f"{path}: not a valid TOML file: {exc}") from None
    return _parse(doc, path=path, text=text, digest=hashlib.sha256(data).hexdigest())


# --- parsing ---------------------------------------------------------------------------------
def _table(doc: Mapping[str, Any], key: str, path: str, required: bool = True) -> Mapping[str, Any]:
    value = doc.get(key)
    if value is None:
        if required:
            raise SpecError(f"{path}: missing table [{key}]")
        return {}
    if not isinstance(value, dict):
        raise SpecError(f"{path}: [{key}] must be a table, got {type(value).__name__}")
    return value


def _int(table: Mapping[str, Any], key: str, where: str, path: str, minimum: int = 0) -> int:
    if key not in table:
        raise SpecError(f"{path}: missing key {where}.{key} (an integer >= {minimum})")
    value = table[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise SpecError(f"{path}: {where}.{key} = {value!r}; expected an integer >= {minimum}")
    return value


def _range(value: Any, where: str, path: str) -> Range:
    ok = (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        and value[0] <= value[1]
    )
    if not ok:
        raise SpecError(f"{path}: {where} = {value!r}; expected an integer range [lo, hi] with lo <= hi")
    return Range(int(value[0]), int(value[1]))


def _support(family: str, key: str) -> Any:
    """The widths and overflow policies the family's datapath holds exactly in state ``key``."""
    from emulator import families

    return families.get(family).datapath.SUPPORT[key]


def _parse(doc: Mapping[str, Any], *, path: str, text: str, digest: str) -> HwSpec:
    target = _table(doc, "target", path)
    name = target.get("name")
    family = target.get("family")
    if not isinstance(name, str) or not name:
        raise SpecError(f"{path}: target.name = {name!r}; expected a non-empty string")
    families = _families()
    if not isinstance(family, str) or family not in families:
        raise SpecError(f"{path}: target.family = {family!r}; expected one of {', '.join(families)}")
    need = families[family]

    chip_t = _table(doc, "chip", path)
    chip_args: dict[str, Any] = {}
    for key in _CHIP_KEYS:
        if key == "mesh":
            mesh = chip_t.get("mesh")
            if not (isinstance(mesh, list) and len(mesh) == 2 and all(isinstance(m, int) and m > 0 for m in mesh)):
                raise SpecError(f"{path}: chip.mesh = {mesh!r}; expected [rows, cols] of positive integers")
            chip_args["mesh"] = (mesh[0], mesh[1])
        else:
            minimum = 1 if key in ("cores_per_chip", "max_chips", "neurons_per_core", "max_input_count") else 0
            chip_args[key] = _int(chip_t, key, "chip", path, minimum)
    for key in ("max_spikes_per_step", "readout_max_spikes_per_step", "threshold_rng_bits"):
        if key in chip_t:
            chip_args[key] = _int(chip_t, key, "chip", path, 1)
    clip = chip_t.get("clip_input_counts", False)
    if not isinstance(clip, bool):
        raise SpecError(f"{path}: chip.clip_input_counts = {clip!r}; expected true or false")
    chip_args["clip_input_counts"] = clip
    chip = ChipLimits(**chip_args)
    rows, cols = chip.mesh
    if rows * cols < chip.cores_per_chip:
        raise SpecError(
            f"{path}: chip.mesh {rows}x{cols} has {rows * cols} places < cores_per_chip {chip.cores_per_chip}"
        )

    syn_t = dict(_table(doc, "synapse", path))
    for key in need["synapse"]:
        if key not in syn_t:
            raise SpecError(f"{path}: missing key synapse.{key} (an integer range [lo, hi]) for family {family}")
        _range(syn_t[key], f"synapse.{key}", path)
    for key in ("default_delay", "default_input_delay", "synapse_index_bits", "synapse_row_header_bits"):
        syn_t[key] = _int(syn_t, key, "synapse", path, 0)
    for key, rng_key in (("default_delay", "delay"), ("default_input_delay", "input_delay")):
        lo, hi = syn_t[rng_key]
        if not lo <= syn_t[key] <= hi:
            raise SpecError(f"{path}: synapse.{key} = {syn_t[key]} outside synapse.{rng_key} [{lo}, {hi}]")
    if syn_t["delay"][0] < 1:
        raise SpecError(f"{path}: synapse.delay starts at {syn_t['delay'][0]}; delays between neurons must be >= 1")

    reg_t = _table(doc, "registers", path)
    registers: dict[str, Range] = {}
    for key in need["registers"]:
        if key not in reg_t:
            raise SpecError(f"{path}: missing key registers.{key} (an integer range [lo, hi]) for family {family}")
    for key, value in reg_t.items():
        registers[key] = _range(value, f"registers.{key}", path)

    def_t = _table(doc, "defaults", path)
    defaults: dict[str, int] = {}
    for key in need["registers"]:
        value = def_t.get(key)
        if not isinstance(value, int) or value not in registers[key]:
            raise SpecError(
                f"{path}: defaults.{key} = {value!r}; expected an integer in registers.{key} {registers[key]}"
            )
        defaults[key] = value

    state_t = _table(doc, "state", path)
    state: dict[str, StateFormat] = {}
    for key in need["state"]:
        entry = state_t.get(key)
        if not isinstance(entry, dict):
            raise SpecError(f"{path}: missing state.{key} = {{ bits = N, overflow = \"wrap\"|\"saturate\" }}")
        bits = entry.get("bits")
        overflow = entry.get("overflow")
        if not isinstance(bits, int) or isinstance(bits, bool) or not 2 <= bits <= 64:
            raise SpecError(f"{path}: state.{key}.bits = {bits!r}; expected an integer in [2, 64]")
        if overflow not in ("wrap", "saturate"):
            raise SpecError(f"{path}: state.{key}.overflow = {overflow!r}; expected \"wrap\" or \"saturate\"")
        # the family's datapath says which widths and policies it holds exactly
        support = _support(family, key)
        lo_bits, hi_bits = support.bits
        if not lo_bits <= bits <= hi_bits:
            raise SpecError(
                f"{path}: state.{key}.bits = {bits}; the {family} datapath holds {key} exactly for "
                f"bits in [{lo_bits}, {hi_bits}]"
            )
        if overflow not in support.overflow:
            raise SpecError(
                f"{path}: state.{key}.overflow = {overflow!r}; the {family} datapath implements "
                + " or ".join(f'"{o}"' for o in support.overflow)
            )
        state[key] = StateFormat(bits, overflow)

    energy_t = _table(doc, "energy", path, required=False)
    for key, value in energy_t.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
            raise SpecError(f"{path}: energy.{key} = {value!r}; expected a non-negative number")

    return HwSpec(
        name=name,
        family=family,
        description=str(target.get("description", "")),
        path=path,
        digest=digest,
        text=text,
        chip=chip,
        synapse=MappingProxyType(syn_t),
        registers=MappingProxyType(registers),
        defaults=MappingProxyType(defaults),
        state=MappingProxyType(state),
        learning=MappingProxyType(dict(_table(doc, "learning", path, required=False))),
        link=MappingProxyType(dict(_table(doc, "link", path, required=False))),
        energy=MappingProxyType({k: float(v) for k, v in energy_t.items()}),
    )
