"""The families' compile hooks (``emulator/families/<f>/compiling.py``): what each provides, that they
stay light (numpy only), and that their numbers are the ones the compiler has always used."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import hw_specs
from emulator import families

#: what the compiler asks every family's compile hooks for
HOOKS = ("QUANTISER", "OVERFLOW_STATE", "OVERFLOW_FIX", "WEIGHT_EXPONENT", "WEIGHT_ERROR_KEYS", "WEIGHT_ERROR_FIX",
         "REGISTER_KEYS", "FAN_OUT_LABEL", "FAN_OUT_FIX", "FAN_OUT_PER_CORE",
         "FloatNeurons")


@pytest.mark.parametrize("name", families.names())
def test_every_family_provides_the_hooks(name):
    hooks = families.get(name).compiling
    missing = [h for h in HOOKS if not hasattr(hooks, h)]
    assert not missing, f"{name}: {missing}"
    spec = next(hw_specs.load(t) for t in hw_specs.available() if hw_specs.load(t).family == name)
    assert hooks.OVERFLOW_STATE in spec.state
    if hooks.WEIGHT_EXPONENT is not None:
        assert hooks.WEIGHT_EXPONENT in spec.synapse
    else:
        assert hooks.WEIGHT_ERROR_KEYS and hooks.WEIGHT_ERROR_FIX


def test_hooks_import_neither_torch_nor_the_compiler():
    code = ("import sys; from emulator import families\n"
            "for f in families.names(): families.get(f).compiling\n"
            "bad = [m for m in sys.modules if m == 'torch' or m == 'compiler' or m.startswith('compiler.')]\n"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_decays_and_gains():
    loihi = families.get("loihi").compiling
    xylo = families.get("xylo").compiling
    assert loihi.decay_registers(None, None, 1e-3) == {"du": 4095, "dv": 0}
    assert loihi.decay_registers(1e-3 / np.log(2), 1e-3 / np.log(2), 1e-3) == {"du": 2047, "dv": 2048}
    assert loihi.keep_factors(None, None, 1e-3) == (0.0, 1.0)
    assert loihi.bias_gain(None, 1e-3) == 1.0
    assert xylo.decay_registers(16e-3, None, 1e-3) == {"dash_mem": 4, "dash_syn": 1, "dash_syn2": 1}
    assert xylo.keep_factors(None, 2e-3, 1e-3) == (0.5, 1 - 2.0 ** -15)
    assert xylo.bias_gain(None, 1e-3) == 1.0  # k = 1/2: k / (1 - k)


def test_loihi_bias_registers_take_the_smallest_exponent():
    loihi = families.get("loihi").compiling
    mant, exp = loihi.bias_registers(np.array([0.0, 100.0, 4095.0, 4096.0 * 3, -9000.0]), 4095, 0, 7)
    np.testing.assert_array_equal(exp, [0, 0, 0, 2, 2])
    np.testing.assert_array_equal(mant * 2.0 ** exp, [0, 100, 4095, 12288, -9000])
