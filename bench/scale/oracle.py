"""The coalition oracle of bench/quality_scale.py, and the photos and games it answers for.

`Oracle` answers v(z) for boolean coalition matrices z (n, m), True = superpixel shown, for
one game: a function of distinct coalitions (here the model's target-class probability on
the photo with the hidden superpixels showing the background). Each distinct coalition is
evaluated once (key: `np.packbits` of its row), then kept in memory and on disk under
CACHE/<photo>-<seg>-<bg>-m<m>-t<target>.npz (packed keys and values, plus a fingerprint of
photo, superpixels and background, so a changed segmentation never reads stale values);
a rerun costs no model calls. `calls` counts the evaluations the oracle really made.
`Oracle.tally()` counts, for one estimator run, the rows it asked for and how many of them
were distinct: what that run would have cost on its own.

`Scene` builds the oracle of one (photo, segmentation, background) from the shared
EfficientNet-Lite0; the model is only needed (and loaded) where an evaluation is missing.

Not run on its own: `bench/quality_scale.py` drives it; `tests/bench/test_quality_scale.py`
exercises it on a synthetic game.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CACHE = Path("/tmp/glimpse-quality-scale")
LABELS = Path(__file__).resolve().parents[3] / "shared" / "models" / "imagenet1k_labels.txt"
BATCH = 64
AUTOSAVE = 4096  # new evaluations between two writes of the cache file

Evaluate = Callable[[np.ndarray], np.ndarray]  # z (n, m) bool -> (n,) float


@dataclass
class Tally:
    """What one estimator run asked the oracle for."""

    rows: int = 0
    keys: set[bytes] = field(default_factory=set)

    @property
    def distinct(self) -> int:
        return len(self.keys)


class Oracle:
    """v(z) for coalition matrices, each distinct coalition evaluated once and cached.

    evaluate: z (n, m) bool -> (n,) values, called on at most `batch` new rows at a time;
    path: the cache file (None: memory only); fingerprint: what the values are a function of
    (a cache file with another fingerprint is ignored and overwritten).
    """

    def __init__(
        self,
        evaluate: Evaluate | None,
        m: int,
        *,
        path: Path | None = None,
        fingerprint: str = "",
        batch: int = BATCH,
    ) -> None:
        self.evaluate = evaluate
        self.m = m
        self.path = path
        self.fingerprint = fingerprint
        self.batch = batch
        self.values: dict[bytes, float] = {}
        self.calls = 0  # model evaluations made by this oracle
        self.rows = 0  # rows asked for, repeats included
        self.loaded = 0  # values read from the cache file
        self._disk: set[bytes] = set()
        self.disk_hits: set[bytes] = set()  # distinct cached-on-disk coalitions asked for
        self._unsaved = 0
        self._tallies: list[Tally] = []
        if path is not None and path.is_file():
            with np.load(path, allow_pickle=False) as cached:
                if str(cached["fingerprint"]) == fingerprint and cached["keys"].shape[1:] == (
                    (m + 7) // 8,
                ):
                    keys = [bytes(k) for k in cached["keys"]]
                    self.values = dict(zip(keys, cached["values"].tolist(), strict=True))
                    self._disk = set(keys)
                    self.loaded = len(keys)

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """z: (n, m) or (m,) bool (or 0/1) -> (n,) float64 values."""
        z = np.atleast_2d(np.asarray(z)).astype(bool, copy=False)
        if z.shape[1] != self.m:
            raise ValueError(f"coalitions of {z.shape[1]} players, the game has {self.m}")
        keys = [row.tobytes() for row in np.packbits(z, axis=1)]
        self.rows += len(keys)
        for tally in self._tallies:
            tally.rows += len(keys)
            tally.keys.update(keys)
        missing: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            if key not in self.values and key not in missing:
                missing[key] = i
        if self._disk:
            self.disk_hits.update(k for k in keys if k in self._disk)
        if missing:
            self._evaluate(list(missing), z[list(missing.values())])
        values = self.values
        return np.fromiter((values[k] for k in keys), np.float64, count=len(keys))

    def _evaluate(self, keys: list[bytes], rows: np.ndarray) -> None:
        if self.evaluate is None:
            raise RuntimeError("coalitions missing from the cache and no model to evaluate them")
        for start in range(0, len(rows), self.batch):
            out = np.asarray(self.evaluate(rows[start : start + self.batch]), np.float64)
            chunk = keys[start : start + self.batch]
            self.values.update(zip(chunk, out.reshape(-1).tolist(), strict=True))
            self.calls += len(chunk)
            self._unsaved += len(chunk)
            if self._unsaved >= AUTOSAVE:
                self.save()

    @contextmanager
    def tally(self) -> Iterator[Tally]:
        """Counts the rows (and distinct rows) asked for inside the `with` block."""
        tally = Tally()
        self._tallies.append(tally)
        try:
            yield tally
        finally:
            self._tallies.remove(tally)

    def save(self) -> None:
        """Writes every known value to the cache file (atomically), if there is one."""
        self._unsaved = 0
        if self.path is None or not self.values:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = np.frombuffer(b"".join(self.values), np.uint8).reshape(len(self.values), -1)
        values = np.fromiter(self.values.values(), np.float64, count=len(self.values))
        tmp = self.path.with_name(self.path.name + ".tmp.npz")
        np.savez(tmp, keys=keys, values=values, fingerprint=np.array(self.fingerprint))
        os.replace(tmp, self.path)

    def full(self) -> float:
        return float(self(np.ones((1, self.m), bool))[0])

    def empty(self) -> float:
        return float(self(np.zeros((1, self.m), bool))[0])


# --- photos and scenes ----------------------------------------------------------------------
PHOTOS = (
    "chelsea",
    "coffee",
    "astronaut",
    "rocket",
    "motorcycle_left",
    "china",
    "flower",
    "grace_hopper",
)


def load_photo(name: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB of one of PHOTOS, from installed packages only."""
    if name in ("chelsea", "coffee", "astronaut", "rocket"):
        from skimage import data

        return np.ascontiguousarray(getattr(data, name)())
    if name == "motorcycle_left":
        from skimage import data

        return np.ascontiguousarray(data.stereo_motorcycle()[0])
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        return np.ascontiguousarray(load_sample_image(f"{name}.jpg"))
    if name == "grace_hopper":
        import matplotlib.cbook
        from PIL import Image

        with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
            return np.asarray(Image.open(f).convert("RGB"))
    raise KeyError(f"unknown photo {name!r}; known: {', '.join(PHOTOS)}")


