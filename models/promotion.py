"""Champion and challenger: ``cyoa promote`` moves ``champion`` only past the gate.

The gate, on the same data with the same seed: the challenger's parse rate is not lower than the champion's,
and its bits per character of the reference scenes are at most 5 % worse. Bits per character, not perplexity
per token: a SmolLM2 challenger (49 k tokens) and a GPT-2 champion trained here (4 k tokens) cut the same text
into different tokens, so their per-token perplexities are not comparable; per character they are. (Metric
sets from before bits per character existed fall back to perplexity.) With no champion yet, the challenger
passes. ``--force`` promotes anyway and records that on the version (tag ``cyoa.forced_promotion``).

With ``--live`` the challenger must also have been played (``live_gate``): at least ``min_games`` games
written by it, and a mean rating and thumbs-up share not worse than the champion's beyond a tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PERPLEXITY_TOLERANCE = 0.05
LIKELIHOOD = "bits_per_char"  # the gate's likelihood figure: the same scale for every tokenizer
MIN_LIVE_GAMES = 5
RATING_TOLERANCE = 0.25  # stars (1-5): what a few players' moods move a small sample's mean by
THUMBS_TOLERANCE = 0.05  # share of thumbs that are up


@dataclass(frozen=True)
class Gate:
    passed: bool
    reasons: list[str] = field(default_factory=list)


def gate(challenger: dict[str, float], champion: dict[str, float] | None,
         tolerance: float = PERPLEXITY_TOLERANCE) -> Gate:
    """Compare two metric sets from the same evaluation data; every failed rule is a reason."""
    if champion is None:
        return Gate(True, ["no champion yet"])
    reasons = []
    if challenger["parse_rate"] < champion["parse_rate"]:
        reasons.append(f"parse rate {challenger['parse_rate']:.3f} is lower than the champion's "
                       f"{champion['parse_rate']:.3f}")
    name = LIKELIHOOD if LIKELIHOOD in challenger and LIKELIHOOD in champion else "perplexity"
    limit = champion[name] * (1 + tolerance)
    what = name.replace("_", " ")
    if challenger[name] > limit:
        reasons.append(f"{what} {challenger[name]:.3f} is more than {tolerance:.0%} worse than the "
                       f"champion's {champion[name]:.3f} (limit {limit:.3f})")
    if reasons:
        return Gate(False, reasons)
    return Gate(True, [f"parse rate {challenger['parse_rate']:.3f} >= {champion['parse_rate']:.3f} and {what} "
                       f"{challenger[name]:.3f} <= {limit:.3f}"])


@dataclass(frozen=True)
class LiveRules:
    min_games: int = MIN_LIVE_GAMES
    rating_tolerance: float = RATING_TOLERANCE
    thumbs_tolerance: float = THUMBS_TOLERANCE


def _not_worse(name: str, what: str, unit: str, challenger: dict[str, float], champion: dict[str, float],
               tolerance: float) -> tuple[bool, str]:
    """Is the challenger's ``name`` at least the champion's minus ``tolerance``? With the reason either way."""
    if name not in champion:
        return True, f"no champion {what} to compare with"
    if name not in challenger:
        return False, f"the challenger has no {what} yet (the champion's is {champion[name]:.2f})"
    limit = champion[name] - tolerance
    if challenger[name] < limit:
        return False, (f"{what} {challenger[name]:.2f} is more than {tolerance:g}{unit} below the champion's "
                       f"{champion[name]:.2f} (limit {limit:.2f})")
    return True, f"{what} {challenger[name]:.2f} >= {limit:.2f}"


def live_gate(challenger_label: str, challenger: dict[str, float], champion: dict[str, float] | None,
              rules: LiveRules) -> Gate:
    """The live part of the gate, on the versions' total live figures (``VersionFigures.metrics()``)."""
    games = int(challenger.get("games", 0))
    if games < rules.min_games:
        return Gate(False, [f"live: not enough live games: {challenger_label} wrote {games}, the live gate needs "
                            f"at least {rules.min_games}; play it (`cyoa play --new --model "
                            f"models:/{challenger_label}`) or promote without --live"])
    if champion is None:
        return Gate(True, [f"live: {games} games >= {rules.min_games}; no champion to compare with"])
    checks = [_not_worse("mean_rating", "mean rating", " stars", challenger, champion, rules.rating_tolerance),
              _not_worse("thumbs_ratio", "thumbs-up share", "", challenger, champion, rules.thumbs_tolerance)]
    failed = [reason for ok, reason in checks if not ok]
    if failed:
        return Gate(False, [f"live: {reason}" for reason in failed])
    return Gate(True, [f"live: {games} games >= {rules.min_games}; " + "; ".join(reason for _, reason in checks)])


def combine(*gates: Gate) -> Gate:
    """All gates must pass; the reasons of the failed ones, or else of all."""
    failed = [part for part in gates if not part.passed]
    return Gate(not failed, [reason for part in (failed or gates) for reason in part.reasons])


@dataclass
class Decision:
    promoted: bool
    forced: bool
    gate: Gate
    challenger: str
    champion: str | None
    challenger_metrics: dict[str, float]
    champion_metrics: dict[str, float] | None
    # With --live: the live figures the gate used, {"challenger": ..., "champion": ... or None}.
    live: dict[str, dict[str, float] | None] | None = None

    def as_dict(self) -> dict[str, object]:
        return {"promoted": self.promoted, "forced": self.forced, "passed": self.gate.passed,
                "reasons": self.gate.reasons, "challenger": self.challenger, "champion": self.champion,
                "challenger_metrics": self.challenger_metrics, "champion_metrics": self.champion_metrics,
                "live": self.live}
