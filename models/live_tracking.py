"""Live figures in MLflow: ``live_*`` metrics and a plot on the run that registered each model version.

A version label is ``<name>/<number>`` (``ModelWriter.model_version``); anything else (a fake writer, a local
folder, a ``runs:/`` URI), or a label the registry does not know, has no run to log on and is skipped.
"""

from __future__ import annotations

import io
import tempfile
import time
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from data.atomic import write_bytes_atomic
from data.tracking import TrackingTarget
from engine.errors import TrackingError
from models.live_report import Figures, VersionFigures

PLOT_ARTIFACT = "live/report.png"
# What the registry answers for a label that is no registered version (unknown name or number, or a name
# it cannot hold, such as a folder path): "not registered", not a failure.
_NOT_REGISTERED = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}


def registered_run(target: TrackingTarget, label: str) -> str | None:
    """The id of the run that registered the version ``<name>/<number>``; ``None`` if it is no registered
    version."""
    name, _, number = label.rpartition("/")
    if not name or not number.isdigit():
        return None
    target.activate()
    try:
        return str(MlflowClient().get_model_version(name, number).run_id) or None
    except MlflowException as exc:
        if exc.error_code in _NOT_REGISTERED:
            return None
        raise TrackingError(f"MLflow at {target.uri}: cannot look up model version {label}: {exc.message}") from exc


def _bars(axes: Axes, labels: list[str], values: list[float | None], title: str, ticks: list[float] | None,
          fmt: str = "{:.2f}") -> None:
    """Horizontal bars with their values; ``ticks`` fix the scale of a bounded figure (None: a count)."""
    # A genre with nothing to average gets no bar and a "-", rather than a bar at zero that reads as "worst".
    bars = axes.barh(labels, [value if value is not None else 0.0 for value in values],
                     color=["#4c72b0" if value is not None else "none" for value in values])
    axes.bar_label(bars, labels=[fmt.format(value) if value is not None else "-" for value in values], padding=3,
                   fontsize=8)
    axes.set_title(title, fontsize=10)
    axes.invert_yaxis()
    top = ticks[-1] if ticks else max([value or 0.0 for value in values] + [1.0])
    axes.set_xlim(0, top * 1.12)  # room for the labels
    if ticks:
        axes.set_xticks(ticks)
    else:
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))


def plot_png(figures: VersionFigures) -> bytes:
    """Games, mean rating and thumbs-up share, in total and per genre, as a PNG (Agg: no display needed)."""
    rows: list[tuple[str, Figures]] = [("all", figures.total), *sorted(figures.per_genre.items())]
    labels = [label.replace("_", " ") for label, _ in rows]
    chart = Figure(figsize=(11, 1.2 + 0.32 * len(rows)), layout="constrained")
    FigureCanvasAgg(chart)
    games, rating, thumbs = chart.subplots(1, 3, sharey=True)
    _bars(games, labels, [float(f.games) for _, f in rows], "games", None, "{:.0f}")
    _bars(rating, labels, [f.mean_rating for _, f in rows], "mean rating (stars)", [0, 1, 2, 3, 4, 5])
    _bars(thumbs, labels, [f.thumbs_ratio for _, f in rows], "thumbs-up share", [0, 0.25, 0.5, 0.75, 1])
    chart.suptitle(f"{figures.version}: live figures ({figures.total.games} games, "
                   f"{figures.total.scenes} scenes)")
    buffer = io.BytesIO()
    chart.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def log_live(target: TrackingTarget, figures: VersionFigures) -> str | None:
    """Log a version's live figures and their plot on its registering run; its id, or ``None`` when the version
    is not registered (nothing is logged then).

    The step is the version's game count, so each metric's history shows the figures as games accumulate.
    """
    run_id = registered_run(target, figures.version)
    if run_id is None:
        return None
    client = MlflowClient()
    stamp = int(time.time() * 1000)
    metrics = [Metric(key, value, stamp, figures.total.games) for key, value in figures.flat_metrics().items()]
    try:
        for start in range(0, len(metrics), 500):  # log_batch takes at most 1000 entries
            client.log_batch(run_id, metrics=metrics[start:start + 500])
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / Path(PLOT_ARTIFACT).name
            write_bytes_atomic(local, plot_png(figures))
            client.log_artifact(run_id, str(local), artifact_path=str(Path(PLOT_ARTIFACT).parent))
    except MlflowException as exc:
        raise TrackingError(f"cannot log the live figures of {figures.version} on run {run_id}: "
                            f"{exc.message}") from exc
    return run_id
