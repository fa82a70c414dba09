"""``cyoa promote`` as a job: evaluate challenger and champion on the same data, apply the gate, move the alias."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from data.steps import Step
from data.tracking import TrackingTarget
from engine.errors import ModelNotFoundError
from models.evaluation import Embedder, EvalOptions, EvalReport, evaluate
from models.promotion import Decision, Gate, gate
from models.registry import (
    CHALLENGER,
    CHAMPION,
    load_storyteller,
    log_evaluation,
    set_alias,
    set_version_tag,
    version_by_alias,
)


def promote(target: TrackingTarget, name: str, steps: Sequence[Step], data_label: str, data_digest: str,
            options: EvalOptions, embedder: Embedder | None, force: bool = False,
            on_stage: Callable[[str], None] = lambda _: None) -> Decision:
    challenger = version_by_alias(target, name, CHALLENGER)
    if challenger is None:
        raise ModelNotFoundError(f"model {name} has no challenger to promote: train one with `cyoa train`")
    champion = version_by_alias(target, name, CHAMPION)
    if champion is not None and champion.version == challenger.version:
        label = f"{name}/{challenger.version}"
        return Decision(False, False, Gate(False, [f"version {challenger.version} is already the champion"]),
                        label, label, {}, None)
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
    promoted = result.passed or force
    if promoted:
        set_alias(target, name, CHAMPION, challenger.version)
        if force and not result.passed:
            set_version_tag(target, name, challenger.version, "cyoa.forced_promotion", "; ".join(result.reasons))
    return Decision(promoted, force and not result.passed, result, f"{name}/{challenger.version}",
                    f"{name}/{champion.version}" if champion is not None else None,
                    reports["challenger"].metrics, champion_metrics)
