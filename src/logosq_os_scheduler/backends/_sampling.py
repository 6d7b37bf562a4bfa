"""Exact multinomial sampling of measurement counts from a seeded ``random.Random``.

:class:`MockBackend` draws its counts here. Counts for ``shots`` shots over outcomes with
probabilities ``p`` are a multinomial draw, produced as a chain of conditional binomial draws
(outcome ``i`` takes ``Binomial(shots left, p_i / probability left)``), so the cost grows with
the number of outcomes, not with the number of shots: a 2-qubit circuit with 100,000 shots
costs four binomial draws. The binomial sampler is written out here rather than taken from
``random.Random.binomialvariate`` (Python 3.12+) so that a seed gives the same counts on
every supported Python.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

__all__ = ["binomial", "multinomial_counts", "uniform_counts"]

# For widths up to 8: a byte-translation table keeping the low ``width`` bits, and the
# outcome strings by value.
_LOW_BITS = {w: bytes(b & ((1 << w) - 1) for b in range(256)) for w in range(1, 9)}
_KEYS = {w: tuple(format(v, f"0{w}b") for v in range(1 << w)) for w in range(1, 9)}


def binomial(rng: random.Random, n: int, p: float) -> int:
    """Draw from Binomial(n, p) exactly.

    Small means (``n * p < 10``) count Bernoulli successes by jumping over failures with
    geometric waiting times (Devroye's second waiting-time method); larger ones use
    Hörmann's BTRS transformed-rejection method (1993), which costs O(1) per draw.

    Args:
        rng: The random source.
        n: Trials (>= 0).
        p: Success probability, 0 <= p <= 1.

    Returns:
        The number of successes.

    Raises:
        ValueError: If ``n < 0`` or ``p`` is outside [0, 1].
    """
    if n < 0 or not 0.0 <= p <= 1.0:
        raise ValueError(f"binomial needs n >= 0 and 0 <= p <= 1, got n={n}, p={p}")
    if n == 0 or p == 0.0:
        return 0
    if p == 1.0:
        return n
    if p > 0.5:
        return n - binomial(rng, n, 1.0 - p)
    if n * p < 10.0:
        return _binomial_waiting_time(rng, n, p)
    return _binomial_btrs(rng, n, p)


def _binomial_waiting_time(rng: random.Random, n: int, p: float) -> int:
    log_q = math.log1p(-p)
    successes = 0
    position = 0
    while True:
        # 1 - random() lies in (0, 1], so the logarithm is finite.
        position += int(math.log(1.0 - rng.random()) / log_q) + 1
        if position > n:
            return successes
        successes += 1


def _binomial_btrs(rng: random.Random, n: int, p: float) -> int:
    # Invariant: 0 < p <= 0.5 and n * p >= 10, the range in which BTRS is valid.
    q = 1.0 - p
    spq = math.sqrt(n * p * q)
    b = 1.15 + 2.53 * spq
    a = -0.0873 + 0.0248 * b + 0.01 * p
    c = n * p + 0.5
    v_r = 0.92 - 4.2 / b
    # The exact acceptance test needs these; most draws pass the cheap squeeze before it.
    ready = False
    alpha = lpq = h = 0.0
    m = 0
    while True:
        u = rng.random() - 0.5
        v = rng.random()
        us = 0.5 - abs(u)
        if us <= 0.0:
            continue
        k = math.floor((2.0 * a / us + b) * u + c)
        if k < 0 or k > n:
            continue
        if us >= 0.07 and v <= v_r:
            return k
        if not ready:
            alpha = (2.83 + 5.1 / b) * spq
            lpq = math.log(p / q)
            m = math.floor((n + 1) * p)
            h = math.lgamma(m + 1) + math.lgamma(n - m + 1)
            ready = True
        v *= alpha / (a / (us * us) + b)
        if (
            v > 0.0
            and math.log(v) <= h - math.lgamma(k + 1) - math.lgamma(n - k + 1) + (k - m) * lpq
        ):
            return k


def multinomial_counts(
    rng: random.Random, outcomes: Sequence[tuple[str, float]], shots: int
) -> dict[str, int]:
    """Sample counts for ``shots`` shots over ``outcomes`` (key, probability).

    Probabilities are normalised by their sum; outcomes drawn zero times are left out.

    Args:
        rng: The random source.
        outcomes: Pairs of (bitstring, probability), probabilities >= 0 with a positive sum.
        shots: How many shots (>= 0).

    Returns:
        Counts summing to ``shots``.

    Raises:
        ValueError: If a probability is negative or none is positive.
    """
    total = math.fsum(prob for _, prob in outcomes)
    if total <= 0.0 or any(prob < 0.0 for _, prob in outcomes):
        raise ValueError("outcome probabilities must be >= 0 with a positive sum")
    counts: dict[str, int] = {}
    remaining = shots
    mass_left = total
    last = len(outcomes) - 1
    for i, (key, prob) in enumerate(outcomes):
        if remaining == 0:
            break
        if i == last:
            drawn = remaining
        else:
            drawn = binomial(rng, remaining, min(1.0, max(0.0, prob / mass_left)))
            mass_left -= prob
        if drawn:
            counts[key] = counts.get(key, 0) + drawn
            remaining -= drawn
    return counts


def uniform_counts(rng: random.Random, width: int, shots: int) -> dict[str, int]:
    """Sample counts for ``shots`` shots of ``width`` fair, independent bits.

    Every ``width``-bit string is equally likely (the distribution of measuring ``|+>`` on
    every qubit). With fewer outcomes than shots the draw is a multinomial over all
    ``2**width`` strings; otherwise each shot draws its own string.

    Args:
        rng: The random source.
        width: Bits per outcome (>= 1).
        shots: How many shots (>= 0).

    Returns:
        Counts summing to ``shots``, keys of exactly ``width`` characters.
    """
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    size = 1 << min(width, 21)  # the number of outcomes, where it matters below
    counts: dict[str, int] = {}
    if width <= 8 and shots * (17 + size) < 6300 * (size - 1):
        # One random byte per shot, its low ``width`` bits kept: exact (every byte value is
        # equally likely, so every masked value is) and counted in C by ``bytes.count``.
        # Its cost grows with shots times outcomes, the binomial chain's below with outcomes
        # alone; the test above picks the cheaper. Its constants are the two costs measured
        # on CPython 3.11, in units of one shot's cost per outcome: a shot costs 17 of them
        # plus one per outcome, the binomial chain 6300 per outcome.
        shots_bytes = rng.randbytes(shots).translate(_LOW_BITS[width])
        for value, key in enumerate(_KEYS[width]):
            n = shots_bytes.count(value)
            if n:
                counts[key] = n
        return counts
    if width <= 20 and size <= shots:
        remaining = shots
        for value in range(size):
            if remaining == 0:
                break
            left = size - value
            drawn = remaining if left == 1 else binomial(rng, remaining, 1.0 / left)
            if drawn:
                counts[format(value, f"0{width}b")] = drawn
                remaining -= drawn
        return counts
    for _ in range(shots):
        key = format(rng.getrandbits(width), f"0{width}b")
        counts[key] = counts.get(key, 0) + 1
    return counts
