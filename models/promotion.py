"""Champion and challenger: ``cyoa promote`` moves ``champion`` only past the gate.

The gate, on the same data with the same seed: the challenger's parse rate is not lower than the champion's,
and its perplexity is at most 5 % worse. With no champion yet, the challenger passes. ``--force`` promotes
anyway and records that on the version (tag ``cyoa.forced_promotion``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

PERPLEXITY_TOLERANCE = 0.05


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
    limit = champion["perplexity"] * (1 + tolerance)
    if challenger["perplexity"] > limit:
        reasons.append(f"perplexity {challenger['perplexity']:.2f} is more than {tolerance:.0%} worse than the "
                       f"champion's {champion['perplexity']:.2f} (limit {limit:.2f})")
    if reasons:
        return Gate(False, reasons)
    return Gate(True, [f"parse rate {challenger['parse_rate']:.3f} >= {champion['parse_rate']:.3f} and perplexity "
                       f"{challenger['perplexity']:.2f} <= {limit:.2f}"])


@dataclass
class Decision:
    promoted: bool
    forced: bool
    gate: Gate
    challenger: str
    champion: str | None
    challenger_metrics: dict[str, float]
    champion_metrics: dict[str, float] | None

    def as_dict(self) -> dict[str, object]:
        return {"promoted": self.promoted, "forced": self.forced, "passed": self.gate.passed,
                "reasons": self.gate.reasons, "challenger": self.challenger, "champion": self.champion,
                "challenger_metrics": self.challenger_metrics, "champion_metrics": self.champion_metrics}
