"""Reports from ``runs.csv``: mean ± std over seeds per cell, ``summary.md`` and the accuracy plots."""

from __future__ import annotations

import os
import statistics
import sys
from collections import Counter
from pathlib import Path

from video_gn.sweep.results import backfill_train_top1, read_rows


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


def aggregate(rows: list[dict]) -> list[dict]:
    """Group ``ok`` rows by configuration (``config``: base configs, overrides, clips, devices and the cell;
    rows written before that column by (norm, batch, frames, sampling rate, clips, devices)): mean and std over
    seeds. Two configurations of the same cell (other overrides into the same ``--out``) stay two rows, their
    experiment labelled with the configuration id.

    The latest row of a run id wins (a re-run replaces an earlier one).

    Args:
        rows: rows of ``runs.csv``.

    Returns:
        One dict per cell with ``n``, ``<metric>_mean`` and ``<metric>_std`` (metrics in percent), ``wall_s``
        and ``peak_rss_mib`` means.
    """
    latest = {r["run_id"]: r for r in rows if r.get("status") == "ok"}
    groups: dict[tuple, list[dict]] = {}
    for r in latest.values():
        key = (
            r["norm"],
            int(r["batch"]),
            int(r["frames"]),
            r.get("sampling_rate", ""),
            r.get("clips", ""),
            r.get("devices", ""),
            r.get("config", ""),
        )
        groups.setdefault(key, []).append(r)
    configs_per_cell = Counter(key[:-1] for key in groups)
    out = []
    for (norm, batch, frames, rate, clips, devices, config), rs in groups.items():
        experiment = rs[0].get("experiment", "")
        if configs_per_cell[(norm, batch, frames, rate, clips, devices)] > 1:
            experiment = f"{experiment} [config {config or 'unrecorded'}]"
        g = {"norm": norm, "batch": batch, "frames": frames, "sampling_rate": rate, "n": len(rs),
             "clips": clips, "devices": devices, "config": config, "setup": rs[0].get("setup", ""),
             "experiment": experiment, "seeds": sorted(int(r["seed"]) for r in rs)}  # fmt: skip
        for m in ("clip_top1", "clip_top5", "video_top1", "video_top5"):
            g[f"{m}_mean"], g[f"{m}_std"] = _mean_std([100 * float(r[m]) for r in rs])
        train = [100 * float(r["train_top1"]) for r in rs if r.get("train_top1") not in (None, "")]
        g["train_top1_mean"], g["train_top1_std"] = (
            _mean_std(train) if len(train) == len(rs) else (None, None)
        )
        g["wall_s"] = statistics.fmean(float(r["wall_s"]) for r in rs)
        g["peak_rss_mib"] = statistics.fmean(float(r["peak_rss_mib"]) for r in rs)
        gpu = [float(r["peak_gpu_mib"]) for r in rs if r.get("peak_gpu_mib") not in (None, "")]
        g["peak_gpu_mib"] = statistics.fmean(gpu) if gpu else None
        out.append(g)
    order = {n: i for i, n in enumerate(("bn", "syncbn", "frozen_bn", "gn", "gn+ws", "bn+ws"))}
    out.sort(key=lambda g: (order.get(g["norm"], 99), g["norm"], -g["batch"], g["frames"], str(g["clips"])))
    return out


def markdown_table(groups: list[dict]) -> str:
    """A markdown table, one line per cell: mean ± std over seeds (percent), time and memory.

    "train top-1" is the training accuracy of each run's last finished epoch (train mode, augmented clips):
    with the validation accuracy it tells under-fitting from over-fitting.
    """
    # Rows trained on different budgets (clips seen), device counts or set-ups (base configs and overrides:
    # another grid run into the same --out) are separate cells; show those columns only when a folder mixes them.
    extra = [k for k in ("clips", "devices", "setup") if len({str(g.get(k, "")) for g in groups}) > 1]
    gpu = any(g.get("peak_gpu_mib") is not None for g in groups)  # GPU runs: the CUDA allocator's peak too
    lines = [
        "| norm | batch | frames | rate | "
        + "".join(f"{k} | " for k in extra)
        + "seeds | video top-1 | video top-5 | clip top-1 | clip top-5 | train top-1 | time/run (s) | "
        "peak RSS (MiB) |" + (" peak GPU (MiB) |" if gpu else ""),
        "|---|--:|--:|--:|"
        + "--:|" * len(extra)
        + "--:|--:|--:|--:|--:|--:|--:|--:|"
        + ("--:|" if gpu else ""),
    ]
    for g in groups:
        cells = [
            f"{g[m + '_mean']:.1f} ± {g[m + '_std']:.1f}" if g.get(m + "_mean") is not None else "-"
            for m in ("video_top1", "video_top5", "clip_top1", "clip_top5", "train_top1")
        ]
        lines.append(
            f"| {g['norm']} | {g['batch']} | {g['frames']} | {g['sampling_rate'] or '-'} | "
            + "".join(f"{g.get(k, '')} | " for k in extra)
            + f"{g['n']} | "
            + " | ".join(cells)
            + f" | {g['wall_s']:.0f} | {g['peak_rss_mib']:.0f} |"
            + (f" {_number(g['peak_gpu_mib'])} |" if gpu else "")
        )
    return "\n".join(lines) + "\n"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _most_common(values: list) -> object:
    return max(set(values), key=lambda v: (values.count(v), v)) if values else None


