"""Reading runs at budgets, and each decoder at its best learning rate.

A *budget* is a number of training steps. Under anytime evaluation (a constant learning rate, validation on
the weights' moving average: configs/callbacks/ema.yaml) the validation after S steps estimates what a whole
run of S steps reaches, so one run answers a question at every budget it passes. The report reads each
question at S/4, S/2 and S, S the last validation every compared run has (the nearest validation at or
below each).

    budgets(runs)                         -> [S/4, S/2, S] as steps trained, validated by every run
    at_budget(group, key, budget)         -> {seed: value of `key` after `budget` steps}
    best_rates(groups)                    -> {family: the group at the learning rate with the lowest val distortion}
    picked(groups)                        -> the groups best_rates picks where there is an lr grid
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from musicvae.report.groups import Group, format_value
from musicvae.report.runs import Run, metric_series
from musicvae.report.stats import t_interval

BUDGET_KEY = "val/distortion"  # the curve whose validations define a run's budgets
FRACTIONS = (0.25, 0.5, 1.0)  # of S: the budgets read
LR_KEY = "optim.lr"  # the setting the tuned comparison picks per decoder
SELECTION_KEY = "val/distortion"  # picked on validation (lower is better); test-split fidelity never picks


def steps_trained(run: Run, key: str = BUDGET_KEY) -> set[int]:
    """The budgets a run has a finite `key` at: steps trained (Lightning logs the validation after n steps
    at step n - 1)."""
    return {step + 1 for step, value in metric_series(run, key).items() if math.isfinite(value)}


def budgets(runs: Sequence[Run], fractions: Sequence[float] = FRACTIONS) -> list[int]:
    """The budgets to read the runs at: for each fraction f of S (the last validation all runs have), the last
    common validation at or below f·S; ascending, without repeats. [] when the runs share no validation."""
    common = set.intersection(*(steps_trained(r) for r in runs)) if runs else set()
    if not common:
        return []
    last = max(common)
    chosen = {max((b for b in common if b <= f * last), default=None) for f in fractions}
    return sorted(b for b in chosen if b is not None)


def at_budget(group: Group, key: str, budget: int) -> dict[int | None, float]:
    """{seed: the value of `key` at the validation after `budget` steps} (NaN where a run has none)."""
    return {r.seed: metric_series(r, key).get(budget - 1, math.nan) for r in group.runs}


def family(group: Group) -> tuple:
    """What a group shares with the same decoder at other learning rates: its mode and settings but the rate."""
    return (group.mode, *((k, v) for k, v in group.settings.items() if k != LR_KEY))


def family_label(group: Group) -> str:
    """The group's context without the learning rate: the setting a tuned comparison is made in."""
    return " ".join(f"{k}={format_value(v)}" for k, v in group.context.items() if k != LR_KEY)


def grid_contexts(groups: Sequence[Group]) -> set[str]:
    """The contexts (family_label: settings but the mode and the rate) where some decoder was trained at more
    than one learning rate: an lr grid to pick from. A study may sweep the rate at one β only."""
    rates: dict[tuple, set] = {}
    for g in groups:
        rates.setdefault(family(g), set()).add(g.settings.get(LR_KEY))
    return {family_label(g) for g in groups if len(rates[family(g)]) > 1}


def tuned(groups: Sequence[Group]) -> bool:
    """Whether the sweep holds an lr grid anywhere."""
    return bool(grid_contexts(groups))


def chosen(groups: Sequence[Group]) -> list[Group]:
    """The groups whose test-split fidelity is reported: in a context with an lr grid, each decoder at the rate
    picked on validation (best_rates); elsewhere every group."""
    grid = grid_contexts(groups)
    chosen_ids = {id(g) for g in picked(groups)}
    return [g for g in groups if family_label(g) not in grid or id(g) in chosen_ids]


def picked(groups: Sequence[Group]) -> list[Group]:
    """Each decoder at its best rate (best_rates), in the contexts that have an lr grid; in the groups' order."""
    grid = grid_contexts(groups)
    return list(best_rates([g for g in groups if family_label(g) in grid]).values())


def best_rates(groups: Sequence[Group]) -> dict[tuple, Group]:
    """{family: its group at the learning rate whose mean val distortion (over seeds) is lowest at the final
    budget of that family's runs}. Selection reads validation only."""
    families: dict[tuple, list[Group]] = {}
    for g in groups:
        families.setdefault(family(g), []).append(g)
    best = {}
    for key, members in families.items():
        final = (budgets([r for g in members for r in g.runs]) or [None])[-1]
        best[key] = min(members, key=lambda g, b=final: _selection_score(g, b))
    return best


def _selection_score(group: Group, budget: int | None) -> float:
    """The group's mean val distortion over seeds at `budget` (inf where it has none: never picked first)."""
    if budget is None:
        return math.inf
    mean = t_interval(at_budget(group, SELECTION_KEY, budget).values()).mean
    return mean if math.isfinite(mean) else math.inf
