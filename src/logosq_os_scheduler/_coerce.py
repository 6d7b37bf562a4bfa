"""How loosely typed input becomes the scheduler's own types: one rule, applied everywhere.

Durations (:func:`coerce_seconds`): seconds as an ``int`` or ``float``, or a
:class:`~datetime.timedelta`; never a bool.

Enumerations (:func:`coerce_enum`): wherever the public API takes an enum member (a task's
priority, the preemption strategy, a workflow step's kind, ...) it also takes the member's
name in any case (``"high"``, ``"HIGH"``, ``"High"``) and the member's value (``3`` for
``TaskPriority.HIGH``, ``"preemptive"`` for ``PreemptionStrategy.PREEMPTIVE``). Nothing
else: not a bool (even where ``True == 1``), not a float that equals an int value, not the
member of another enum, not a number written as text. A refusal names the field and lists
what is accepted.

Standard library only: the core must import without any extra.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, NamedTuple, TypeVar

from ._errors import InvalidTaskError, SchedulerError

__all__ = [
    "HintingEnumType",
    "SeedSpelling",
    "coerce_enum",
    "coerce_seconds",
    "missing_attribute",
]

E = TypeVar("E", bound=enum.Enum)

ErrorFactory = Callable[[str, str], SchedulerError]
"""Builds the error of a refusal from ``(field, problem)``: an error class such as
``InvalidTaskError``, or a ``functools.partial`` of one."""


def coerce_seconds(
    field: str,
    value: object,
    *,
    allow_none: bool = True,
    allow_zero: bool = False,
    error: ErrorFactory = InvalidTaskError,
) -> float | None:
    """Turn a duration given as seconds or :class:`~datetime.timedelta` into seconds.

    Args:
        field: The name of the task field or setting, for the error.
        value: The duration.
        allow_none: Whether None (no duration) is accepted.
        allow_zero: Whether 0 is accepted.
        error: The error class to raise, called as ``error(field, problem)``.

    Raises:
        InvalidTaskError: (or ``error``) If the value is not a positive, finite duration.
    """
    if value is None:
        if allow_none:
            return None
        raise error(field, "a duration is required, got None")
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:
            raise error(field, f"duration {value!r} is too large") from None
    else:
        raise error(
            field, f"expected seconds (int or float) or a timedelta, got {type(value).__name__}"
        )
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise error(field, f"must be a positive, finite duration, got {value!r}")
    return seconds


class _Table(NamedTuple):
    """What :func:`coerce_enum` accepts for one enum class, computed once per class."""

    by_name: dict[str, enum.Enum]  # upper-cased name -> member
    by_value: dict[object, enum.Enum]  # value -> member, for int and str values only
    accepted: str  # the accepted spellings, for the error


_tables: dict[type[enum.Enum], _Table] = {}


def _table(enum_cls: type[enum.Enum]) -> _Table:
    table = _tables.get(enum_cls)
    if table is not None:
        return table
    members = list(enum_cls)
    by_name = {m.name.upper(): m for m in members}
    by_value: dict[object, enum.Enum] = {}
    for m in members:
        # Only exact int and str values: a float, a bool or another enum's member that
        # happens to compare equal is refused.
        if type(m.value) in (int, str):
            by_value[m.value] = m
    # Values worth listing: those a name would not already reach (PreemptionStrategy's
    # "preemptive" is its name in lower case; TaskPriority's 3 is not).
    listed = [m for m in members if m.value in by_value and str(m.value).upper() != m.name]
    if listed:
        spellings = ", ".join(f"{m.name}={m.value!r}" for m in members)
        accepted = (
            f"a {enum_cls.__name__}: a member, its name in any case or its value ({spellings})"
        )
    else:
        spellings = ", ".join(m.name for m in members)
        accepted = f"a {enum_cls.__name__}: a member or its name in any case ({spellings})"
    table = _tables[enum_cls] = _Table(by_name, by_value, accepted)
    return table


def coerce_enum(
    enum_cls: type[E],
    value: object,
    *,
    field: str,
    error: ErrorFactory = InvalidTaskError,
) -> E:
    """Turn a member, a member's name (any case) or a member's value into the member.

    The one rule for every enum-typed input of the public API (see the module docstring).

    Args:
        enum_cls: The enum.
        value: What the caller gave.
        field: The name of the field or setting, for the error.
        error: The error to raise, called as ``error(field, problem)``.

    Returns:
        The member.

    Raises:
        InvalidTaskError: (or ``error``) If ``value`` is none of those, naming the field and
            listing what is accepted.
    """
    if type(value) is enum_cls:
        return value
    table = _table(enum_cls)
    member: enum.Enum | None = None
    # Exact types: a bool (an int subclass) and another enum's member (an IntEnum's is an
    # int) never match by value.
    if type(value) is str:
        # ASCII only: str.upper() maps some other letters onto ASCII ones (dotless i -> I).
        if value.isascii():
            member = table.by_name.get(value.upper())
        if member is None:
            member = table.by_value.get(value)
    elif type(value) is int:
        member = table.by_value.get(value)
    if member is None:
        note = " (a bool is not accepted)" if isinstance(value, bool) else ""
        raise error(field, f"expected {table.accepted}; got {value!r}{note}")
    return member  # type: ignore[return-value]


class HintingEnumType(enum.EnumType):
    """The metaclass of the package's public enums: a member looked up in the seed's Rust
    spelling (``TaskPriority.High``, ``TaskStatus.TimedOut``) fails with a message that names
    the Python one (``TaskPriority.HIGH``, ``TaskStatus.TIMED_OUT``).

    Only failed lookups reach it: members live in the class's ``__dict__``, so reading one
    costs what it costs on a plain enum.
    """

    if not TYPE_CHECKING:  # hidden from type checkers, which then still flag misspellings

        def __getattr__(cls, name: str) -> object:
            if name.startswith("_"):
                raise AttributeError(name)
            members = cls.__dict__.get("_member_map_", {})
            if name in members:  # what EnumType.__getattr__ does (Python 3.11)
                return members[name]
            # The seed's Rust variants are CamelCase: High is HIGH, TimedOut is TIMED_OUT.
            wanted = name.replace("_", "").upper()
            for member_name in members:
                if member_name.replace("_", "").upper() == wanted:
                    hint = (
                        f"enum members are UPPER_CASE in Python, use {cls.__name__}.{member_name}"
                    )
                    raise missing_attribute(cls, name, hint)
            raise missing_attribute(cls, name)


def missing_attribute(owner: object, name: str, hint: str | None = None) -> AttributeError:
    """The error of a failed lookup of ``name`` on ``owner`` (an object or a class), for the
    ``__getattr__`` hooks that answer a guess in the seed's spelling.

    With a ``hint`` (the Python way to write it) the message ends with it, and Python's own
    "Did you mean" suggestion, which would compete with it, is left out; without one it is
    Python's usual error, suggestion included.
    """
    if isinstance(owner, type):
        message = f"type object {owner.__name__!r} has no attribute {name!r}"
    else:
        message = f"{type(owner).__name__!r} object has no attribute {name!r}"
    if hint is None:
        return AttributeError(message, name=name, obj=owner)
    return AttributeError(f"{message}: {hint}", name=name)


class SeedSpelling:
    """A class attribute standing for a name from the seed that Python spells otherwise:
    reading it raises the ``AttributeError`` of a missing attribute, with the Python spelling
    as its hint (``hasattr`` stays False).

    Use it instead of a ``__getattr__`` hook on a class whose attributes are read on a hot
    path: a class with ``__getattr__`` loses CPython's specialised attribute reads for every
    attribute, while a descriptor costs nothing beyond its own name.

    Args:
        hint: The way to write it in Python.
    """

    __slots__ = ("hint", "name")

    def __init__(self, hint: str) -> None:
        self.hint = hint
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: object, objtype: type | None = None) -> object:
        raise missing_attribute(objtype if obj is None else obj, self.name, self.hint)
