"""Integrated Gradients (Sundararajan et al. 2017) of any model with autodiff.

For input x, baseline x′ (params.background on the input grid) and target score F (the
class's probability or logit, params.output_space):

    IG_i = (x_i − x′_i) · ∫₀¹ ∂F(x′ + α(x − x′))/∂x_i dα  ≈  (x_i − x′_i) · Σ_s w_s ∂F(p_s)/∂x_i

with `steps` points p_s by the midpoint Riemann rule (w_s = 1/steps) or Gauss–Legendre
quadrature on [0, 1]. Completeness, Σ_i IG_i = F(x) − F(x′), holds for the exact integral;
the gap of the sum says how far the quadrature is from it (Vertex AI reports the same as its
approximation error), and shrinks as `steps` grows. With `noise_samples` N > 0 each point's
gradient is the mean over N copies with Gaussian noise of σ = noise_sigma × (max x − min x)
(SmoothGrad; Smilkov et al. 2017), which smooths the map and loosens completeness.

A superpixel's weight is the sum of IG over its pixels (and channels) on the input grid, so
the weights add up to Σ IG; the per-pixel map sums the channels. Every forward+backward pass
is counted as one model evaluation. Points are cut into batches in order and the noise of
each point is drawn in order from its sample's own generator, so the numbers do not depend
on the batch size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from glimpse.errors import InvalidParams
from glimpse.params import IntegratedGradientsOptions
from worker.engine.evaluate import Evaluator
from worker.engine.perturb import background_image
from worker.engine.prefix import Attribution, Prefix, Region
from worker.runtime.base import GradientModel, GradientSource, Model

#: Images per forward+backward pass at most: a backward pass keeps every activation.
GRADIENT_BATCH = 32


@dataclass(frozen=True)
class Integrated:
    """IG of k targets on the input grid."""

    attributions: np.ndarray  # (k, 3, h, w) float64
    passes: int  # forward+backward passes


def path(steps: int, rule: str) -> tuple[np.ndarray, np.ndarray]:
    """(alphas (steps,) in (0, 1), weights (steps,) summing to 1) of the path integral."""
    if rule == "riemann":
        return (np.arange(steps) + 0.5) / steps, np.full(steps, 1.0 / steps)
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    return (nodes + 1.0) / 2.0, weights / 2.0


def gradient_model(model: Model, method: str) -> GradientModel:
    """The model's autodiff, or a 422 naming what the worker lacks."""
    if isinstance(model, GradientModel):
        return model
    found = model.gradients() if isinstance(model, GradientSource) else None
    if found is None:
        raise InvalidParams(
            f"{method} needs gradients: this worker has no PyTorch runtime (install "
            "glimpse[torch] on the worker, or use the worker image built with TORCH=1)",
            errors=[{"loc": ["params", "method"], "msg": "needs a worker with PyTorch"}],
        )
    return found


def baseline(prefix: Prefix) -> np.ndarray:
    """x′: params.background on the input grid (3, h, w)."""
    params = prefix.params
    pixels = background_image(prefix.image, params.background, seed=params.seed)
    return prefix.grid.image(pixels)


