"""The budget controller (``damond.core.budget``): unit cases and properties.

The controller is a pure function, so its properties are checked by driving it over many
windows with costs drawn from seeded generators: never above the budget in steady state,
back to the configured interval once the cost allows, a higher cost never giving a shorter
interval, and no back-and-forth while the cost hovers near a threshold. Hypothesis runs are
derandomized so that a failure reproduces.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from damond.core.budget import (
    AIM,
    MAX_STRETCH,
    RELEASE,
    BudgetState,
    WindowCost,
    check_budget,
    effective_us,
    next_state,
)

SETTINGS = settings(derandomize=True, deadline=None, max_examples=200)

budgets = st.floats(min_value=0.001, max_value=1.0)
samples_s = st.sampled_from([1e-6, 1e-4, 1e-3, 5e-3, 0.1, 1.0])
#: cost of one sample relative to the configured interval (0.001x .. 50x)
rel_costs = st.floats(min_value=1e-3, max_value=50.0)


def run(state: BudgetState, costs, *, budget: float, sample_s: float) -> list[BudgetState]:
    out = []
    for c in costs:
        state = next_state(state, budget=budget, sample_s=sample_s, cost_s=c)
        out.append(state)
    return out


def share(cost_s: float, state: BudgetState, sample_s: float) -> float:
    return cost_s / (state.stretch * sample_s)


# -- unit cases ---------------------------------------------------------------------------


def test_within_budget_keeps_the_configured_interval():
    s = next_state(BudgetState(), budget=0.05, sample_s=5e-3, cost_s=0.1e-3)  # 2 %
    assert s.stretch == 1.0 and s.changes == 0


def test_over_budget_stretches_to_aim_below_the_budget():
    # 1 ms per 5 ms sample is 20 %: 4x the 5 % budget, so the stretch aims at 4 / AIM
    s = next_state(BudgetState(), budget=0.05, sample_s=5e-3, cost_s=1e-3)
    assert s.stretch == pytest.approx(4 / AIM)
    assert share(1e-3, s, 5e-3) == pytest.approx(0.05 * AIM)
    assert s.changes == 1


def test_disabled_budget_never_stretches_and_drops_a_stretch():
    s = next_state(BudgetState(), budget=0.0, sample_s=5e-3, cost_s=1.0)
    assert s.stretch == 1.0
    s = next_state(BudgetState(stretch=30.0, cost_s=1e-3), budget=0.0, sample_s=5e-3,
                   cost_s=1e-3)
    assert s.stretch == 1.0 and s.changes == 1


def test_a_single_cheap_window_does_not_undo_a_stretch():
    s = next_state(BudgetState(), budget=0.05, sample_s=5e-3, cost_s=1e-3)
    held = next_state(s, budget=0.05, sample_s=5e-3, cost_s=0.5e-3)  # one window at half
    assert held.stretch == s.stretch


def test_a_single_costly_window_within_the_surge_does_not_stretch():
    s = BudgetState(stretch=1.0, cost_s=0.1e-3)  # 2 % of 5 ms, within a 5 % budget
    held = next_state(s, budget=0.05, sample_s=5e-3, cost_s=0.35e-3)  # one window at 7 %
    assert held.stretch == 1.0


def test_a_surge_is_believed_at_once():
    s = BudgetState(stretch=1.0, cost_s=0.15e-3)
    surged = next_state(s, budget=0.05, sample_s=5e-3, cost_s=5e-3)  # 100 %: 20x the budget
    assert surged.stretch == pytest.approx(20 / AIM)


def test_the_stretch_is_capped_and_the_cap_reported_by_the_share():
    s = next_state(BudgetState(), budget=0.01, sample_s=1e-3, cost_s=100.0)
    assert s.stretch == MAX_STRETCH


def test_effective_interval_never_shorter_than_configured():
    assert effective_us(5000, 1.0) == 5000
    assert effective_us(5000, 2.5) == 12500
    assert effective_us(1, 1.2) == 1


def test_window_cost_arithmetic():
    w = WindowCost(samples=20, own_ns=2_000_000, wake_ns=50_000, target_ns=1_000_000,
                   wall_ns=100_000_000)
    assert w.cost_ns == 4_000_000
    assert w.cpu_share == pytest.approx(0.03)
    assert w.charged_share == pytest.approx(0.04)
    assert w.cost_per_sample_s == pytest.approx(200e-6)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "x"])
def test_check_budget_refuses_non_shares(bad):
    with pytest.raises(ValueError):
        check_budget(bad)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError):
        next_state(BudgetState(), budget=0.05, sample_s=0.0, cost_s=1e-3)
    with pytest.raises(ValueError):
        next_state(BudgetState(), budget=0.05, sample_s=5e-3, cost_s=-1.0)


# -- properties ---------------------------------------------------------------------------


@SETTINGS
@given(budget=budgets, sample_s=samples_s, rel=rel_costs,
       start=st.floats(min_value=1.0, max_value=100.0),
       prior=st.floats(min_value=0.0, max_value=10.0))
def test_never_above_budget_in_steady_state(budget, sample_s, rel, start, prior):
    cost = rel * sample_s
    states = run(BudgetState(stretch=start, cost_s=cost * prior), [cost] * 60, budget=budget,
                 sample_s=sample_s)
    final = states[-1]
    assert final.stretch == MAX_STRETCH or share(cost, final, sample_s) <= budget * (1 + 1e-6)
    # and it settles: the last windows change nothing
    assert {s.stretch for s in states[-5:]} == {final.stretch}


@SETTINGS
@given(budget=budgets, sample_s=samples_s, high=rel_costs, seed=st.integers(0, 2**32 - 1))
def test_returns_to_the_configured_interval_when_the_cost_allows(budget, sample_s, high, seed):
    rng = np.random.default_rng(seed)
    state = run(BudgetState(), [high * sample_s] * 5, budget=budget, sample_s=sample_s)[-1]
    # the cost falls to a noisy level the configured interval can afford
    cheap = budget * sample_s * rng.uniform(0.05, AIM, size=60)
    final = run(state, cheap, budget=budget, sample_s=sample_s)[-1]
    assert final.stretch == 1.0


@SETTINGS
@given(budget=budgets, sample_s=samples_s, a=rel_costs, b=rel_costs,
       stretch=st.floats(min_value=1.0, max_value=MAX_STRETCH),
       smoothed=st.floats(min_value=0.0, max_value=50.0))
def test_monotone_response(budget, sample_s, a, b, stretch, smoothed):
    state = BudgetState(stretch=stretch, cost_s=smoothed * sample_s)
    lo, hi = sorted((a, b))
    s_lo = next_state(state, budget=budget, sample_s=sample_s, cost_s=lo * sample_s)
    s_hi = next_state(state, budget=budget, sample_s=sample_s, cost_s=hi * sample_s)
    assert s_lo.stretch <= s_hi.stretch


@SETTINGS
@given(budget=budgets, sample_s=samples_s, level=st.floats(min_value=0.5, max_value=20.0),
       seed=st.integers(0, 2**32 - 1))
def test_no_oscillation_under_noise(budget, sample_s, level, seed):
    """A cost jittering by up to +-15 % around any level: after the first windows the
    stretch moves only upward (to absorb a costlier window), never back and forth."""
    rng = np.random.default_rng(seed)
    base = level * budget * sample_s
    costs = base * rng.uniform(0.85, 1.15, size=80)
    stretches = [s.stretch for s in run(BudgetState(), costs, budget=budget,
                                        sample_s=sample_s)]
    downs = sum(1 for x, y in zip(stretches, stretches[1:], strict=False) if y < x)
    assert downs == 0
    ups = sum(1 for x, y in zip(stretches, stretches[1:], strict=False) if y > x)
    assert ups <= 3  # the first decision, then at most a couple of costlier windows


def test_release_waits_for_the_dead_band():
    """Below the budget but above RELEASE of it, the stretch holds."""
    s = BudgetState(stretch=10.0, cost_s=0.0)
    budget, sample_s = 0.05, 5e-3
    for frac in (RELEASE + 0.01, 0.8, 0.99):
        cost = frac * budget * sample_s * 10.0  # share at stretch 10 is frac * budget
        assert next_state(s, budget=budget, sample_s=sample_s, cost_s=cost).stretch == 10.0
    cost = (RELEASE - 0.01) * budget * sample_s * 10.0
    assert next_state(s, budget=budget, sample_s=sample_s, cost_s=cost).stretch < 10.0
