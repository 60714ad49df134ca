"""Write an evaluation's results as JSON (for machines), Markdown (for people) and a PNG chart.

``write_report`` takes one dict::

    {"config": {...}, "dataset": {...},
     "metrics": {mode: {"ndcg@10": ..., "recall@10": ..., ...}},
     "per_query": {mode: {qid: {...}}}, "timings": {...},
     "references": {system: {"ndcg@10": ..., "source": "..."}}}

and adds ``"versions"`` (Python and the libraries that shape the numbers).
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import logging
import math
import os
import platform
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.errors import InvalidInput

log = logging.getLogger(__name__)

# The BEIR headline measure first, then what a reader of answers cares about
# (MRR: how high the first hit is), then recall at growing depth.
REPORT_COLUMNS: tuple[str, ...] = (
    "ndcg@10",
    "mrr@10",
    "recall@1",
    "recall@5",
    "recall@10",
    "recall@100",
    "map@100",
)
CHART_METRICS: tuple[str, ...] = ("ndcg@10", "recall@10")
_SECTION_ORDER = (
    "config",
    "dataset",
    "metrics",
    "per_query",
    "timings",
    "versions",
    "references",
)
_TITLES = {"ndcg": "nDCG", "mrr": "MRR", "recall": "Recall", "map": "MAP", "hit": "Hit"}
# Distribution names to report, under the key the report uses. faiss ships as
# faiss-cpu or faiss-gpu wheels, so the first one installed wins.
_VERSION_DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "torch": ("torch",),
    "faiss": ("faiss-cpu", "faiss-gpu", "faiss"),
    "sentence-transformers": ("sentence-transformers",),
    "transformers": ("transformers",),
    "rag": ("rag-kb",),
}
_MISSING = "–"


@dataclass(frozen=True)
class ReportPaths:
    """Where ``write_report`` put its three files."""

    json: Path
    markdown: Path
    chart: Path


def column_title(name: str) -> str:
    """Human title of a metric key: ``"ndcg@10"`` -> ``"nDCG@10"``; other names unchanged."""
    base, sep, cut = name.partition("@")
    return f"{_TITLES.get(base, base)}{sep}{cut}" if sep else _TITLES.get(name, name)


def collect_versions() -> dict[str, str | None]:
    """Versions of Python and of the installed libraries (None when not installed).

    Reads package metadata only, so it imports none of the heavy libraries.
    """
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for key, distributions in _VERSION_DISTRIBUTIONS.items():
        versions[key] = None
        for dist in distributions:
            try:
                versions[key] = importlib.metadata.version(dist)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    return versions


def _escape_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _format_cell(value: Any, digits: int) -> str:
    if value is None:
        return _MISSING
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return _MISSING if math.isnan(value) else f"{value:.{digits}f}"
    if isinstance(value, int):
        return str(value)
    return _escape_cell(str(value))


def markdown_table(
    metrics_by_mode: Mapping[str, Mapping[str, Any]],
    columns: Sequence[str] = REPORT_COLUMNS,
    *,
    row_label: str = "mode",
    digits: int = 4,
) -> str:
    """A Markdown table with one row per mode and one column per metric.

    Args:
        metrics_by_mode: Row name -> column key -> value (floats get ``digits``
            decimals; strings are shown as they are; a missing value shows "–").
        columns: Column keys in order; titles come from ``column_title``.
        row_label: Header of the first column.
        digits: Decimals for floats.

    Returns:
        The table, lines joined by newlines, with a trailing newline.
    """
    header = [row_label, *(column_title(c) for c in columns)]
    aligns = ["---"]
    for column in columns:
        values = [row.get(column) for row in metrics_by_mode.values()]
        numeric = all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in values if v is not None
        )
        aligns.append("---:" if numeric else "---")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(aligns) + "|"]
    for mode, row in metrics_by_mode.items():
        cells = [_escape_cell(str(mode)), *(_format_cell(row.get(c), digits) for c in columns)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _json_safe(value: Any) -> Any:
    """Make ``value`` strict JSON: NaN/inf become null, paths and other objects strings."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_safe(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str | int | bool):
        return value
    return str(value)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write via a temp file and rename, so a crash never leaves half a report."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _reference_columns(
    references: Mapping[str, Mapping[str, Any]], columns: Sequence[str] = REPORT_COLUMNS
) -> list[str]:
    keys = {k for ref in references.values() for k in ref if k != "source"}
    ordered = [c for c in columns if c in keys]
    ordered += sorted(keys - set(ordered))
    if any("source" in ref for ref in references.values()):
        ordered.append("source")
    return ordered


