"""The exact multinomial sampler behind MockBackend's counts."""

from __future__ import annotations

import math
import random

import pytest

from logosq_os_scheduler.backends._sampling import binomial, multinomial_counts, uniform_counts


@pytest.mark.parametrize(
    ("n", "p"),
    [(50, 0.05), (1000, 0.3), (1000, 0.5), (1000, 0.9), (100_000, 0.001), (10_000, 0.25)],
)
def test_binomial_matches_mean_and_variance(n: int, p: float) -> None:
    """Covers both the waiting-time (n*p < 10) and BTRS (n*p >= 10) branches."""
    rng = random.Random(1234)
    draws = [binomial(rng, n, p) for _ in range(4000)]
    assert all(0 <= d <= n for d in draws)
    mean = sum(draws) / len(draws)
    var = sum((d - mean) ** 2 for d in draws) / (len(draws) - 1)
    expected_var = n * p * (1 - p)
    # Five standard errors of the sample mean; 15% on the variance (4000 draws).
    assert abs(mean - n * p) < 5 * math.sqrt(expected_var / len(draws))
    assert abs(var - expected_var) < 0.15 * expected_var


def test_binomial_edges() -> None:
    rng = random.Random(0)
    assert binomial(rng, 0, 0.5) == 0
    assert binomial(rng, 10, 0.0) == 0
    assert binomial(rng, 10, 1.0) == 10
    with pytest.raises(ValueError):
        binomial(rng, -1, 0.5)
    with pytest.raises(ValueError):
        binomial(rng, 5, 1.5)


def test_multinomial_sums_to_shots_and_follows_probabilities() -> None:
    rng = random.Random(7)
    outcomes = [("00", 0.5), ("11", 0.25), ("01", 0.25), ("10", 0.0)]
    totals = dict.fromkeys(["00", "11", "01", "10"], 0)
    for _ in range(200):
        counts = multinomial_counts(rng, outcomes, 1000)
        assert sum(counts.values()) == 1000
        assert "10" not in counts  # probability zero is never drawn
        for key, n in counts.items():
            totals[key] += n
    assert totals["00"] / 200_000 == pytest.approx(0.5, abs=0.01)
    assert totals["11"] / 200_000 == pytest.approx(0.25, abs=0.01)


def test_multinomial_rejects_bad_probabilities() -> None:
    with pytest.raises(ValueError):
        multinomial_counts(random.Random(0), [("0", 0.0)], 10)
    with pytest.raises(ValueError):
        multinomial_counts(random.Random(0), [("0", 1.5), ("1", -0.5)], 10)


@pytest.mark.parametrize(("width", "shots"), [(1, 1), (2, 4096), (3, 5), (12, 100), (40, 64)])
def test_uniform_counts_shape(width: int, shots: int) -> None:
    counts = uniform_counts(random.Random(3), width, shots)
    assert sum(counts.values()) == shots
    assert all(len(key) == width and set(key) <= {"0", "1"} for key in counts)


def test_uniform_counts_are_uniform() -> None:
    counts = uniform_counts(random.Random(11), 2, 400_000)
    assert set(counts) == {"00", "01", "10", "11"}
    for n in counts.values():
        assert n / 400_000 == pytest.approx(0.25, abs=0.005)


def test_same_seed_same_counts() -> None:
    assert uniform_counts(random.Random(5), 3, 1000) == uniform_counts(random.Random(5), 3, 1000)
    assert uniform_counts(random.Random(5), 3, 1000) != uniform_counts(random.Random(6), 3, 1000)


@pytest.mark.parametrize(
    ("width", "shots", "draws"),
    [
        (1, 100, 400),  # random bytes, counted
        (2, 100, 400),
        (3, 200, 200),
        (8, 256, 200),
        (2, 5_000, 10),  # the binomial chain
        (12, 100, 40),  # one draw per shot (more outcomes than shots)
    ],
)
def test_uniform_counts_is_uniform_on_every_path(width: int, shots: int, draws: int) -> None:
    rng = random.Random(1234)
    total: dict[str, int] = {}
    for _ in range(draws):
        counts = uniform_counts(rng, width, shots)
        assert sum(counts.values()) == shots
        assert all(len(key) == width and set(key) <= {"0", "1"} for key in counts)
        assert all(n > 0 for n in counts.values())
        for key, n in counts.items():
            total[key] = total.get(key, 0) + n
    samples = shots * draws
    # Each bit is a fair coin on its own: its share of ones is 1/2 within 5 sigma.
    for bit in range(width):
        ones = sum(n for key, n in total.items() if key[bit] == "1")
        assert abs(ones - samples / 2) < 5 * math.sqrt(samples / 4)
    if width <= 3:
        # Every outcome, not just every bit: each has probability 2**-width.
        p = 1 / (1 << width)
        assert len(total) == 1 << width
        for n in total.values():
            assert abs(n - samples * p) < 5 * math.sqrt(samples * p * (1 - p))
    # Reproducible from the seed.
    assert uniform_counts(random.Random(7), width, shots) == uniform_counts(
        random.Random(7), width, shots
    )
