"""`progress.png`: the measured figure of every evaluated candidate, kept ones labelled, running best
as a step line; for every domain (val score, higher is better; val_bpb, lower is better).

People read an overnight run from this picture first: where the gains came from, how many tries
failed, and whether the best kept improving or plateaued early. The caller draws it (the CLI after
the run, the report from the ledger); the loop only reports.
"""

from __future__ import annotations

from pathlib import Path

from harness_opt.home import home_dir
from harness_opt.search.records import OptimizeResult


def plot_path(run_id: str) -> Path:
    """Where a run's plot goes by default: `<home>/runs/<run id>/progress.png`."""
    return home_dir() / "runs" / run_id / "progress.png"


def plot_progress(result: OptimizeResult, path: Path | None = None) -> Path:
    """Draw the plot of `result` to `path` (default `plot_path(result.run_id)`) and return the path."""
    path = path or plot_path(result.run_id)
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on servers or in CI
    import matplotlib.pyplot as plt

    evaluated = [c for c in result.candidates if c.val_score is not None]
    xs = list(range(len(evaluated)))
    fig, ax = plt.subplots(figsize=(10, 5.5), dpi=120)
    rejected = [
        (x, c.val_score or 0.0) for x, c in zip(xs, evaluated, strict=True) if c.outcome == "rejected"
    ]
    kept = [(x, c) for x, c in zip(xs, evaluated, strict=True) if c.outcome in ("accepted", "baseline")]
    if rejected:
        ax.scatter(
            [x for x, _ in rejected],
            [y for _, y in rejected],
            color="#9aa5b1",
            s=28,
            label="rejected",
            zorder=2,
        )
    ax.scatter(
        [x for x, _ in kept],
        [c.val_score or 0.0 for _, c in kept],
        color="#d64545",
        s=60,
        label="kept",
        zorder=3,
        edgecolor="black",
        linewidth=0.6,
    )
    for n, (x, c) in enumerate(kept):
        text = "baseline" if c.outcome == "baseline" else f"{c.label.split('@')[-1]}: {c.mechanism}"
        ax.annotate(
            text,
            (x, c.val_score or 0.0),
            textcoords="offset points",
            xytext=(0, 12 if n % 2 == 0 else -18),
            ha="center",
            fontsize=8,
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "#d64545", "alpha": 0.85},
        )
    better = max if result.direction == "max" else min
    best: list[float] = []
    current: float | None = None
    for c in evaluated:
        if c.outcome in ("accepted", "baseline"):
            value = c.val_score or 0.0
            current = value if current is None else better(current, value)
        best.append(current if current is not None else float("nan"))
    if xs:
        ax.step(xs, best, where="post", color="#d64545", linewidth=1.5, alpha=0.8, label="running best")
    invalid = sum(1 for c in result.candidates if c.outcome == "invalid")
    scores = [c.val_score or 0.0 for c in evaluated] or [0.0]
    pad = max(0.04, 0.1 * (max(scores) - min(scores)))
    ax.set_ylim(min(scores) - 2 * pad, max(scores) + 3 * pad)
    ax.margins(x=0.12)
    ax.set_xlabel("evaluated candidate (in order)")
    direction = "higher" if result.direction == "max" else "lower"
    ax.set_ylabel(f"{result.metric} ({direction} is better)")
    test = ""
    if result.baseline_test and result.best_test:
        test = f" · test {result.baseline_test.score:.3f} → {result.best_test.score:.3f}"
    change = f"{result.baseline_val.score:.3f} → {result.best_val.score:.3f}"
    ax.set_title(f"{result.run_id}: {result.metric} {change}{test} · {invalid} invalid", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
