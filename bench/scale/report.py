"""What bench/quality_scale.py makes of its configurations: the per-estimator block (mean
over configurations and per configuration, per budget), the issue's targets evaluated on
what was run, and the compact table it prints.

Targets (GitHub issue #18), each with pass/fail, the numbers and, for a miss, by how much:
(a) Glimpse Kernel SHAP at 500 evaluations no worse (rel L2 to the Shapley reference) than
    the best peer at 1000, on every configuration;
(b) top-10 recall ≥ 0.8 at 1000 for Glimpse's LIME (vs the LIME estimand) and Glimpse's
    Kernel SHAP (vs Shapley), on every configuration;
(c) seed-to-seed Spearman ≥ 0.95 at 1000 for both, on every configuration;
(d) auto spends ≤ 1000 evaluations on the median configuration, and is never worse than
    fixed 1000 (mean rel L2 over seeds, per configuration).

Not run on its own; see bench/quality_scale.py.
"""

from __future__ import annotations

import math

import numpy as np

from bench.scale.estimators import METHODS
from bench.scale.metrics import nanmean

KS = "glimpse_kernel_shap"
LIME = "glimpse_lime"
AVERAGED = (
    "rel_l2",
    "rel_l2_beyond_reference",
    "se_ratio",
    "top5",
    "top10",
    "spearman",
    "seed_to_seed_spearman",
    "noise_to_noise_spearman",
    "deletion_auc",
    "insertion_auc",
    "evaluations",
    "distinct",
    "seconds",
)


def estimators_block(configs: list[dict]) -> dict:
    """{method: {budget: {"mean": {...}, "per_config": {config: row}}}}."""
    out: dict[str, dict] = {}
    for cfg in configs:
        for name, rows in cfg["methods"].items():
            for budget, row in rows.items():
                entry = out.setdefault(name, {}).setdefault(budget, {"per_config": {}})
                entry["per_config"][cfg["config"]] = row
    for name, budgets in out.items():
        for entry in budgets.values():
            rows = list(entry["per_config"].values())
            mean = {k: nanmean([r.get(k, math.nan) for r in rows]) for k in AVERAGED}
            mean["failed_runs"] = int(sum(r["failed"] for r in rows))
            mean["over_budget_configs"] = int(sum(r["over_budget"] for r in rows))
            entry["mean"] = mean
            entry["estimand"] = METHODS[name].estimand if name in METHODS else None
    return out


def _at(cfg: dict, method: str, budget: int, key: str) -> float:
    row = cfg["methods"].get(method, {}).get(str(budget))
    return math.nan if row is None else float(row.get(key, math.nan))


def _peers(cfg: dict, estimand: str) -> list[str]:
    return [
        n
        for n in cfg["methods"]
        if n in METHODS and not METHODS[n].glimpse and METHODS[n].estimand == estimand
    ]


def target_a(configs: list[dict]) -> dict:
    per = {}
    for cfg in configs:
        ours = _at(cfg, KS, 500, "rel_l2")
        peers = {n: _at(cfg, n, 1000, "rel_l2") for n in _peers(cfg, "shapley")}
        peers = {n: v for n, v in peers.items() if math.isfinite(v)}
        best = min(peers, key=peers.get) if peers else None
        best_value = peers[best] if best else math.nan
        per[cfg["config"]] = {
            "glimpse_kernel_shap_500": ours,
            "best_peer_1000": best,
            "best_peer_1000_rel_l2": best_value,
            "met": bool(ours <= best_value),
            "excess": ours - best_value,
            "reference_rel_se": cfg["reference"]["shapley"]["rel_se"],
        }
    met = bool(per) and all(p["met"] for p in per.values())
    worst = max(per.values(), key=lambda p: p["excess"], default=None)
    return {
        "target": "Glimpse Kernel SHAP at 500 has rel L2 <= the best peer at 1000, per config",
        "met": met,
        "per_config": per,
        "miss": None
        if met or worst is None
        else f"worst excess {worst['excess']:+.4f} rel L2 (vs {worst['best_peer_1000']})",
    }


def _threshold(configs: list[dict], key: str, floor: float, label: str) -> dict:
    out: dict = {"target": f"{label} >= {floor} at 1000, per config", "met": True}
    misses = []
    for method in (KS, LIME):
        values = {cfg["config"]: _at(cfg, method, 1000, key) for cfg in configs}
        finite = [v for v in values.values() if math.isfinite(v)]
        met = bool(finite) and len(finite) == len(values) and min(finite) >= floor
        out[method] = {
            "per_config": values,
            "min": min(finite) if finite else math.nan,
            "mean": nanmean(finite),
            "met": met,
        }
        if not met:
            low = min(finite) if finite else math.nan
            misses.append(f"{method}: min {low:.3f}, {floor - low:.3f} short")
        out["met"] = out["met"] and met
    out["miss"] = "; ".join(misses) or None
    return out


