"""Shared fixtures: ``engine`` runs a test once per emulator engine."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["reference", "fast"])
def engine(request):
    """The emulator engine under test (every analytic case must hold for both)."""
    return request.param
