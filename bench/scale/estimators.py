"""The estimators bench/quality_scale.py judges, each a function (game, m, budget, seed) ->
(m,) weights over the same coalition game (an `Oracle`, oracle.py: z (n, m) bool ->
(n,) target probabilities), so every method sees exactly the model's numbers.

Glimpse (worker.engine): Kernel SHAP as the service runs it (`KernelShap()`: stratified
paired sampling, order-3 surrogate), its variants `sizes="leverage"` and `order=1`, LIME
(`Lime()`), and num_samples="auto" (`rounds.adaptive`, max_samples 2000; `glimpse_auto`
also returns the evaluations it used and whether it converged). Peers: shap's
KernelExplainer (a function of coalition vectors, background = all hidden, l1_reg off);
lime_image (on a 1 × m "image" whose pixel j is superpixel j, hide_color 0: lime's own
sampler, kernel and Ridge, decoded back to coalitions; the background is the oracle's);
shapiq 1.4.1's Shapley approximators (`approximate(budget, game)`, first-order values read
with `get_n_order_values(1)`; the empty coalition's value is the order-0 baseline, not in
them); captum's KernelShap and Lime on a torch wrapper of the game with one feature per
superpixel (Lime with lime_image's kernel, cosine distance, width 0.25, and Ridge alpha 1:
the LIME estimand; captum's default Lasso would zero most weights).

`METHODS` lists them with the estimand each one is judged against ("shapley" or "lime").
Not run on its own; see bench/quality_scale.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from unittest import mock

import numpy as np

Game = Callable[[np.ndarray], np.ndarray]
Run = Callable[[Game, int, int, int], np.ndarray]
BATCH = 64
AUTO_MAX = 2000


# --- Glimpse ---------------------------------------------------------------------------------
def glimpse_fixed(estimator, game: Game, m: int, budget: int, seed: int) -> np.ndarray:
    """One fixed-budget design of Glimpse's engine (f(image) counted in the budget)."""
    return glimpse_fit(estimator, game, m, budget, seed).weights[0]


def glimpse_fit(estimator, game: Game, m: int, budget: int, seed: int):
    """`glimpse_fixed`'s whole `Fit` (weights, standard errors, resolution)."""
    from worker.engine.rounds import fixed

    f_full = game(np.ones((1, m), bool))
    rng = np.random.default_rng(seed)
    return fixed(estimator, m, _evaluator(game), f_full, rng, budget=budget).fit


def _evaluator(game: Game):
    """The engine's Evaluator over the game, f(image) counted as known."""
    from worker.engine.evaluate import Evaluator

    def score(z: np.ndarray) -> np.ndarray:
        return game(z)[:, None]

    evaluate = Evaluator(score, 1, batch_size=BATCH)
    evaluate.count(1)
    return evaluate


def glimpse_auto(
    game: Game, m: int, seed: int, *, max_samples: int = AUTO_MAX, estimator=None, **options
) -> tuple[np.ndarray, int, bool, int]:
    """num_samples="auto": weights, evaluations used, converged, rounds. `options` go to
    `rounds.adaptive` (tolerance, on_round)."""
    from worker.engine.kernel_shap import KernelShap
    from worker.engine.rounds import adaptive

    f_full = game(np.ones((1, m), bool))
    spent = adaptive(
        estimator if estimator is not None else KernelShap(),
        m,
        _evaluator(game),
        f_full,
        np.random.default_rng(seed),
        max_samples=max_samples,
        **options,
    )
    return spent.fit.weights[0], spent.evaluations, bool(spent.converged), int(spent.rounds or 0)


def _glimpse(**options) -> Run:
    def run(game: Game, m: int, budget: int, seed: int) -> np.ndarray:
        from worker.engine.kernel_shap import KernelShap

        return glimpse_fixed(KernelShap(**options), game, m, budget, seed)

    return run


def glimpse_lime(game: Game, m: int, budget: int, seed: int) -> np.ndarray:
    from worker.engine.lime import Lime

    return glimpse_fixed(Lime(), game, m, budget, seed)


# --- shap and lime ---------------------------------------------------------------------------
def shap_kernel(game: Game, m: int, budget: int, seed: int) -> np.ndarray:
    import shap

    def f(z: np.ndarray) -> np.ndarray:
        return game(np.asarray(z) > 0.5)

    np.random.seed(seed)  # KernelExplainer draws from numpy's global generator
    explainer = shap.KernelExplainer(f, np.zeros((1, m)))
    phi = explainer.shap_values(np.ones((1, m)), nsamples=budget, l1_reg=False, silent=True)
    return np.asarray(phi, np.float64).reshape(-1)[:m]