def noisy(image: np.ndarray, seed: int, sigma: float) -> np.ndarray:
    """The photo with Gaussian noise of `sigma` (0..255 units), rounded and clipped."""
    noise = np.random.default_rng(seed).normal(0.0, sigma, image.shape)
    return np.clip(np.round(image + noise), 0, 255).astype(np.uint8)


def segmentation_spec(name: str):
    """quickshift (lime's defaults), slic50, slic20 -> glimpse.params spec."""
    from glimpse.params import Quickshift, Slic

    if name == "quickshift":
        return Quickshift()
    if name.startswith("slic") and name[4:].isdigit():
        return Slic(n_segments=int(name[4:]))
    raise KeyError(f"unknown segmentation {name!r}: quickshift, slic<N>")


def background_spec(name: str):
    """black (constant 0) or blur (Gaussian, sigma 10) -> glimpse.params spec."""
    from glimpse.params import BlurBackground, ConstantBackground

    if name == "black":
        return ConstantBackground()
    if name == "blur":
        return BlurBackground()
    raise KeyError(f"unknown background {name!r}: black, blur")


class Scene:
    """One (photo, segmentation, background) and its target; `oracle()` gives its game (and
    that of a noisy copy of the photo with the same superpixels and target)."""

    def __init__(self, photo: str, segmentation: str, background: str, model_factory) -> None:
        from worker.engine.segment import segment

        self.photo = photo
        self.segmentation = segmentation
        self.background = background
        self.image = load_photo(photo)
        self.segments = segment(self.image, segmentation_spec(segmentation))
        self.m = int(self.segments.max()) + 1
        self._model_factory = model_factory  # () -> model, called only when needed
        self._model = None
        self.target, self.target_probability = self._target()

    @property
    def name(self) -> str:
        return f"{self.photo}/{self.segmentation}/{self.background}"

    @property
    def label(self) -> str | None:
        """The target's ImageNet label, where the shared labels file is present."""
        if not LABELS.is_file():
            return None
        return LABELS.read_text().splitlines()[self.target].split(",")[0]

    def model(self):
        if self._model is None:
            self._model = self._model_factory()
        return self._model

    def _target(self) -> tuple[int, float]:
        """Top-1 class on the clean photo (cached beside the oracles)."""
        digest = hashlib.sha256(self.image.tobytes()).hexdigest()[:16]
        path = CACHE / f"{self.photo}-top1-{digest}.npz"
        if path.is_file():
            with np.load(path) as cached:
                return int(cached["target"]), float(cached["probability"])
        from worker.engine.explain import to_output_space
        from worker.engine.input_grid import InputGrid

        model = self.model()
        grid = InputGrid(model.card, self.image.shape[:2])
        p = to_output_space(model(grid.image(self.image)[None]), model.card, "probability")[0]
        target = int(np.argmax(p))
        CACHE.mkdir(parents=True, exist_ok=True)
        np.savez(path, target=target, probability=float(p[target]))
        return target, float(p[target])

    def oracle(self, noise_seed: int | None = None, sigma: float = 2.0) -> Oracle:
        image = self.image if noise_seed is None else noisy(self.image, noise_seed, sigma)
        label = self.photo if noise_seed is None else f"{self.photo}~noise{noise_seed}"
        fingerprint = hashlib.sha256(
            image.tobytes()
            + self.segments.tobytes()
            + background_spec(self.background).model_dump_json().encode()
            + str(self.target).encode()
        ).hexdigest()[:24]
        path = CACHE / f"{label}-{self.segmentation}-{self.background}-m{self.m}-t{self.target}.npz"

        built: list[Evaluate] = []  # the model and grid only once a coalition is missing

        def evaluate(z: np.ndarray) -> np.ndarray:
            if not built:
                built.append(self._evaluator(image))
            return built[0](z)

        return Oracle(evaluate, self.m, path=path, fingerprint=fingerprint)

    def _evaluator(self, image: np.ndarray) -> Evaluate:
        """z -> the target's probability on `image` with the hidden superpixels showing the
        background, composed on the model's input grid as the engine does."""
        from worker.engine.evaluate import perturbed_evaluator
        from worker.engine.explain import to_output_space
        from worker.engine.input_grid import InputGrid

        model = self.model()
        grid = InputGrid(model.card, image.shape[:2])
        background = background_spec(self.background)
        raw = perturbed_evaluator(model, image, grid.image(image), grid, background, self.segments)
        target, card = self.target, model.card

        def evaluate(z: np.ndarray) -> np.ndarray:
            return to_output_space(raw(z), card, "probability")[:, target]

        return evaluate
