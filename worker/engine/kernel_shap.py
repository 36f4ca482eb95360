"""Kernel SHAP: Shapley-kernel coalitions and a regression with the efficiency constraint exact.

Sampling follows shap's KernelExplainer: coalition sizes are taken in pairs (s, M - s) from
the smallest; a size whose complete enumeration fits in the remaining budget (given its share
of the Shapley kernel's mass) is enumerated with its exact kernel weight. The rest of the
budget goes to the remaining sizes as pairs (a subset and its complement: paired sampling).
shap draws each pair's size at random ∝ the kernel mass, with replacement, all rows weighted
equally (`sampling="iid"`); by default Glimpse stratifies instead: each size gets a fixed
number of pairs ∝ its kernel mass (largest remainders, at most all of its pairs), drawn
uniformly without replacement, and the size's kernel mass is spread over them. Same
estimand, less variance where a size's pairs are few enough for the draw to cover a good
share of them (measured in bench/quality.py; README). With a budget of 2^M evaluations
every coalition is enumerated and the values are the exact Shapley values.

The fit (`order=3`, the default) regresses on a surrogate game larger than Kernel SHAP's
linear one: main effects, pairs and triples of superpixels, in the ±1 (Fourier) basis,
with g(∅) = f(∅) and g(all) = f(x) exact and a ridge of RIDGE·Σw/n on each triple's
coefficient; the weights are the surrogate's Shapley values, in closed form
(regression.py). Why triples: under paired sampling the even part of f (pairs included)
drops out of the regression, so the linear fit already equals the pairwise (2-additive)
one (Fumagalli, Witter and Musco 2026, "PolySHAP"; measured here too), and its error is
the odd interactions, three-way first (85–91 % of the odd misfit's energy on the bench
photos). Fitting them cut the error 1.5–3.3× at every budget of bench/quality.py. With
every coalition enumerated the order-1 fit is used (exact, SE 0); with more than SCREEN
superpixels pairs and triples are taken among the SCREEN with the largest order-1 |φ|
(per target). The design (a few hundred columns) is built and reduced a chunk of rows at
a time (regression.CHUNK), so the fit's memory stays flat as the budget grows.

Defaults by size (measured in bench/quality_scale.py at m = 25..97 against a 300-permutation
reference, and in bench/quality.py at m = 12 against exact values): up to 16 superpixels the
kernel's size distribution (10-35 % less error than leverage sizes there); above, leverage
sizes (at 1000 evaluations 8-33 % less error on all five of the scale bench's photos); the
order-3 surrogate up to 64 superpixels, the linear fit above (at 97 superpixels the screened
triples fit noise: 0.91 against 0.77).

`grow` gives the design at a larger budget for num_samples "auto" (rounds.py): the random
coalitions drawn so far are kept where their sizes are still sampled, so no evaluation is
wasted; sizes the larger budget can now enumerate reuse the ones already evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from math import comb

import numpy as np

from worker.engine.coalitions import Coalitions, Fit
from worker.engine.regression import constrained_wls, interaction_design, penalised_wls
from worker.engine.uncertainty import constrained_wls_errors, penalised_wls_errors

#: Ridge on each triple's Fourier coefficient, as a multiple of (total weight / rows).
RIDGE = 80.0
#: Superpixels whose pairs and triples enter the order-3 surrogate at most (C(12, 3) = 220
#: triples); with more, the 12 with the largest order-1 |φ|, per target.
SCREEN = 12
#: `sizes="auto"`: leverage-score sizes above this many superpixels, the kernel's up to it.
LEVERAGE_ABOVE = 16
#: `order=None`: the order-3 surrogate up to this many superpixels, the linear fit above.
ORDER3_UP_TO = 64


@dataclass(frozen=True)
class KernelShap:
    """`sizes`: how the random part draws coalition sizes: `kernel` (∝ the Shapley kernel's
    mass, shap's choice, equal regression weights), `leverage` (every size equally often,
    as leverage-score sampling does (Musco & Witter 2024), with importance weights) or
    `auto` (default: leverage above LEVERAGE_ABOVE superpixels, kernel up to it).
    `sampling`: `stratified` (default: a fixed number of pairs per size, distinct, each
    size's kernel mass spread over its pairs) or `iid` (shap's: sizes drawn at random, pairs
    drawn with replacement, equal weights). `order`: 3 (default) fits the order-3 surrogate
    (module docstring), 1 the linear one of classic Kernel SHAP (same numbers as order 2
    under paired sampling), None (default) order 3 up to ORDER3_UP_TO superpixels and 1
    above. Why these defaults: bench/quality_scale.py (module docstring)."""

    sizes: str = "auto"
    sampling: str = "stratified"
    order: int | None = None

    def sizes_for(self, n_segments: int) -> str:
        if self.sizes != "auto":
            return self.sizes
        return "leverage" if n_segments > LEVERAGE_ABOVE else "kernel"

    def order_for(self, n_segments: int) -> int:
        if self.order is not None:
            return self.order
        return 3 if n_segments <= ORDER3_UP_TO else 1

    def sample(self, n_segments: int, budget: int, rng: np.random.Generator) -> Coalitions:
        """budget counts f(x) and f(all hidden): budget - 2 coalitions are drawn."""
        return self.grow(None, n_segments, budget, rng)

    def grow(
        self, previous: Coalitions | None, n_segments: int, budget: int, rng: np.random.Generator
    ) -> Coalitions:
        """The design at `budget` that keeps `previous`'s random rows whose sizes are still
        sampled (they are draws from the same distribution restricted to those sizes), and
        enumerates what the budget now affords (rows already evaluated cost nothing)."""
        m = n_segments
        sizes_rule = self.sizes_for(m)
        remaining = max(budget - 2, 0)
        if m < 2 or remaining == 0:
            return Coalitions(np.zeros((0, m), bool), np.zeros(0), needs_empty=True)
        sizes = np.arange(1, m)
        kernel = (m - 1) / (sizes * (m - sizes))  # total kernel mass of each size s = 1..M-1
        # Pair s with M - s: mass of the pair, enumerated together.
        half = (m - 1 + 1) // 2  # sizes 1..half, where half pairs with m-half
        pair_mass = np.array(
            [kernel[s - 1] + (kernel[m - s - 1] if s != m - s else 0.0) for s in range(1, half + 1)]
        )
        pair_mass /= pair_mass.sum()

        blocks: list[np.ndarray] = []
        weights: list[np.ndarray] = []
        groups: list[np.ndarray] = []
        left_mass = 1.0
        first_random = half + 1
        for s in range(1, half + 1):
            count = comb(m, s) * (1 if s == m - s else 2)
            share = pair_mass[s - 1] / left_mass
            if remaining * share < count - 1e-8:
                first_random = s
                break
            rows = _all_subsets(m, s)
            if s != m - s:
                rows = np.vstack([rows, ~rows])
            blocks.append(rows)
            weights.append(np.full(len(rows), pair_mass[s - 1] / count))
            groups.append(np.full(len(rows), -1))
            remaining -= count
            left_mass -= pair_mass[s - 1]
        strata: list[np.ndarray] = []
        fraction: list[np.ndarray] = []
        if first_random <= half and remaining > 0 and left_mass > 1e-12:
            random_sizes = np.arange(first_random, half + 1)
            mass = pair_mass[first_random - 1 :]
            draw = mass if sizes_rule == "kernel" else np.where(2 * random_sizes == m, 1.0, 2.0)
            draw = draw / draw.sum()
            old = None
            if previous is not None and previous.groups is not None:
                old = (previous.z[previous.groups >= 0], previous.groups[previous.groups >= 0])
            if self.sampling == "stratified":
                part = _stratified_pairs(m, random_sizes, mass, draw, remaining, old, rng)
                blocks.append(part[0])
                weights.append(part[1])
                groups.append(part[2])
                strata.append(np.full(sum(len(b) for b in blocks[:-1]), -1))
                strata.append(part[3])
                fraction.append(np.zeros(len(strata[0])))
                fraction.append(part[4])
            else:
                kept = np.zeros((0, m), bool)
                if old is not None:
                    small = np.minimum(old[0].sum(axis=1), m - old[0].sum(axis=1))
                    kept = old[0][small >= first_random][:remaining]
                    kept = kept[: len(kept) - len(kept) % 2]  # whole pairs only
                fresh = _random_paired(m, random_sizes, draw, remaining - len(kept), rng)
                rows = np.vstack([kept, fresh])
                blocks.append(rows)
                if sizes_rule == "kernel":
                    weights.append(np.full(len(rows), left_mass / len(rows)))
                else:  # importance weights: kernel mass / draw probability, per row
                    small = np.minimum(rows.sum(axis=1), m - rows.sum(axis=1))
                    weights.append((mass / draw)[small - first_random] / len(rows))
                groups.append(np.arange(len(rows)) // 2)  # kept rows stay in their pairs
        z = np.vstack(blocks) if blocks else np.zeros((0, m), bool)
        w = np.concatenate(weights) if weights else np.zeros(0)
        g = np.concatenate(groups) if groups else np.zeros(0, np.intp)
        if not strata:
            return Coalitions(z=z, weights=w, needs_empty=True, groups=g)
        return Coalitions(
            z=z,
            weights=w,
            needs_empty=True,
            groups=g,
            strata=np.concatenate(strata),
            fraction=np.concatenate(fraction),
        )

    def fit(
        self, coalitions: Coalitions, y: np.ndarray, f_full: np.ndarray, f_empty: np.ndarray | None
    ) -> Fit:
        assert f_empty is not None
        z = coalitions.z
        m = z.shape[1]
        if len(z) == 0:  # no budget for coalitions: spread the difference evenly
            phi = np.repeat(((f_full - f_empty) / max(m, 1))[:, None], m, axis=1)
            return Fit(weights=phi, base_value=f_empty.astype(np.float64), score=None)
        w = coalitions.weights
        base = f_empty.astype(np.float64)
        sampled = coalitions.groups is None or bool((coalitions.groups >= 0).any())
        linear = constrained_wls(z, y, w, f_empty, f_full)
        if self.order_for(m) < 3 or not sampled or m < 3:
            errors = constrained_wls_errors(
                z,
                y,
                w,
                f_empty,
                f_full,
                linear,
                coalitions.groups,
                coalitions.strata,
                coalitions.fraction,
            )
            return Fit(linear, base, None, errors.se, errors.separated, errors.resolution)
        # every target shares the design when every superpixel is in it; else one per target
        shared = m <= SCREEN
        targets = [slice(None)] if shared else [slice(t, t + 1) for t in range(len(f_full))]
        parts = []
        for t in targets:
            members = np.arange(m) if shared else screened(linear[t][0])
            ridge = RIDGE * float(w.sum()) / len(z)
            reduced = interaction_design(z, y[:, t], f_empty[t], f_full[t], members, ridge)
            beta, bread_inv = penalised_wls(reduced, w)
            phi = reduced.phi(beta)
            errors = penalised_wls_errors(
                reduced,
                w,
                beta,
                bread_inv,
                phi,
                coalitions.groups,
                coalitions.strata,
                coalitions.fraction,
            )
            parts.append((phi, errors))
        separated, resolution = [], []
        for _, e in parts:  # m >= 3: there is a top k
            assert e.separated is not None and e.resolution is not None
            separated.append(e.separated)
            resolution.append(e.resolution)
        return Fit(
            np.vstack([p for p, _ in parts]),
            base,
            None,
            np.vstack([e.se for _, e in parts]),
            np.concatenate(separated),
            np.concatenate(resolution),
        )


def screened(magnitude: np.ndarray) -> np.ndarray:
    """The SCREEN superpixels with the largest |order-1 φ| (ties by id), sorted: interactions
    are sought among the superpixels that matter on their own (effect heredity, Hamada and
    Wu 1992)."""
    return np.sort(np.argsort(-np.abs(magnitude), kind="stable")[:SCREEN])


def _all_subsets(m: int, s: int) -> np.ndarray:
    """Every subset of size s of m features as (C(m, s), m) bool rows."""
    idx = np.fromiter(
        (i for combo in combinations(range(m), s) for i in combo),
        dtype=np.intp,
        count=comb(m, s) * s,
    ).reshape(-1, s)
    rows = np.zeros((len(idx), m), bool)
    np.put_along_axis(rows, idx, True, axis=1)
    return rows


def _random_paired(
    m: int, sizes: np.ndarray, mass: np.ndarray, budget: int, rng: np.random.Generator
) -> np.ndarray:
    """budget rows: random subsets of sizes drawn ∝ mass (s or M-s with equal chance), each
    followed by its complement; an odd budget ends with one unpaired subset."""
    n_pairs = (budget + 1) // 2
    chosen = rng.choice(sizes, size=n_pairs, p=mass / mass.sum())
    flip = rng.random(n_pairs) < 0.5
    chosen = np.where(flip, m - chosen, chosen)
    ranks = rng.random((n_pairs, m)).argsort(axis=1).argsort(axis=1)
    subsets = ranks < chosen[:, None]
    rows = np.empty((2 * n_pairs, m), bool)
    rows[0::2] = subsets
    rows[1::2] = ~subsets
    return rows[:budget]


def _allocate(n: int, share: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """n items over bins ∝ share (largest remainders), at most cap[j] in bin j."""
    alloc = np.zeros(len(share), np.int64)
    while True:
        room = alloc < cap
        left = n - int(alloc.sum())
        if left <= 0 or not room.any():
            return alloc
        weight = np.where(room, share, 0.0)
        exact = left * weight / weight.sum()
        add = np.floor(exact).astype(np.int64)
        if add.sum() == 0:
            for j in np.argsort(-exact, kind="stable")[:left]:
                add[j] += int(room[j])
        alloc = np.minimum(alloc + add, cap)


def _canonical(rows: np.ndarray, m: int) -> np.ndarray:
    """The member of each {S, ~S} pair that is smaller, or holds feature 0 at the middle."""
    size = rows.sum(axis=1)
    flip = (2 * size > m) | ((2 * size == m) & ~rows[:, 0])
    return np.where(flip[:, None], ~rows, rows)


def _members(m: int, s: int) -> np.ndarray:
    """Every canonical member of the pairs of size s."""
    if 2 * s != m:
        return _all_subsets(m, s)
    rest = _all_subsets(m - 1, s - 1)
    return np.hstack([np.ones((len(rest), 1), bool), rest])


def _distinct(
    m: int, s: int, count: int, population: int, taken: set[bytes], rng: np.random.Generator
) -> np.ndarray:
    """count canonical members of size-s pairs, uniformly without replacement, not in taken."""
    if count <= 0:
        return np.zeros((0, m), bool)
    if population <= 50_000 and 4 * (count + len(taken)) >= population:
        pool = _members(m, s)
        keys = [k.tobytes() for k in np.packbits(pool, axis=1)]
        pool = pool[[k not in taken for k in keys]]
        return pool[rng.choice(len(pool), size=count, replace=False)]
    out: list[np.ndarray] = []
    seen = set(taken)
    while len(out) < count:
        ranks = rng.random((count - len(out) + 8, m)).argsort(axis=1).argsort(axis=1)
        for row in _canonical(ranks < s, m):
            key = np.packbits(row).tobytes()
            if key not in seen and len(out) < count:
                seen.add(key)
                out.append(row)
    return np.array(out)


def _stratified_pairs(
    m: int,
    sizes: np.ndarray,
    mass: np.ndarray,
    share: np.ndarray,
    n_rows: int,
    old: tuple[np.ndarray, np.ndarray] | None,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """n_rows rows as pairs (S, ~S): each pair-size ("stratum") gets pairs ∝ share (at most
    all of its pairs), drawn uniformly without replacement and keeping `old` pairs (rows,
    group ids) of these sizes; an odd n_rows adds one unpaired subset. Each stratum's kernel
    mass is spread evenly over its rows. Returns rows, weights, groups (pair ids), strata
    (index into sizes) and the sampled fraction of each row's stratum."""
    population = np.array([comb(m, int(s)) // (2 if 2 * s == m else 1) for s in sizes])
    kept: list[list[np.ndarray]] = [[] for _ in sizes]
    if old is not None:
        rows, ids = old
        for g in np.unique(ids):
            pair = rows[ids == g]
            if len(pair) == 2:
                member = _canonical(pair[:1], m)[0]
                j = int(member.sum()) - int(sizes[0])
                if 0 <= j < len(sizes):
                    kept[j].append(member)
    n_kept = np.array([len(k) for k in kept])
    count = np.maximum(_allocate(n_rows // 2, share, population), n_kept)
    excess = int(count.sum()) - n_rows // 2
    while excess > 0 and (count > n_kept).any():
        j = int(np.argmax(count - n_kept))
        cut = min(excess, int(count[j] - n_kept[j]))
        count[j] -= cut
        excess -= cut
    single = -1
    if n_rows % 2 and (count < population).any():
        single = int(np.argmax(np.where(count < population, share, -1.0)))
    blocks, weights, groups, strata, fraction = [], [], [], [], []
    next_id = 0
    for j, s in enumerate(sizes):
        old_members = np.array(kept[j], bool).reshape(-1, m)
        taken = {k.tobytes() for k in np.packbits(old_members, axis=1)}
        fresh = _distinct(
            m, int(s), int(count[j] - n_kept[j]) + (j == single), int(population[j]), taken, rng
        )
        members = np.vstack([old_members, fresh])
        n_pairs = len(members) - (j == single)
        rows = np.empty((2 * n_pairs + (j == single), m), bool)
        rows[0 : 2 * n_pairs : 2] = members[:n_pairs]
        rows[1 : 2 * n_pairs : 2] = ~members[:n_pairs]
        ids = next_id + np.arange(len(rows)) // 2
        if j == single:
            rows[-1] = members[-1] if rng.random() < 0.5 else ~members[-1]
        next_id = int(ids[-1]) + 1 if len(ids) else next_id
        blocks.append(rows)
        weights.append(np.full(len(rows), mass[j] / max(len(rows), 1)))
        groups.append(ids)
        strata.append(np.full(len(rows), j))
        fraction.append(np.full(len(rows), min(n_pairs / population[j], 1.0)))
    return (
        np.vstack(blocks),
        np.concatenate(weights),
        np.concatenate(groups),
        np.concatenate(strata),
        np.concatenate(fraction),
    )
