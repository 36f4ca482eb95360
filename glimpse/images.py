"""Decoding uploads into RGB arrays, with the limits checked before the pixels are decoded."""

from __future__ import annotations

import hashlib
import io
import re
import warnings
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from glimpse.errors import PayloadTooLarge, UnsupportedImage

ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "BMP", "TIFF", "MPO"})


@dataclass(frozen=True)
class DecodedImage:
    pixels: np.ndarray  # (H, W, 3) uint8 RGB, EXIF orientation applied
    format: str
    sha256: str

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode_image(data: bytes, *, max_pixels: int) -> DecodedImage:
    """Bytes of a JPEG/PNG/WebP/BMP/TIFF file -> RGB uint8.

    Raises UnsupportedImage (415) for anything that is not a single decodable still image of
    an accepted format, PayloadTooLarge (413) when its header declares more than `max_pixels`.
    Broken metadata (a corrupt EXIF block) is dropped, not refused: the pixels are what count.
    """
    if not data:
        raise UnsupportedImage("the image is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Pillow warns (UserWarning) about corrupt EXIF/TIFF tags and skips them.
            warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = img.format or "unknown"
            if fmt not in ACCEPTED_FORMATS:
                raise UnsupportedImage(
                    f"image format {fmt} is not accepted; send JPEG, PNG, WebP, BMP or TIFF"
                )
            width, height = img.size
            if width < 1 or height < 1:
                raise UnsupportedImage(f"image has no pixels ({width}x{height})")
            if width * height > max_pixels:
                raise PayloadTooLarge(
                    f"image is {width}x{height} = {width * height} pixels; "
                    f"the limit is {max_pixels}"
                )
            if getattr(img, "n_frames", 1) > 1 and fmt != "MPO":
                raise UnsupportedImage("animated or multi-frame images are not accepted")
            img.load()
            rgb = _to_rgb(ImageOps.exif_transpose(img) or img)
    except (UnsupportedImage, PayloadTooLarge, MemoryError):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PayloadTooLarge(
            f"the image declares too many pixels ({_declared(exc)}); the limit is {max_pixels}"
        ) from None
    except UnidentifiedImageError:
        raise UnsupportedImage(
            "not an image of an accepted format: the bytes start with no JPEG, PNG, WebP, BMP "
            "or TIFF signature, or its header is broken"
        ) from None
    except Exception as exc:
        # Crafted files make Pillow's plugins raise OSError, SyntaxError, ValueError, EOFError,
        # and also TypeError (a TIFF page without dimensions), KeyError, IndexError,
        # struct.error…: whatever the decoder raises on a file, the file is not decodable.
        raise UnsupportedImage(f"not a decodable image: {_reason(exc)}") from None
    return DecodedImage(pixels=rgb, format=fmt, sha256=sha256_hex(data))


def _declared(exc: Exception) -> str:
    """The size in Pillow's message ("Image size (N pixels) exceeds limit …"): "N pixels"."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    return f"{found.group(1)} pixels" if found else "over Pillow's limit"


def _reason(exc: Exception) -> str:
    """The decoder's message, without object addresses (`<_io.BytesIO object at 0x…>`)."""
    text = re.sub(r"\s*<[^>]* at 0x[0-9a-f]+>", "", str(exc)).strip()
    return text or type(exc).__name__


def _to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode in {"I;16", "I;16B", "I;16L", "I;16N", "I"}:
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if arr.max(initial=0) > 255 else 255.0
        gray = np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        gray = (
            np.zeros(arr.shape, np.uint8)
            if hi <= lo
            else ((arr - lo) / (hi - lo) * 255).astype(np.uint8)
        )
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode in {"RGBA", "LA", "PA"} or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))


def encode_png(pixels: np.ndarray) -> bytes:
    """(H, W, 3) uint8 or (H, W) uint16 -> PNG bytes."""
    buf = io.BytesIO()
    if pixels.ndim == 2 and pixels.dtype == np.uint16:
        Image.fromarray(pixels, mode=None).save(buf, format="PNG")
    else:
        Image.fromarray(np.ascontiguousarray(pixels)).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def decode_segments_png(data: bytes) -> np.ndarray:
    """16-bit segment PNG -> (H, W) int32 label map."""
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img).astype(np.int32)


def encode_maps(maps: np.ndarray) -> bytes:
    """(K, H, W) float maps -> zlib-compressed .npy bytes of the float32 array."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(maps, np.float32), allow_pickle=False)
    return zlib.compress(buf.getvalue(), 6)


def decode_maps(data: bytes) -> np.ndarray:
    """The inverse of encode_maps."""
    return np.load(io.BytesIO(zlib.decompress(data)), allow_pickle=False)


def encode_stored(maps: np.ndarray | None, comparison: np.ndarray | None) -> bytes | None:
    """A job's stored maps: the method's own per-pixel maps (K, H, W) and, for a comparison,
    every method's maps (M, K, h, w), kept as float16 for the figure. Without a comparison,
    encode_maps' bytes (as jobs stored before comparisons existed); with one, a compressed
    .npz of `compare` and, where there are any, `maps`."""
    if comparison is None:
        return None if maps is None else encode_maps(maps)
    arrays = {"compare": np.ascontiguousarray(comparison, np.float16)}
    if maps is not None:
        arrays["maps"] = np.ascontiguousarray(maps, np.float32)
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **arrays)
    return zlib.compress(buf.getvalue(), 6)


def decode_stored(data: bytes | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The inverse of encode_stored: (maps or None, comparison maps or None)."""
    if data is None:
        return None, None
    raw = zlib.decompress(data)
    if not raw.startswith(b"PK"):  # a .npy: the method's own maps alone
        return np.load(io.BytesIO(raw), allow_pickle=False), None
    with np.load(io.BytesIO(raw), allow_pickle=False) as found:
        maps = np.asarray(found["maps"]) if "maps" in found.files else None
        return maps, np.asarray(found["compare"], np.float32)