def integrated_gradients(
    model: GradientModel,
    x: np.ndarray,
    x_base: np.ndarray,
    targets: np.ndarray,
    options: IntegratedGradientsOptions,
    *,
    output_space: str,
    evaluate: Evaluator,
    seed: int,
) -> Integrated:
    """x, x_base: (3, h, w); targets (k,). Each batch is counted on `evaluate` and reported
    through it (its progress callback may cancel between batches)."""
    alphas, weights = path(options.steps, options.rule)
    samples = max(1, options.noise_samples)
    sigma = options.noise_sigma * float(x.max() - x.min()) if options.noise_samples else 0.0
    k = len(targets)
    points = samples * options.steps  # point p: noise sample p // steps, step p % steps
    per_batch = max(1, min(evaluate.batch_size, GRADIENT_BATCH) // k)
    noise = [np.random.default_rng(s) for s in np.random.SeedSequence([seed, 1]).spawn(samples)]
    diff = (x - x_base).astype(np.float64)
    total = np.zeros((k, *x.shape), np.float64)
    evaluate.expect(evaluate.evaluations + points * k)
    for start in range(0, points, per_batch):
        index = np.arange(start, min(start + per_batch, points))
        step = index % options.steps
        batch = x_base[None] + alphas[step, None, None, None] * diff[None]
        if sigma:
            batch = batch + sigma * _noise(noise, index // options.steps, x.shape)
        rows = np.repeat(batch.astype(np.float32), k, axis=0)  # point-major, then target
        grads, _ = model.input_gradients(rows, np.tile(targets, len(index)), output_space)
        g = np.asarray(grads, np.float64).reshape(len(index), k, *x.shape)
        total += np.einsum("p,pk...->k...", weights[step], g)
        evaluate.count(len(rows))
        evaluate.report()
    return Integrated(attributions=diff[None] * total / samples, passes=points * k)


def _noise(
    generators: list[np.random.Generator], sample: np.ndarray, shape: tuple[int, ...]
) -> np.ndarray:
    """Standard normal noise for points of `sample` ids (ascending): each sample's points
    drawn in order from its own generator, so any cut of the points into batches draws the
    same numbers."""
    out = np.empty((len(sample), *shape), np.float64)
    for s in np.unique(sample):  # at most two samples per batch, usually one
        rows = np.flatnonzero(sample == s)
        out[rows] = generators[int(s)].standard_normal((len(rows), *shape))
    return out


def superpixel_sums(values: np.ndarray, labels: np.ndarray, m: int) -> np.ndarray:
    """values (k, h, w), labels (h, w) ids < m -> (k, m): the sum over each region."""
    flat = labels.reshape(-1)
    return np.stack([np.bincount(flat, weights=v.reshape(-1), minlength=m) for v in values])


def superpixel_means(values: np.ndarray, labels: np.ndarray, m: int) -> np.ndarray:
    """values (k, h, w), labels (h, w) ids < m -> (k, m): the mean over each region (0 for
    a region with no pixels)."""
    sizes = np.bincount(labels.reshape(-1), minlength=m).astype(np.float64)
    return superpixel_sums(values, labels, m) / np.maximum(sizes, 1)


@dataclass(frozen=True)
class Integration:
    """What both gradient methods start from: IG over the input, on `segments`' evaluator."""

    evaluate: Evaluator  # f(image), f(baseline) and every pass counted
    f_empty: np.ndarray  # (k,) F(x′): the completeness check's other end
    per_pixel: np.ndarray  # (k, h, w) IG summed over channels
    labels: np.ndarray  # (h, w) the superpixel ids on the input grid
    m: int  # superpixels
    passes: int  # forward+backward passes

    def attribution(
        self,
        prefix: Prefix,
        segments: np.ndarray,
        weights: np.ndarray,
        maps: np.ndarray,
        regions: tuple[tuple[Region, ...], ...] | None = None,
    ) -> Attribution:
        """weights (k, m) and per-pixel maps (k, h, w) on the input grid -> the step's result."""
        return Attribution(
            segments=segments,
            weights=weights,
            base_value=self.f_empty,
            evaluate=self.evaluate,
            f_empty=self.f_empty,
            pixel_maps=np.stack([prefix.grid.map_to_original(p) for p in maps]),
            attribution_sum=self.per_pixel.reshape(len(self.per_pixel), -1).sum(axis=1),
            backward_passes=self.passes,
            regions=regions,
        )


def integrate(prefix: Prefix, segments: np.ndarray) -> Integration:
    """IG of the prefix's targets from params.background to the image (a 422 without
    autodiff), counted on an evaluator over `segments`."""
    params = prefix.params
    model = gradient_model(prefix.model, params.method)
    evaluate = prefix.evaluator(segments)
    m = int(segments.max()) + 1
    f_empty = evaluate(np.zeros((1, m), bool))[0]
    ig = integrated_gradients(
        model,
        prefix.x,
        baseline(prefix),
        prefix.targets,
        params.integrated_gradients,
        output_space=params.output_space,
        evaluate=evaluate,
        seed=params.seed,
    )
    evaluate.finish()
    return Integration(
        evaluate=evaluate,
        f_empty=f_empty,
        per_pixel=ig.attributions.sum(axis=1),
        labels=prefix.grid.labels(segments),
        m=m,
        passes=ig.passes,
    )


def step(prefix: Prefix, segments: np.ndarray) -> Attribution:
    """integrated_gradients: IG over the input, summed per superpixel of `segments`."""
    run = integrate(prefix, segments)
    weights = superpixel_sums(run.per_pixel, run.labels, run.m)
    return run.attribution(prefix, segments, weights, run.per_pixel)
