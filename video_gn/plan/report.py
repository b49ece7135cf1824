"""A :class:`~video_gn.plan.extrapolate.Plan` as text: rich table (T rows x B columns), CSV and a PNG plot."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict

from video_gn.plan.extrapolate import Plan, PlanCell
from video_gn.plan.units import format_bytes

_SOURCE_MARK = {
    "measured": "",
    "extrapolated-B": "*",
    "extrapolated-T": "**",
    "extrapolated-T-unverified": "?",
    "oom": "",
    "unknown": "",
}


def _cell_text(cell: PlanCell) -> str:
    if cell.source == "oom":
        return "OOM"
    text = (
        "unknown" if cell.total_bytes is None else format_bytes(cell.total_bytes) + _SOURCE_MARK[cell.source]
    )
    if cell.step_time_s is not None:
        text += f" · {'~' if cell.step_time_estimated else ''}{cell.step_time_s:.2f}s"
    return text


def _largest_text(size: int | None) -> str:
    return "?" if size is None else ("none" if size == 0 else str(size))


def render_table(plan: Plan) -> str:
    """The plan as a rich table (T rows × B columns) with budget marks, summaries and notes, as text."""
    from rich.console import Console
    from rich.table import Table

    title = (
        f"{plan.model} width {plan.width}, norm {plan.norm}{' + WS' if plan.ws else ''}, crop {plan.crop}, "
        f"{plan.precision}, {plan.optimizer}, {plan.device}"
    )
    table = Table(title=title, caption="peak training memory per device · median step time")
    table.add_column("T \\ B", justify="right", style="bold")
    for b in plan.batches:
        table.add_column(f"B={b}", justify="right")
    if plan.budget_bytes is not None:
        table.add_column("largest B", justify="right")
        table.add_column("max B (linear)", justify="right")
    for t in plan.frames:
        row = [f"T={t}"]
        for b in plan.batches:
            cell = plan.cell(t, b)
            style = "" if cell.fits is None else ("green" if cell.fits else "red")
            mark = "" if cell.fits is None else (" ✓" if cell.fits else " ✗")
            text = _cell_text(cell) + mark
            row.append(f"[{style}]{text}[/{style}]" if style else text)
        if plan.budget_bytes is not None:
            lb = plan.largest_batch(t)
            mb = plan.max_batch_linear(t)
            row += [_largest_text(lb), "-" if mb is None else str(mb)]
        table.add_row(*row)
    if plan.budget_bytes is not None:
        row = ["largest T"] + [_largest_text(plan.largest_frames(b)) for b in plan.batches] + ["", ""]
        table.add_row(*row, style="italic")
    buf = io.StringIO()
    console = Console(file=buf, width=max(100, 24 + 32 * len(plan.batches)), force_terminal=False)
    console.print(table)
    console.print(
        f"static (T, B independent): params {format_bytes(plan.param_bytes)} + buffers "
        f"{format_bytes(plan.buffer_bytes)} + grads {format_bytes(plan.grad_bytes)} + {plan.optimizer} state "
        f"{format_bytes(plan.optimizer_bytes)} = {format_bytes(plan.static_bytes)}"
        + (f"; budget {format_bytes(plan.budget_bytes)}" if plan.budget_bytes else "")
    )
    console.print(
        "no mark = measured; * = extrapolated in B (exact: saved tensors are affine in B); "
        "** = extrapolated in T (line checked exactly on a third T); ? = extrapolated in T, unchecked; "
        "~ = estimated step time; unknown = not exactly predictable (see the notes); largest B/T ? = decided by "
        "an unknown cell."
    )
    for note in plan.notes:
        console.print(f"note: {note}")
    return buf.getvalue()


CSV_FIELDS = [
    "frames", "batch", "total_bytes", "activation_bytes", "input_bytes", "static_bytes", "step_time_s",
    "step_time_estimated", "source", "fits",
]  # fmt: skip


def to_csv(plan: Plan) -> str:
    """One row per cell: frames, batch, bytes, step time, source, fits."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for c in plan.cells:
        row = asdict(c)
        row["static_bytes"] = plan.static_bytes
        writer.writerow({k: "" if row[k] is None else row[k] for k in CSV_FIELDS})
    return buf.getvalue()


def plot(plan: Plan, path: str) -> None:
    """Save a PNG of predicted memory vs T, one line per B (extrapolated points hollow), budget dashed.

    Args:
        plan: the plan.
        path: output PNG path.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("--plot needs matplotlib: pip install 'video_gn[plot]'") from None
    fig, ax = plt.subplots(figsize=(6, 4))
    for b in plan.batches:
        cells = [c for c in plan.cells if c.batch == b and c.total_bytes]
        if not cells:
            continue
        (line,) = ax.plot([c.frames for c in cells], [c.total_bytes / 1024**3 for c in cells], label=f"B={b}")
        for measured in (True, False):  # measured points filled, extrapolated ones hollow
            pts = [(c.frames, c.total_bytes / 1024**3) for c in cells if (c.source == "measured") == measured]
            if pts:
                ax.plot(
                    *zip(*pts), "o", color=line.get_color(), markerfacecolor=None if measured else "white"
                )
    if plan.budget_bytes:
        ax.axhline(plan.budget_bytes / 1024**3, color="k", linestyle="--", label="budget")
    ax.set_xscale("log", base=2)
    ax.set_xticks(plan.frames, [str(t) for t in plan.frames])
    ax.set_xlabel("frames per clip (T)")
    ax.set_ylabel("peak training memory (GiB)")
    ax.set_title(
        f"{plan.model} w{plan.width} {plan.norm}{'+WS' if plan.ws else ''} crop {plan.crop} "
        "(hollow: extrapolated)"
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
