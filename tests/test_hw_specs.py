"""hw_specs: shipped targets load; user TOML files load by path; every defect is a SpecError that
names the file and the offending key."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

import hw_specs
from spikeforge.errors import SpecError

SHIPPED = ["loihi", "tiny", "truenorth", "xylo"]


def test_available_lists_the_shipped_targets():
    assert sorted(hw_specs.available()) == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_target_loads(name):
    spec = hw_specs.load(name)
    assert spec.name == name
    assert spec.family in hw_specs.FAMILIES
    need = hw_specs.FAMILIES[spec.family]
    for key in need["registers"]:
        assert key in spec.registers
        assert spec.defaults[key] in spec.registers[key]
    for key in need["state"]:
        assert key in spec.state
    for key in need["synapse"]:
        spec.synapse_range(key)  # a valid range
    assert spec.where() == f"hw_specs/{name}.toml"
    assert len(spec.digest) == 64
    # loading is a pure function of the file
    assert hw_specs.load(name) == spec


def test_known_numbers_of_the_shipped_targets():
    loihi = hw_specs.load("loihi")
    assert loihi.chip.neurons_per_core == 1024
    assert loihi.chip.cores_per_chip == 128
    assert loihi.synapse_range("weight") == hw_specs.Range(-256, 255)
    assert loihi.registers["du"] == hw_specs.Range(0, 4095)
    assert loihi.state["u"] == hw_specs.StateFormat(24, "wrap")
    assert loihi.state["v"] == hw_specs.StateFormat(24, "saturate")
    xylo = hw_specs.load("xylo")
    assert xylo.state["isyn"].lo == -(1 << 15) and xylo.state["isyn"].hi == (1 << 15) - 1
    assert xylo.chip.max_input_count == 15 and xylo.chip.max_spikes_per_step == 31
    tn = hw_specs.load("truenorth")
    assert tn.chip.fan_out_per_neuron == 1
    assert tn.state["v"].bits == 20


def test_load_a_user_copy_by_path(tmp_path):
    text = (hw_specs.SPEC_DIR / "loihi.toml").read_text().replace('name = "loihi"', 'name = "myloihi"')
    text = text.replace("neurons_per_core = 1024", "neurons_per_core = 512")
    path = tmp_path / "mychip.toml"
    path.write_text(text)
    spec = hw_specs.load(path)
    assert spec.name == "myloihi"
    assert spec.chip.neurons_per_core == 512
    assert spec.path == str(path)
    assert str(path) in spec.where()
    # as a string path too
    assert hw_specs.load(str(path)).chip.neurons_per_core == 512
    # a spec passes through unchanged
    assert hw_specs.load(spec) is spec


def test_hwspec_is_frozen():
    spec = hw_specs.load("loihi")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.chip.neurons_per_core = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.registers["du"] = hw_specs.Range(0, 1)  # type: ignore[index]
    with pytest.raises(TypeError):
        spec.defaults["du"] = 3  # type: ignore[index]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "broken.toml"
    path.write_text(text)
    return path


def _loihi_text() -> str:
    return (hw_specs.SPEC_DIR / "loihi.toml").read_text()


def _drop_table(text: str, table: str) -> str:
    """Remove ``[table]`` and its body up to the next table header."""
    return re.sub(rf"^\[{table}\]\n(?:(?!^\[).*\n)*", "", text, flags=re.M)


def _drop_line(text: str, key: str) -> str:
    out, n = re.subn(rf"^{key}\s*=.*\n", "", text, count=1, flags=re.M)
    assert n == 1, key
    return out


def _set(text: str, key: str, value: str) -> str:
    out, n = re.subn(rf"^{key}\s*=[^#\n]*", f"{key} = {value} ", text, count=1, flags=re.M)
    assert n == 1, key
    return out


BROKEN = {
    "missing table registers": (lambda t: _drop_table(t, "registers"), ["registers"]),
    "missing table chip": (lambda t: _drop_table(t, "chip"), ["chip"]),
    "missing table state": (lambda t: _drop_table(t, "state"), ["state"]),
    "missing key du": (lambda t: _drop_line(t, "du"), ["registers.du"]),
    "missing chip key": (lambda t: _drop_line(t, "neurons_per_core"), ["chip.neurons_per_core"]),
    "missing synapse key": (lambda t: _drop_line(t, "weight_exp"), ["synapse.weight_exp"]),
    "wrong type int": (lambda t: _set(t, "neurons_per_core", '"many"'), ["chip.neurons_per_core", "many"]),
    "wrong type range": (lambda t: _set(t, "vth", "17"), ["registers.vth", "17"]),
    "wrong type bool": (lambda t: _set(t, "cores_per_chip", "true"), ["chip.cores_per_chip"]),
    "lo > hi": (lambda t: _set(t, "du", "[4095, 0]"), ["registers.du", "4095"]),
    "synapse lo > hi": (lambda t: _set(t, "weight", "[255, -256]"), ["synapse.weight"]),
    "bad overflow": (lambda t: t.replace('overflow = "wrap"', 'overflow = "wraparound"'),
                     ["state.u.overflow", "wraparound"]),
    "unknown family": (lambda t: t.replace('family = "loihi"', 'family = "spinnaker"'),
                       ["target.family", "spinnaker"]),
    "default outside range": (lambda t: t.replace("vth = 10", "vth = -10"), ["defaults.vth", "-10"]),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_malformed_spec_raises_specerror_naming_file_and_key(tmp_path, case):
    edit, needles = BROKEN[case]
    path = _write(tmp_path, edit(_loihi_text()))
    with pytest.raises(SpecError) as err:
        hw_specs.load(path)
    msg = str(err.value)
    assert str(path) in msg
    for needle in needles:
        assert needle in msg, (needle, msg)
    assert isinstance(err.value, ValueError)


def test_invalid_toml_names_the_file(tmp_path):
    path = _write(tmp_path, _loihi_text() + "\n[chip\nthis is = = not toml\n")
    with pytest.raises(SpecError, match="not a valid TOML") as err:
        hw_specs.load(path)
    assert str(path) in str(err.value)


def test_not_utf8_is_a_specerror(tmp_path):
    path = tmp_path / "bin.toml"
    path.write_bytes(b"\xff\xfe\x00name = 1\n")
    with pytest.raises(SpecError, match=re.escape(str(path))):
        hw_specs.load(path)


def test_unknown_target_name_lists_the_known_ones():
    with pytest.raises(SpecError) as err:
        hw_specs.load("loihi3")
    msg = str(err.value)
    assert "'loihi3'" in msg
    for name in SHIPPED:
        assert name in msg


def test_missing_path_is_a_specerror(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(SpecError, match="does not exist") as err:
        hw_specs.load(path)
    assert str(path) in str(err.value)


def test_loads_names_the_given_path():
    with pytest.raises(SpecError, match=r"^<mine>: missing table \[target\]"):
        hw_specs.loads(b"[chip]\n", path="<mine>")


def test_digest_changes_with_the_file(tmp_path):
    text = _loihi_text()
    a = _write(tmp_path, text)
    da = hw_specs.load(a).digest
    assert da == hw_specs.load("loihi").digest
    a.write_text(text + "\n# a comment\n")
    assert hw_specs.load(a).digest != da


@pytest.mark.parametrize(("bits", "why"), [(1, r"\[2, 64\]"), (65, r"\[2, 64\]"), (True, r"\[2, 64\]")])
def test_state_bits_outside_any_register(tmp_path, bits, why):
    text = (hw_specs.SPEC_DIR / "xylo.toml").read_text()
    text = text.replace('vmem = { bits = 16, overflow = "saturate" }',
                        f'vmem = {{ bits = {str(bits).lower()}, overflow = "saturate" }}')
    path = tmp_path / "x.toml"
    path.write_text(text)
    with pytest.raises(SpecError, match=rf"x\.toml: state\.vmem\.bits = .*{why}"):
        hw_specs.load(path)


@pytest.mark.parametrize(("family", "key", "bits"),
                         [("loihi", "v", 43), ("xylo", "isyn2", 49), ("truenorth", "v", 64)])
def test_state_wider_than_the_family_datapath_holds_is_refused(tmp_path, family, key, bits):
    text = (hw_specs.SPEC_DIR / f"{family}.toml").read_text()
    text, n = re.subn(rf"(?m)^{key} = \{{ bits = \d+", f"{key} = {{ bits = {bits}", text)
    assert n == 1
    path = tmp_path / "wide.toml"
    path.write_text(text)
    want = rf"wide\.toml: state\.{key}\.bits = {bits}; the {family} datapath .*\[2, 4[28]\]"
    with pytest.raises(SpecError, match=want):
        hw_specs.load(path)
