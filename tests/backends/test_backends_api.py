"""The backends package's public names."""

from __future__ import annotations

import inspect

import pytest

import logosq_os_scheduler.backends as backends


def test_every_public_name_resolves_and_is_listed() -> None:
    for name in backends.__all__:
        assert getattr(backends, name) is not None, name
    assert set(backends.__all__) <= set(dir(backends))
    public = {
        name
        for name, value in vars(backends).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name != "annotations"
    }
    assert public <= set(backends.__all__)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        backends.Nope  # noqa: B018
