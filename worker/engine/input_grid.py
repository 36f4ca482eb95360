"""The model-input grid: the card's resize / crop / normalisation applied to images and maps."""

from __future__ import annotations

import numpy as np
from PIL import Image

from glimpse.cards import ModelCard


class InputGrid:
    """Maps original-size images and label maps onto the model's (h, w) input grid."""

    def __init__(self, card: ModelCard, image_shape: tuple[int, int]) -> None:
        self.card = card
        self.height, self.width = card.input_size
        src_h, src_w = image_shape
        self.source_shape = (int(src_h), int(src_w))
        new_w, new_h = card.resized_size(int(src_h), int(src_w))
        left = (new_w - self.width) // 2
        top = (new_h - self.height) // 2
        self.resized = (new_w, new_h)
        self.crop = (left, top, left + self.width, top + self.height)
        mean = np.asarray(card.mean, np.float32)
        std = np.asarray(card.std, np.float32)
        order = [2, 1, 0] if card.channel_order == "BGR" else [0, 1, 2]
        self._order = order
        self._mul = (card.scale / std)[order].astype(np.float32)
        self._add = (-mean / std)[order].astype(np.float32)

    def image(self, pixels: np.ndarray) -> np.ndarray:
        """(H, W, 3) float or uint8 0..255 RGB -> (3, h, w) float32, normalised as the card says."""
        stacked = np.moveaxis(self.pixels(pixels), -1, 0)[self._order]
        return stacked * self._mul[:, None, None] + self._add[:, None, None]

    def pixels(self, pixels: np.ndarray) -> np.ndarray:
        """(H, W, 3) 0..255 RGB -> (h, w, 3) float32 0..255 RGB: resized and cropped as
        `image`, not normalised."""
        planes = []
        for c in range(3):
            plane = Image.fromarray(np.ascontiguousarray(pixels[:, :, c], dtype=np.float32))
            plane = plane.resize(self.resized, Image.Resampling.BILINEAR).crop(self.crop)
            planes.append(np.asarray(plane, np.float32))
        return np.stack(planes, axis=-1)

    def labels(self, labels: np.ndarray) -> np.ndarray:
        """(H, W) int label map -> (h, w) int32, nearest neighbour, same crop as the image."""
        img = Image.fromarray(labels.astype(np.int32))
        img = img.resize(self.resized, Image.Resampling.NEAREST).crop(self.crop)
        return np.asarray(img).astype(np.int32)

    def _uncrop(self, plane: np.ndarray, *, edge: bool) -> np.ndarray:
        """(h, w) on the input grid -> (new_h, new_w) of the resized image, the crop undone:
        outside the crop, zeros (or, with `edge`, the nearest value on the crop's border)."""
        left, top, right, bottom = self.crop
        new_w, new_h = self.resized
        pad = ((top, new_h - bottom), (left, new_w - right))
        if edge:
            return np.pad(plane, pad, mode="edge")
        return np.pad(plane, pad, mode="constant")

    def map_to_original(self, values: np.ndarray) -> np.ndarray:
        """(h, w) float map on the input grid -> (H, W) float32 at the original size, bilinear;
        the parts of the image outside a center crop get 0."""
        canvas = self._uncrop(np.asarray(values, np.float32), edge=False)
        src_h, src_w = self.source_shape
        img = Image.fromarray(canvas).resize((src_w, src_h), Image.Resampling.BILINEAR)
        out = np.asarray(img, np.float32).copy()
        left, top, right, bottom = self.crop
        new_w, new_h = self.resized
        if (left, top, right, bottom) != (0, 0, new_w, new_h):
            rows = (np.arange(src_h) + 0.5) * new_h / src_h
            cols = (np.arange(src_w) + 0.5) * new_w / src_w
            inside = ((rows >= top) & (rows < bottom))[:, None] & ((cols >= left) & (cols < right))
            out[~inside] = 0.0
        return out

    def labels_to_original(self, labels: np.ndarray) -> np.ndarray:
        """(h, w) int label map on the input grid -> (H, W) int32, nearest neighbour; pixels
        outside a center crop take the nearest label inside it."""
        canvas = self._uncrop(np.asarray(labels, np.int32), edge=True)
        src_h, src_w = self.source_shape
        img = Image.fromarray(canvas).resize((src_w, src_h), Image.Resampling.NEAREST)
        return np.asarray(img).astype(np.int32)