def lime_image(game: Game, m: int, budget: int, seed: int) -> np.ndarray:
    from lime.lime_image import LimeImageExplainer

    image = np.full((1, m, 3), 255, np.uint8)  # pixel j = superpixel j; hidden -> 0
    labels = np.arange(m, dtype=np.int64).reshape(1, m)

    def classifier(images: np.ndarray) -> np.ndarray:
        p = game(np.asarray(images)[:, 0, :, 0] > 0)
        return np.stack([1 - p, p], axis=1)  # class 1 = the target

    # lime draws a tqdm bar per call; tqdm reads TQDM_DISABLE only when it is imported
    with mock.patch("lime.lime_image.tqdm", lambda rows, **_: rows):
        explanation = LimeImageExplainer(random_state=seed).explain_instance(
            image,
            classifier,
            labels=(1,),
            top_labels=None,
            hide_color=0,
            num_samples=budget,
            batch_size=BATCH,
            segmentation_fn=lambda _: labels,
        )
    weights = np.zeros(m)
    for j, w in explanation.local_exp[1]:
        weights[j] = w
    return weights


# --- shapiq ----------------------------------------------------------------------------------
def uniform_sizes(m: int) -> np.ndarray:
    """Sampling weights over sizes 0..m: uniform over 1..m-1 (leverage-score sampling)."""
    w = np.zeros(m + 1)
    w[1:m] = 1.0
    return w


SHAPIQ = {
    "shapiq_kernel_shap": lambda a, m, s: a.KernelSHAP(m, pairing_trick=True, random_state=s),
    "shapiq_leverage_shap": lambda a, m, s: a.KernelSHAP(
        m, pairing_trick=True, sampling_weights=uniform_sizes(m), random_state=s
    ),
    "shapiq_kadd_shap": lambda a, m, s: a.kADDSHAP(m, random_state=s),
    "shapiq_svarm": lambda a, m, s: a.SVARM(m, random_state=s),
    "shapiq_permutation": lambda a, m, s: a.PermutationSamplingSV(m, random_state=s),
    "shapiq_unbiased_kernel_shap": lambda a, m, s: a.UnbiasedKernelSHAP(m, random_state=s),
    "shapiq_owen": lambda a, m, s: a.OwenSamplingSV(m, random_state=s),
    "shapiq_stratified": lambda a, m, s: a.StratifiedSamplingSV(m, random_state=s),
}


def _shapiq(name: str) -> Run:
    def run(game: Game, m: int, budget: int, seed: int) -> np.ndarray:
        import shapiq.approximator as approximators

        approximator = SHAPIQ[name](approximators, m, seed)

        def values(z: np.ndarray) -> np.ndarray:  # some ask for one coalition as (m,)
            return game(np.atleast_2d(z))

        iv = approximator.approximate(budget, values)
        return np.asarray(iv.get_n_order_values(1), np.float64).reshape(m)

    return run


# --- captum ----------------------------------------------------------------------------------
def _captum(kind: str) -> Run:
    def run(game: Game, m: int, budget: int, seed: int) -> np.ndarray:
        import torch
        from captum._utils.models.linear_model import SkLearnRidge
        from captum.attr import KernelShap, Lime
        from captum.attr._core.lime import get_exp_kernel_similarity_function

        def forward(x: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(game(x.detach().cpu().numpy() > 0.5))

        torch.manual_seed(seed)
        if kind == "kernel_shap":
            explainer = KernelShap(forward)
        else:
            explainer = Lime(
                forward,
                interpretable_model=SkLearnRidge(alpha=1.0),
                similarity_func=get_exp_kernel_similarity_function("cosine", kernel_width=0.25),
            )
        attr = explainer.attribute(
            torch.ones(1, m, dtype=torch.float64),
            baselines=torch.zeros(1, m, dtype=torch.float64),
            feature_mask=torch.arange(m).unsqueeze(0),
            n_samples=budget,
            perturbations_per_eval=BATCH,
        )
        return attr.detach().cpu().numpy().astype(np.float64).reshape(m)

    return run


# --- the list --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Method:
    name: str
    run: Run
    estimand: str  # "shapley" or "lime": the reference it is judged against
    glimpse: bool  # Glimpse's own (else a peer)


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method("glimpse_kernel_shap", _glimpse(), "shapley", True),
        # the default up to #18 (kernel sizes, order 3 at every size), and the variants the
        # default now chooses between by superpixel count (KernelShap.sizes_for, order_for)
        Method("glimpse_kernel_shap_before", _glimpse(sizes="kernel", order=3), "shapley", True),
        Method(
            "glimpse_kernel_shap_leverage", _glimpse(sizes="leverage", order=3), "shapley", True
        ),
        Method("glimpse_kernel_shap_order1", _glimpse(sizes="kernel", order=1), "shapley", True),
        Method(
            "glimpse_kernel_shap_leverage_order1",
            _glimpse(sizes="leverage", order=1),
            "shapley",
            True,
        ),
        Method("glimpse_lime", glimpse_lime, "lime", True),
        Method("shap_kernel_explainer", shap_kernel, "shapley", False),
        Method("lime_image", lime_image, "lime", False),
        *(Method(name, _shapiq(name), "shapley", False) for name in SHAPIQ),
        Method("captum_kernel_shap", _captum("kernel_shap"), "shapley", False),
        Method("captum_lime", _captum("lime"), "lime", False),
    ]
}
