"""The monitoring budget: how much a kdamond may cost, and how far it stretches its sampling
interval to stay within that.

A user-space kdamond pays for every sample in CPU time (system calls, the interpreter, the event
loop's wake-up) and, with the ``smaps`` and ``soft_dirty`` access checks, in the target's time
too (clearing a whole process's referenced or soft-dirty bits and walking its page tables under
its mmap lock slows the process being watched). When the configured attributes would cost more
than the budget, the kdamond samples less often: it stretches the *effective* sampling interval
and keeps the number of samples per aggregation and per update, so that the aggregation and
update intervals stretch with it (the shape of the kernel's intervals auto-tuning, Linux v6.15,
which scales ``sample_us`` and ``aggr_us`` together). ``nr_accesses`` keeps its meaning
(accessed samples out of ``aggr_us / sample_us``) and regions' ages stay counted in aggregations.

This module is pure arithmetic with no clock, no I/O and no randomness: the scheduler measures,
:func:`next_state` decides. The same inputs give the same answer, so tests drive it with seeded
noise and check its properties (never above the budget in steady state, back to the configured
interval when the cost allows, a higher cost never giving a shorter interval).

The controller, once per aggregation interval:

* keeps a smoothed cost of one sample: each window moves the estimate ``SMOOTH`` of the way
  to its own cost, so one costly window (a garbage collection, the periodic update of the
  regions) or one cheap window does not move the interval alone; a surge (a window costing
  more than ``SURGE`` times what the budget allows at the current interval) is taken at once;
* computes ``needed``, the stretch at which that cost would use exactly the budget;
* above the budget (``needed > stretch``) stretches to ``needed / AIM``, aiming below the budget;
* releases only when the share at the current stretch is below ``RELEASE`` of the budget, to
  ``needed / AIM``, or straight back to the configured interval when that is within the budget.
  Between ``RELEASE`` and 1 it holds: that dead band is the hysteresis that keeps a cost hovering
  near a threshold from switching intervals back and forth.

The scheduler measures windows of whole aggregation intervals with at least
``MIN_WINDOW_SAMPLES`` samples (a few samples' costs are mostly noise) and changes the interval
only at an aggregation boundary, so that every aggregation has one sampling interval.
"""

from __future__ import annotations

from dataclasses import dataclass

#: ``damond serve --cpu-budget``'s default: a twentieth of one CPU per kdamond, target
#: perturbation included (the in-process API and ``damond record`` have none unless asked).
DEFAULT_CPU_BUDGET = 0.05
#: How much of the target's time a perturbing access check (``smaps``, ``soft_dirty``) costs,
#: per unit of the check's own wall time. Measured with bench/perturbation.py (a 200 MiB
#: rewrite loop, this project's 2-core hosts): with the checks charged once, the target slowed
#: by 4.4-7.6% while the checks took about 2.5% of its time; clearing the Accessed bits of the
#: whole process costs it TLB refills and bit re-setting afterwards, beyond the walk itself.
TARGET_SLOWDOWN_FACTOR = 3.0
#: After a change, the share of the budget the new interval aims at.
AIM = 0.8
#: Release (shorten) only when the share at the current interval is below this share of the
#: budget.
RELEASE = 0.5
#: How far one window moves the smoothed cost towards its own.
SMOOTH = 0.5
#: A window costing this many times what the budget allows at the current interval is
#: believed at once.
SURGE = 2.0
#: The fewest samples a window needs before the controller decides on it.
MIN_WINDOW_SAMPLES = 20
#: The longest stretch: a cost this far above the budget is reported, not chased further
#: (5 ms sampling becomes 5 s).
MAX_STRETCH = 1000.0


def check_budget(fraction: float) -> float:
    """The budget as given (a share of one CPU, 0 disabling it); ValueError when it is not a
    number from 0 to 1."""
    value = float(fraction)
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise ValueError(f"the CPU budget is a share of one CPU from 0 to 1, not {fraction!r}")
    return value


@dataclass(frozen=True, slots=True)
class BudgetState:
    """What the controller remembers between two decisions."""

    #: effective sampling interval / configured sampling interval (1.0: as configured)
    stretch: float = 1.0
    #: smoothed cost of one sample in seconds (0.0: nothing measured yet)
    cost_s: float = 0.0
    #: how often the stretch changed
    changes: int = 0


@dataclass(frozen=True, slots=True)
class WindowCost:
    """One window's measurements (an aggregation interval's samples), in nanoseconds."""

    samples: int
    #: CPU time of the kdamond's own work (its spans between two waits)
    own_ns: int
    #: CPU time of waking up for one sample (the event loop's share), the window's minimum
    wake_ns: int
    #: the target's estimated slowdown (time of perturbing access checks), 0 for others
    target_ns: int
    #: wall-clock length of the window
    wall_ns: int

    @property
    def cost_ns(self) -> int:
        """Everything charged to the budget over the window."""
        return self.own_ns + self.wake_ns * self.samples + self.target_ns

    @property
    def cost_per_sample_s(self) -> float:
        return self.cost_ns / max(self.samples, 1) / 1e9

    @property
    def cpu_share(self) -> float:
        """The kdamond's measured CPU share over the window (target perturbation excluded)."""
        return (self.own_ns + self.wake_ns * self.samples) / self.wall_ns if self.wall_ns else 0.0

    @property
    def charged_share(self) -> float:
        """The share charged to the budget (target perturbation included)."""
        return self.cost_ns / self.wall_ns if self.wall_ns else 0.0


def next_state(state: BudgetState, *, budget: float, sample_s: float, cost_s: float,
               max_stretch: float = MAX_STRETCH) -> BudgetState:
    """The controller's decision after a window whose samples cost ``cost_s`` seconds each, for
    a configured sampling interval of ``sample_s`` seconds and a ``budget`` (share of one CPU;
    0 or less disables it: the stretch goes back to 1)."""
    if cost_s < 0 or sample_s <= 0:
        raise ValueError("cost and sampling interval must be positive")
    if state.cost_s == 0.0:
        smoothed = cost_s
    else:
        smoothed = state.cost_s + SMOOTH * (cost_s - state.cost_s)
    stretch = state.stretch
    if budget <= 0:
        new = 1.0
    else:
        if cost_s > SURGE * stretch * budget * sample_s:
            smoothed = max(smoothed, cost_s)
        needed = smoothed / (budget * sample_s)
        if needed > stretch:
            new = min(max_stretch, max(1.0, needed / AIM))
        elif needed < RELEASE * stretch and stretch > 1.0:
            new = 1.0 if needed <= 1.0 else needed / AIM
        else:
            new = stretch
    return BudgetState(stretch=new, cost_s=smoothed,
                       changes=state.changes + (new != stretch))


def effective_us(configured_us: int, stretch: float) -> int:
    """An interval of ``configured_us`` stretched, in whole microseconds (never shorter)."""
    return max(configured_us, round(configured_us * stretch))
