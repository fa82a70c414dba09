"""Optional extra data sources: openly licensed story data converted to the step format.

Neither source is anime-flavoured, so the build only ever adds them to the training split: validation
and test stay the bundled dataset, comparable across builds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from data.steps import Step


@dataclass
class ExtraSource:
    """What one importer produced: steps, where they came from, and what it dropped and why."""

    name: str
    licence: str
    origin: str
    files: list[Path]
    steps: list[Step] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)

    def metadata(self) -> dict[str, object]:
        return {
            "name": self.name,
            "licence": self.licence,
            "origin": self.origin,
            "steps": len(self.steps),
            "dropped": dict(sorted(self.dropped.items())),
        }


def _importers() -> dict[str, Callable[[Path], ExtraSource]]:
    from data.sources.aidungeon import load_aidungeon
    from data.sources.fifi import load_fifi

    return {"aidungeon": load_aidungeon, "fifi": load_fifi}


SOURCE_NAMES: tuple[str, ...] = ("aidungeon", "fifi")


def load_source(name: str, public_dir: Path) -> ExtraSource:
    """Run the importer called ``name`` over ``public_dir`` (the folder that holds SOURCES.md)."""
    return _importers()[name](public_dir)
