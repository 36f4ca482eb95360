"""The run's time budget, the targets of issue #16, and the JSON.

Every section of the run has a deadline, a fraction of the budget: past it, the section
skips what is left (and says what), so that the whole run ends inside one device call.
The JSON is written again after each section: a run cut short still leaves what it had.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Where each section must have ended, as fractions of the budget.
DEADLINES = {
    "bare": 0.36,
    "engine": 0.50,
    "agreement": 0.56,
    "rest": 0.84,
    "compile": 0.96,
    "cudnn_benchmark": 1.0,
}


@dataclass
class Budget:
    total_s: float
    started: float = field(default_factory=time.monotonic)

    def spent(self) -> float:
        return time.monotonic() - self.started

    def left(self, section: str) -> float:
        """Seconds until `section`'s deadline."""
        return DEADLINES[section] * self.total_s - self.spent()

    def past(self, section: str, need_s: float = 0.0) -> bool:
        """True when `section` has less than `need_s` seconds left."""
        return self.left(section) <= need_s


@dataclass(frozen=True)
class Target:
    name: str
    op: str  # ">=" or "<="
    value: float
    where: str  # which measured figure


TARGETS = (
    Target("resnet50_tf32_evals_per_s", ">=", 3000, "bare: best TF32 over batches and modes"),
    Target(
        "resnet50_bf16_or_fp16_evals_per_s",
        ">=",
        10000,
        "bare: best of bf16 and fp16 over batches and modes",
    ),
    Target("lime_1000_engine_s", "<=", 0.25, "engine: LIME's median seconds, chosen config"),
    Target("lime_1000_rest_p50_s", "<=", 0.5, "rest: p50 of sequential LIME requests"),
    Target("overhead_ratio", "<=", 1.2, "engine: LIME over the bare model, chosen config"),
    Target(
        "explanations_per_s_8_clients", ">=", 4, "rest: 8 concurrent clients, best of 1/2 workers"
    ),
    Target("spearman_reduced_vs_fp32", ">=", 0.99, "agreement: lowest over bf16/fp16 x methods"),
)


def dig(report: dict[str, Any], *keys: str) -> Any:
    """report[k1][k2]... or None where a level is missing (a section skipped or failed)."""
    value: Any = report
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _best_rate(report: dict[str, Any], precisions: tuple[str, ...]) -> float | None:
    rates = [dig(report, "bare", "best", p, "evals_per_s") for p in precisions]
    found = [r for r in rates if r is not None]
    return max(found) if found else None


def _rest_throughput(report: dict[str, Any]) -> float | None:
    rates = [
        dig(report, "rest", w, "clients_8", "explanations_per_s")
        for w in ("workers_1", "workers_2")
    ]
    found = [r for r in rates if r is not None]
    return max(found) if found else None


def _lowest_spearman(report: dict[str, Any]) -> float | None:
    values = [
        v
        for p in ("bf16", "fp16")
        for v in (dig(report, "agreement", "spearman", p) or {}).values()
        if isinstance(v, float)
    ]
    return min(values) if values else None


MEASURED: dict[str, Callable[[dict[str, Any]], float | None]] = {
    "resnet50_tf32_evals_per_s": lambda r: _best_rate(r, ("tf32",)),
    "resnet50_bf16_or_fp16_evals_per_s": lambda r: _best_rate(r, ("bf16", "fp16")),
    "lime_1000_engine_s": lambda r: dig(r, "engine", "chosen", "lime", "seconds"),
    "lime_1000_rest_p50_s": lambda r: dig(r, "rest", "workers_1", "clients_1", "p50_s"),
    "overhead_ratio": lambda r: dig(r, "engine", "chosen", "lime", "overhead_ratio"),
    "explanations_per_s_8_clients": _rest_throughput,
    "spearman_reduced_vs_fp32": _lowest_spearman,
}


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with the figure measured for it and whether it is met (None: not measured
    in this run, e.g. TF32 on the CPU)."""
    rows = []
    for t in TARGETS:
        measured = MEASURED[t.name](report)
        met = None
        if measured is not None:
            met = measured >= t.value if t.op == ">=" else measured <= t.value
        rows.append(
            {
                "name": t.name,
                "target": f"{t.op} {t.value:g}",
                "measured": measured,
                "met": met,
                "where": t.where,
            }
        )
    return rows


def finite(value: Any) -> Any:
    """`value` with every float that is not finite replaced by None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def write(report: dict[str, Any], paths: list[Path]) -> None:
    text = json.dumps(finite(report), indent=2) + "\n"
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        tmp.write_text(text)
        tmp.replace(path)


def _f(value: Any, spec: str = ".3f") -> str:
    return "-" if not isinstance(value, int | float) else format(value, spec)


def summary(report: dict[str, Any]) -> str:
    """The short table printed last (the device call's reply carries the end of the output)."""
    lines = [f"{report.get('device')}: {report.get('wall_s')} s"]
    for p, best in (dig(report, "bare", "best") or {}).items():
        lines.append(
            f"bare {p:5} {best['evals_per_s']:>10.1f} evals/s, batch {best['batch']:>5}, "
            f"{best['mode']}"
        )
    chosen = dig(report, "engine", "chosen") or {}
    for method in ("lime", "kernel_shap"):
        run = chosen.get(method)
        if run:
            lines.append(
                f"engine {method:11} {_f(run['seconds'])} s (seg {_f(run['segmentation_s'])}, "
                f"eval {_f(run['evaluation_s'])}, fit {_f(run['fit_s'])}) "
                f"ratio {_f(run['overhead_ratio'])} @ {chosen.get('config')}"
            )
    for row in report.get("targets", []):
        shown = _f(row["measured"], ".4g")
        lines.append(f"target {row['name']:36} {row['target']:>9} {shown:>10}  met: {row['met']}")
    for section in (
        "preflight",
        "bare",
        "engine",
        "agreement",
        "rest",
        "compile",
        "cudnn_benchmark",
    ):
        error = dig(report, section, "error")
        if error:
            lines.append(f"ERROR {section}: {error}")
    return "\n".join(lines)