def target_d(configs: list[dict]) -> dict:
    medians = {cfg["config"]: cfg["auto"]["median_evaluations"] for cfg in configs}
    median = float(np.median(list(medians.values()))) if medians else math.nan
    per = {}
    for cfg in configs:
        a = cfg["auto"]
        per[cfg["config"]] = {
            "median_evaluations": a["median_evaluations"],
            "converged_share": a["converged_share"],
            "auto_rel_l2": a["rel_l2"],
            "fixed_1000_rel_l2": a["fixed_1000_rel_l2"],
            "auto_top10": a["top10"],
            "fixed_1000_top10": a["fixed_1000_top10"],
            "not_worse": bool(a["rel_l2"] <= a["fixed_1000_rel_l2"]),
        }
    cheap = bool(median <= 1000)
    never_worse = bool(per) and all(p["not_worse"] for p in per.values())
    misses = []
    if not cheap:
        misses.append(f"median config spends {median:.0f}, {median - 1000:.0f} over 1000")
    for name, p in per.items():
        if not p["not_worse"]:
            misses.append(
                f"{name}: rel L2 {p['auto_rel_l2']:.4f} vs fixed 1000 {p['fixed_1000_rel_l2']:.4f}"
                f" ({p['auto_rel_l2'] - p['fixed_1000_rel_l2']:+.4f})"
            )
    return {
        "target": "auto <= 1000 evaluations on the median config and never worse than fixed "
        "1000 (mean rel L2 to the Shapley reference over seeds, per config)",
        "met": cheap and never_worse,
        "median_evaluations_over_configs": median,
        "median_le_1000": cheap,
        "never_worse": never_worse,
        "per_config": per,
        "miss": "; ".join(misses) or None,
    }


def targets(configs: list[dict], budgets: list[int]) -> dict:
    if not {500, 1000} <= set(budgets):
        return {"evaluated": False, "why": "the targets need budgets 500 and 1000"}
    return {
        "evaluated": True,
        "a_kernel_shap_500_vs_best_peer_1000": target_a(configs),
        "b_top10_recall_1000": _threshold(configs, "top10", 0.8, "top-10 recall"),
        "c_seed_to_seed_spearman_1000": _threshold(
            configs, "seed_to_seed_spearman", 0.95, "seed-to-seed Spearman"
        ),
        "d_auto": target_d(configs),
    }


def table(block: dict, configs: list[dict], budgets: list[int]) -> str:
    """One block per segmentation (m differs by segmentation, so their means are kept
    apart): means over its configurations of rel L2, top-10 and Spearman per budget,
    seed-to-seed Spearman, evaluations and failed runs at the largest budget; then one line
    per configuration (reference SE, auto). `block` is `estimators_block`'s (or the JSON's
    "estimators"), `configs` the JSON's "configs"."""
    last = str(max(budgets))
    head = f"{'method':30s} {'ref':7s}" + "".join(f" | {b:>5d}: relL2 top10 spear" for b in budgets)
    head += f" | s2s@{last} evals@{last} fail"
    groups: dict[str, list[dict]] = {}
    for cfg in configs:
        groups.setdefault(cfg["segmentation"], []).append(cfg)
    lines: list[str] = []
    for segmentation, members in groups.items():
        names = [c["config"] for c in members]
        ms = sorted({c["m"] for c in members})
        lines += [
            f"{segmentation}: mean over {len(names)} config(s), m = {', '.join(map(str, ms))}",
            head,
            "-" * len(head),
        ]
        for name, rows in block.items():

            def mean(budget: str, key: str, rows: dict = rows, names: list = names) -> float:
                per = rows.get(budget, {}).get("per_config", {})
                return nanmean([per[n].get(key, math.nan) for n in names if n in per])

            cells = "".join(
                f" | {'':5s}  {mean(str(b), 'rel_l2'):5.3f} {mean(str(b), 'top10'):5.2f}"
                f" {mean(str(b), 'spearman'):5.2f}"
                for b in budgets
            )
            estimand = rows.get(last, {}).get("estimand") or "?"
            failed = sum(
                rows.get(last, {}).get("per_config", {}).get(n, {}).get("failed", 0) for n in names
            )
            lines.append(
                f"{name:30s} {estimand:7s}{cells} | {mean(last, 'seed_to_seed_spearman'):7.3f}"
                f" {mean(last, 'evaluations'):9.0f} {failed:4d}"
            )
        lines.append("")
    for cfg in configs:
        a, ref = cfg["auto"], cfg["reference"]
        lines.append(
            f"{cfg['config']:28s} m={cfg['m']:3d} target {cfg['target']} "
            f"({cfg['target_label']}, p={cfg['target_probability']:.3f}) | reference rel SE: "
            f"shapley {ref['shapley']['rel_se']:.3f} ({ref['shapley']['evaluations']} evals), "
            f"lime {ref['lime']['rel_se']:.3f} | auto: median {a['median_evaluations']:.0f} "
            f"evals, converged {a['converged_share']:.0%}, rel L2 {a['rel_l2']:.3f} "
            f"(fixed 1000: {a['fixed_1000_rel_l2']:.3f})"
        )
    return "\n".join(lines)
