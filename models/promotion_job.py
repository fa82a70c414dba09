"""``cyoa promote`` as a job: evaluate challenger and champion on the same data, apply the gate, move the alias.

With a ``LiveCheck`` (``--live``) the live gate comes first: the live figures it uses are logged on both
versions' runs and its outcome on the challenger version (tag ``cyoa.live_gate``); when it fails, the
minutes of offline evaluation are skipped (unless forced).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mlflow.entities.model_registry import ModelVersion

from data.steps import Step
from data.tracking import TrackingTarget
from engine.errors import ModelNotFoundError
from models.evaluation import Embedder, EvalOptions, EvalReport, evaluate
from models.live_report import LiveReport, figures_of
from models.live_tracking import log_live
from models.promotion import Decision, Gate, LiveRules, combine, gate, live_gate
from models.registry import (
    CHALLENGER,
    CHAMPION,
    load_storyteller,
    log_evaluation,
    set_alias,
    set_version_tag,
    version_by_alias,
)

LIVE_GATE_TAG = "cyoa.live_gate"


@dataclass(frozen=True)
class LiveCheck:
    """What ``--live`` adds to the gate: the live figures (read from the game store) and the rules."""

    report: LiveReport
    rules: LiveRules = field(default_factory=LiveRules)


def check_live(target: TrackingTarget, name: str, challenger: ModelVersion, champion: ModelVersion | None,
               live: LiveCheck, on_stage: Callable[[str], None]) -> tuple[Gate, dict[str, dict[str, float] | None]]:
    """Apply the live gate; log the figures it used on both versions' runs and its outcome on the challenger."""
    challenger_label = f"{name}/{challenger.version}"
    champion_label = f"{name}/{champion.version}" if champion is not None else None
    labels = {"challenger": challenger_label, "champion": champion_label}
    used: dict[str, dict[str, float] | None] = {}
    for role, label in labels.items():
        if label is None:
            used[role] = None
            continue
        figures = figures_of(live.report, label)
        on_stage(f"live figures of the {role}, {label}: {figures.total.games} games")
        log_live(target, figures)
        used[role] = figures.metrics()
    result = live_gate(challenger_label, used["challenger"] or {}, used["champion"], live.rules)
    outcome = ("passed: " if result.passed else "failed: ") + "; ".join(result.reasons)
    set_version_tag(target, name, challenger.version, LIVE_GATE_TAG, outcome)
    return result, used


def promote(target: TrackingTarget, name: str, steps: Sequence[Step], data_label: str, data_digest: str,
            options: EvalOptions, embedder: Embedder | None, force: bool = False,
            on_stage: Callable[[str], None] = lambda _: None, live: LiveCheck | None = None) -> Decision:
    challenger = version_by_alias(target, name, CHALLENGER)
    if challenger is None:
        raise ModelNotFoundError(f"model {name} has no challenger to promote: train one with `cyoa train`")
    champion = version_by_alias(target, name, CHAMPION)
    if champion is not None and champion.version == challenger.version:
        label = f"{name}/{challenger.version}"
        return Decision(False, False, Gate(False, [f"version {challenger.version} is already the champion"]),
                        label, label, {}, None)
    challenger_label = f"{name}/{challenger.version}"
    champion_label = f"{name}/{champion.version}" if champion is not None else None
    live_result, live_used = None, None
    if live is not None:
        live_result, live_used = check_live(target, name, challenger, champion, live, on_stage)
        if not live_result.passed and not force:
            on_stage("the live gate failed: the offline evaluation is skipped")
            return Decision(False, False, live_result, challenger_label, champion_label, {}, None, live_used)
    reports: dict[str, EvalReport] = {}
    for label, version in (("challenger", challenger), ("champion", champion)):
        if version is None:
            continue
        on_stage(f"evaluating the {label}, {name} version {version.version}")
        storyteller = load_storyteller(target, f"models:/{name}/{version.version}")
        reports[label] = evaluate(storyteller, steps, data_label, options, embedder)
        log_evaluation(target, reports[label], data_label, data_digest)
    champion_metrics = reports["champion"].metrics if "champion" in reports else None
    result = gate(reports["challenger"].metrics, champion_metrics)
    if live_result is not None:
        result = combine(result, live_result)
    promoted = result.passed or force
    if promoted:
        set_alias(target, name, CHAMPION, challenger.version)
        if force and not result.passed:
            set_version_tag(target, name, challenger.version, "cyoa.forced_promotion", "; ".join(result.reasons))
    return Decision(promoted, force and not result.passed, result, challenger_label, champion_label,
                    reports["challenger"].metrics, champion_metrics, live_used)