def plot_groups(groups: list[dict], out: str | os.PathLike, metric: str = "video_top1") -> list[Path]:
    """Write ``acc_vs_batch.png`` (at the most common clip length) and ``acc_vs_frames.png`` (at the most common
    B×T product with several clip lengths), one line per norm with ± std error bars (per norm and set-up when
    the results mix set-ups: other base configs, overrides, clips or devices).

    Args:
        groups: output of :func:`aggregate`.
        out: folder for the PNGs.
        metric: which accuracy to plot.

    Returns:
        The PNG paths written (a plot with fewer than two x values is skipped).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            "Plots need matplotlib: pip install 'video_gn[plot]' (or pass --no-plots)."
        ) from None
    out = Path(out)
    written = []

    # One line per norm and set-up (rows written before the setup column: per clips and devices).
    def series(g: dict) -> tuple:
        return (g["norm"], g.get("setup") or "", str(g.get("clips", "")), str(g.get("devices", "")))

    lines = list(dict.fromkeys(series(g) for g in groups))
    label = metric.replace("_", " ").replace("top1", "top-1").replace("top5", "top-5")

    def draw(
        selected: list[dict], x_key: str, name: str, xlabel: str, title: str, annotate: str | None
    ) -> None:
        if len({g[x_key] for g in selected}) < 2:
            return
        fig, ax = plt.subplots(figsize=(6, 4))
        mixed = len({key[1:] for key in map(series, selected)}) > 1
        for key in lines:
            pts = sorted(
                (
                    (g[x_key], g[f"{metric}_mean"], g[f"{metric}_std"], g)
                    for g in selected
                    if series(g) == key
                ),
                key=lambda p: p[0],
            )
            if not pts:
                continue
            xs, ys, es, gs = zip(*pts)
            legend = key[0]
            if mixed:
                legend += f" [setup {key[1]}]" if key[1] else f" [clips {key[2]}, devices {key[3]}]"
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=legend)
            if annotate:
                for x, y, g in zip(xs, ys, gs):
                    ax.annotate(
                        f"{annotate}={g[annotate]}",
                        (x, y),
                        textcoords="offset points",
                        xytext=(4, 4),
                        fontsize=7,
                    )
        ax.set_xscale("log", base=2)
        xs_all = sorted({g[x_key] for g in selected})
        ax.set_xticks(xs_all, [str(x) for x in xs_all])
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"val {label} (%)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = out / name
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)

    # Accuracy vs batch: cells at the clip length shared by the most batch sizes.
    by_t = {t: {g["batch"] for g in groups if g["frames"] == t} for t in {g["frames"] for g in groups}}
    if by_t:
        t_best = max(by_t, key=lambda t: (len(by_t[t]), -t))
        sel = [g for g in groups if g["frames"] == t_best]
        draw(
            sel,
            "batch",
            "acc_vs_batch.png",
            "per-device batch (clips)",
            f"accuracy vs batch, T={t_best}",
            None,
        )
    # Accuracy vs frames: cells at the B×T product shared by the most clip lengths.
    by_bt: dict[int, set] = {}
    for g in groups:
        by_bt.setdefault(g["batch"] * g["frames"], set()).add(g["frames"])
    if by_bt:
        bt_best = max(by_bt, key=lambda p: (len(by_bt[p]), p))
        sel = [g for g in groups if g["batch"] * g["frames"] == bt_best]
        draw(
            sel,
            "frames",
            "acc_vs_frames.png",
            "frames per clip (T)",
            f"accuracy vs clip length, B×T={bt_best}",
            "batch",
        )
    return written


def write_reports(csv_path: str | os.PathLike, out: str | os.PathLike, *, plots: bool = True) -> str:
    """Write ``summary.md`` (and the PNGs) into ``out`` from a results CSV; return the markdown table.

    Args:
        csv_path: ``runs.csv`` of a sweep.
        out: output folder.
        plots: also write the PNG plots (needs matplotlib).

    Returns:
        The markdown table.
    """
    backfill_train_top1(Path(csv_path))
    rows = read_rows(csv_path)
    groups = aggregate(rows)
    table = markdown_table(groups)
    failed = [r for r in rows if r.get("status") != "ok"]
    text = table
    if failed:
        ids = {r["run_id"] for r in rows if r.get("status") == "ok"}
        pending = {r["run_id"]: r["status"] for r in failed if r["run_id"] not in ids}  # latest status wins
        if pending:
            listed = ", ".join(f"{rid} {status}" for rid, status in sorted(pending.items()))
            text += f"\nFailed runs (see runs/<id>/fit.log): {listed}\n"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text(text)
    if plots and groups and not plot_groups(groups, out):
        print(
            "sweep: no plots written: accuracy vs batch needs two batch sizes at one clip length, and accuracy "
            "vs frames two clip lengths at one B×T; this grid has neither.",
            file=sys.stderr,
        )
    return text
