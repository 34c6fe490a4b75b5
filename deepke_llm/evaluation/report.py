"""Human-readable score tables (terminal and Markdown), benchmark reports and the per-type chart.

Scores are fractions everywhere in data; tables show percentages with two decimals.
"""

from __future__ import annotations

import json
import random
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deepke_llm.tasks import get_task

from .scoring import MismatchSample, TaskScore
from .spans import Offsets, Ungrounded

__all__ = ["markdown_table", "type_column", "overall_rows", "per_type_rows", "render_item", "text_table",
           "write_chart", "write_json", "write_markdown"]


def pct(value: float) -> str:
    return f"{value * 100:.2f}"


def _label(mode: str, level: str | None) -> str:
    return mode if level is None else f"{mode} {level.replace('_', ' ')}"


def overall_rows(score: TaskScore, intervals: dict | None = None,
                 variance: dict | None = None) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the overall table: one row per mode (and EE level)."""
    headers = ["mode", "P", "R", "F1", "TP", "FP", "FN"]
    if intervals:
        headers.insert(4, "F1 95% CI")
    if variance:
        headers.insert(4, f"F1 mean ± std ({variance['runs']} orders)")
    rows = []
    for mode, scores in score.modes.items():
        for level, level_score in scores.items():
            c = level_score.overall
            row = [_label(mode, level), pct(c.precision), pct(c.recall), pct(c.f1),
                   str(c.tp), str(c.fp), str(c.fn)]
            if intervals:
                ci = _at(intervals, mode, level)
                row.insert(4, f"{pct(ci['low'])}–{pct(ci['high'])}" if ci else "-")
            if variance:
                stats = _at(variance["scores"], mode, level)
                row.insert(4, f"{pct(stats['f1']['mean'])} ± {pct(stats['f1']['std'])}"
                           if stats else "-")
            rows.append(row)
    return headers, rows


def _at(table: dict, mode: str, level: str | None) -> Any:
    entry = table.get(mode)
    return entry.get(level) if level is not None and entry is not None else entry


def type_column(task: str, level: str | None) -> str:
    """What the per-type key is: the role for EE argument classification, else the type."""
    columns = get_task(task).type_columns
    return columns.get(level, columns[None])


def per_type_rows(score: TaskScore, mode: str) -> list[tuple[str | None, list[str], list[list[str]]]]:
    """Per level of ``mode``: (level, header, rows) of the per-type table (types sorted)."""
    out = []
    for level, level_score in score.modes[mode].items():
        if level_score.type_index is None:
            continue
        rows = [[name, pct(c.precision), pct(c.recall), pct(c.f1), str(c.tp + c.fn),
                 str(c.tp + c.fp)] for name, c in sorted(level_score.per_type.items())]
        out.append((level, [type_column(score.task, level), "P", "R", "F1", "gold", "predicted"],
                    rows))
    return out


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns aligned with spaces (first column left, the rest right)."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    lines = []
    for row in [headers, *rows]:
        cells = [str(c).ljust(widths[0]) if i == 0 else str(c).rjust(widths[i])
                 for i, c in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _md_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ⏎ ")


def _numeric(value: Any) -> bool:
    return bool(re.fullmatch(r"[-+]?[\d.,]+(?:[–±\s]+[\d.,]+)*|-", str(value).strip()))


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table; columns whose cells are all numbers are right-aligned."""
    right = [bool(rows) and all(_numeric(row[i]) for row in rows) for i in range(len(headers))]
    lines = ["| " + " | ".join(_md_cell(h) for h in headers) + " |",
             "|" + "|".join("---:" if r else "---" for r in right) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_item(item: tuple, text: str) -> str:
    """A scoring tuple for people: spans shown as their text with offsets."""
    parts = []
    for part in item:
        if isinstance(part, Offsets):
            parts.append(f'"{text[part.start:part.end]}" [{part.start}:{part.end}]')
        elif isinstance(part, Ungrounded):
            parts.append(f'"{part.text}" (no offsets)')
        else:
            parts.append(f'"{part}"' if isinstance(part, str) else str(part))
    return " · ".join(parts)


def _snippet(item: tuple, text: str, width: int = 50) -> str:
    spans = [p for p in item if isinstance(p, Offsets)]
    if not spans:
        return text[:2 * width] + ("…" if len(text) > 2 * width else "")
    start = max(0, min(s.start for s in spans) - width)
    end = min(len(text), max(s.end for s in spans) + width)
    return ("…" if start else "") + text[start:end] + ("…" if end < len(text) else "")


def sample_errors(samples: list[MismatchSample], count: int = 20, seed: int = 0
                  ) -> list[MismatchSample]:
    """``count`` mismatches drawn evenly from missed and spurious ones (seeded, in doc order)."""
    documents: dict[str, int] = {}
    for sample in samples:
        documents.setdefault(sample.document.id, len(documents))

    def key(s: MismatchSample) -> tuple:
        # set order varies between processes; sorting makes the draw reproducible
        return documents[s.document.id], s.level or "", s.kind, repr(s.item)

    ordered = sorted(samples, key=key)
    rng = random.Random(seed)
    missed = [s for s in ordered if s.kind == "missed"]
    spurious = [s for s in ordered if s.kind == "spurious"]
    half = min(len(missed), max(count // 2, count - len(spurious)))
    chosen = rng.sample(missed, half) + rng.sample(spurious, min(len(spurious), count - half))
    return sorted(chosen, key=key)


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file + rename)."""
    from deepke_llm.io import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def write_markdown(path: Path, summary: dict[str, Any], score: TaskScore,
                   primary_mode: str, errors: list[MismatchSample], total_errors: int,
                   redact: bool = False) -> None:
    """The benchmark report: overall table, per-type table(s), warnings and sample errors.

    ``redact`` leaves dataset text out of the sample errors (licensed data: reports get
    committed, the data must not be)."""
    s = summary
    lines = [f"# {s['benchmark']} — {s['model']} ({s['date']})", "",
             f"Task `{s['task']}`, split `{s['split']}`, {s['documents']} documents from "
             f"`{s['data']['file']}` (sha256 `{s['data']['sha256'][:12]}…`); schema "
             f"`{s['settings']['schema']}`, prompt style "
             f"`{s['settings']['prompt_style']}`; deepke-llm {s['deepke_llm_version']}. "
             "Scores are micro P/R/F1 in percent.", "", "## Overall", ""]
    headers, rows = overall_rows(score, s.get("confidence_intervals"), s.get("prompt_variance"))
    lines += [markdown_table(headers, rows), ""]
    if s.get("confidence_intervals"):
        boot = next(iter(_flatten(s["confidence_intervals"])))
        lines += [f"95% CI: bootstrap over documents, {boot['samples']} samples, seed "
                  f"{boot['seed']}.", ""]
    if s.get("prompt_variance"):
        lines += [f"Prompt variance: {s['prompt_variance']['runs']} runs with schema orders "
                  f"shuffled by seeds {s['prompt_variance']['seeds']}; the other columns are "
                  "the first run's.", ""]
    for level, header, type_rows in per_type_rows(score, primary_mode):
        lines += [f"## Per type ({_label(primary_mode, level)})", "",
                  markdown_table(header, type_rows) if type_rows else "(no records)", ""]
    extraction = s.get("extraction", {})
    if extraction:
        lines += ["## Run", "", markdown_table(["what", "value"],
                                               [[k, v] for k, v in extraction.items()]), ""]
    if s.get("warnings"):
        lines += ["## Warnings", ""]
        lines += [f"- {w['what']}: {w['count']} (e.g. {'; '.join(w['examples'][:2])})"
                  for w in s["warnings"]] + [""]
    lines += [f"## Sample errors ({primary_mode}, {len(errors)} of {total_errors})", ""]
    leveled = get_task(score.task).has_levels
    if redact:
        lines += ["Dataset text is left out: the data is licensed and not redistributable.", ""]
        rows = [[e.document.id, *([e.level.replace("_", " ")] if e.level else []), e.kind]
                for e in errors]
        headers = ["document", *(["level"] if leveled else []), "error"]
    else:
        rows = [[e.document.id, *([e.level.replace("_", " ")] if e.level else []), e.kind,
                 render_item(e.item, e.document.text), _snippet(e.item, e.document.text)]
                for e in errors]
        headers = ["document", *(["level"] if leveled else []), "error", "record", "context"]
    lines += [markdown_table(headers, rows) if rows else "No errors.", ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def _flatten(table: dict) -> list[dict]:
    out = []
    for value in table.values():
        out.extend([value] if "low" in value else _flatten(value))
    return out


def write_chart(path: Path, score: TaskScore, title: str) -> bool:
    """Bar chart of per-type F1, one bar per scoring mode; False when there is nothing to plot
    or no matplotlib (the light install: the numbers are all in the JSON and Markdown)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ModuleNotFoundError:
        import sys

        print("evaluate: no chart (pip install 'deepke-llm[eval]' for one)", file=sys.stderr)
        return False

    level = next(iter(get_task(score.task).headline_levels.values()))
    series = {mode: scores[level].per_type for mode, scores in score.modes.items()
              if scores[level].type_index is not None and scores[level].per_type}
    types = sorted({t for per_type in series.values() for t in per_type})
    if not types:
        return False
    # Agg canvas without pyplot: no global backend switch, safe in threads and servers
    figure = Figure(figsize=(max(6.0, 0.6 * len(types) * max(1, len(series)) / 2 + 2), 4.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    width = 0.8 / len(series)
    for i, (mode, per_type) in enumerate(series.items()):
        values = [per_type[t].f1 * 100 if t in per_type else 0.0 for t in types]
        axes.bar([x + i * width - 0.4 + width / 2 for x in range(len(types))], values, width,
                 label=mode)
    axes.set_xticks(range(len(types)))
    axes.set_xticklabels(types, rotation=45 if len(types) > 6 else 0, ha="right"
                         if len(types) > 6 else "center", fontsize=8, fontfamily=_fonts())
    axes.set_ylabel("F1 (%)")
    axes.set_ylim(0, 100)
    axes.set_title(title + (" — trigger classification" if level else ""))
    axes.legend()
    with warnings.catch_warnings():
        # without a CJK font installed Chinese type names render as boxes; the table has them
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        figure.tight_layout()
        figure.savefig(path, dpi=100)
    return True


_CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Zen Hei",
              "WenQuanYi Micro Hei", "SimHei", "Microsoft YaHei", "PingFang SC", "Heiti SC")


def _fonts() -> list[str]:
    """DejaVu Sans, then any installed CJK font as a fallback for Chinese type names."""
    from matplotlib import font_manager

    installed = {font.name for font in font_manager.fontManager.ttflist}
    return ["DejaVu Sans", *(name for name in _CJK_FONTS if name in installed)]