def render_markdown(
    payload: Mapping[str, Any],
    *,
    title: str = "Retrieval evaluation",
    columns: Sequence[str] = REPORT_COLUMNS,
) -> str:
    """The human-readable report: metrics table, references, timings, versions, config.

    ``title`` and ``columns`` let other evaluations (answers) share the layout.
    """
    dataset = payload.get("dataset") or {}
    title = f"# {title}"
    if dataset.get("name"):
        title += f": {dataset['name']}"
        if dataset.get("split"):
            title += f" ({dataset['split']})"
    parts = [title, ""]
    counts = [
        f"{dataset[key]:,} {label}"
        for key, label in (
            ("num_queries", "queries"),
            ("num_docs", "documents"),
            ("num_judgments", "judgments"),
        )
        if isinstance(dataset.get(key), int)
    ]
    if counts:
        parts += [", ".join(counts) + ".", ""]
    parts += [
        markdown_table(payload["metrics"], columns, row_label=payload.get("row_label", "mode")),
        "",
    ]
    references = payload.get("references") or {}
    if references:
        parts += [
            "## Published references",
            "",
            markdown_table(references, _reference_columns(references, columns), row_label="system"),
            "",
        ]
    timings = _flatten(payload.get("timings") or {})
    if timings:
        rows = {name: {"seconds": value} for name, value in timings.items()}
        parts += ["## Timings", "", markdown_table(rows, ["seconds"], row_label="step", digits=2)]
        parts.append("")
    versions = payload.get("versions") or {}
    if versions:
        listed = ", ".join(
            f"{name} {version if version is not None else 'not installed'}"
            for name, version in versions.items()
        )
        parts += ["## Versions", "", listed, ""]
    config = payload.get("config") or {}
    if config:
        parts += ["## Configuration", "", "```json", json.dumps(config, indent=2), "```", ""]
    return "\n".join(part.rstrip("\n") for part in parts) + "\n"


def draw_chart(
    path: Path,
    metrics_by_mode: Mapping[str, Mapping[str, Any]],
    references: Mapping[str, Mapping[str, Any]] | None = None,
    metrics: Sequence[str] = CHART_METRICS,
    *,
    row_label: str = "mode",
) -> None:
    """Bar chart of ``metrics`` per mode, with a dashed line per published reference value.

    Uses matplotlib's Agg canvas directly (no pyplot), so it needs no display and
    changes no global backend.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    modes = list(metrics_by_mode)
    width = 0.8 / len(metrics)
    colors = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")
    line_styles = ("--", ":", "-.")
    figure = Figure(figsize=(max(6.0, 1.3 * len(modes) + 3.0), 4.8))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for i, metric in enumerate(metrics):
        color = colors[i % len(colors)]
        heights = []
        for mode in modes:
            value = metrics_by_mode[mode].get(metric)
            heights.append(float(value) if isinstance(value, int | float) else math.nan)
        xs = [m + (i - (len(metrics) - 1) / 2) * width for m in range(len(modes))]
        bars = axes.bar(xs, heights, width, label=column_title(metric), color=color)
        axes.bar_label(bars, fmt="%.3f", fontsize=7, padding=2)
        for j, (name, ref) in enumerate((references or {}).items()):
            value = ref.get(metric)
            if isinstance(value, int | float) and not isinstance(value, bool):
                axes.axhline(
                    float(value),
                    color=color,
                    linestyle=line_styles[j % len(line_styles)],
                    linewidth=1,
                    label=f"{name} {column_title(metric)} {float(value):.3f}",
                )
    axes.set_xticks(range(len(modes)), modes, rotation=20 if len(modes) > 4 else 0)
    axes.set_ylim(0, 1.05)
    axes.set_ylabel("score")
    axes.set_title(" and ".join(column_title(m) for m in metrics) + f" per {row_label}")
    axes.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    _write_atomic(path, buffer.getvalue())


def _check_results(results: Mapping[str, Any]) -> None:
    metrics = results.get("metrics")
    if not isinstance(metrics, Mapping) or not metrics:
        raise InvalidInput("results['metrics'] must map each mode to its metrics, got none")
    for mode, row in metrics.items():
        if not isinstance(row, Mapping):
            raise InvalidInput(f"results['metrics'][{mode!r}] must be a mapping of metric values")
    references = results.get("references") or {}
    if not isinstance(references, Mapping) or not all(
        isinstance(ref, Mapping) for ref in references.values()
    ):
        raise InvalidInput(
            "results['references'] must map a system name to {metric: value, 'source': text}"
        )


def write_report(
    out_dir: Path,
    results: Mapping[str, Any],
    *,
    title: str = "Retrieval evaluation",
    columns: Sequence[str] = REPORT_COLUMNS,
    chart_metrics: Sequence[str] = CHART_METRICS,
) -> ReportPaths:
    """Write ``results.json``, ``results.md`` and ``chart.png`` into ``out_dir`` (made if absent).

    ``title``, ``columns`` (of the Markdown table) and ``chart_metrics`` default
    to the retrieval report's; a ``row_label`` key in ``results`` names the rows
    (default "mode").

    ``versions`` is filled from the installed packages; values given in
    ``results["versions"]`` win. Unknown top-level keys are kept in the JSON.

    Returns:
        The three paths.

    Raises:
        InvalidInput: ``results`` has no metrics, or references are not mappings.
    """
    _check_results(results)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {key: results.get(key) or {} for key in _SECTION_ORDER}
    payload["versions"] = {**collect_versions(), **(results.get("versions") or {})}
    payload.update({k: v for k, v in results.items() if k not in _SECTION_ORDER})
    payload = _json_safe(payload)

    paths = ReportPaths(
        json=out_dir / "results.json",
        markdown=out_dir / "results.md",
        chart=out_dir / "chart.png",
    )
    text = json.dumps(payload, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    _write_atomic(paths.json, text.encode("utf-8"))
    markdown = render_markdown(payload, title=title, columns=columns)
    _write_atomic(paths.markdown, markdown.encode("utf-8"))
    row_label = str(payload.get("row_label", "mode"))
    draw_chart(
        paths.chart,
        payload["metrics"],
        payload["references"],
        chart_metrics,
        row_label=row_label,
    )
    log.info("wrote report dir=%s modes=%d", out_dir, len(payload["metrics"]))
    return paths
