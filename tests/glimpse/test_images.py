"""Decoding uploads: formats, modes, EXIF orientation, what is refused, the pixel limit."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from glimpse.errors import PayloadTooLarge, UnsupportedImage
from glimpse.images import (
    decode_image,
    decode_segments_png,
    decode_stored,
    encode_maps,
    encode_png,
    encode_stored,
    sha256_hex,
)

LIMIT = 40_000_000


def encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def rgb_image(width: int = 24, height: int = 16) -> Image.Image:
    arr = np.zeros((height, width, 3), np.uint8)
    arr[..., 0] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
    arr[..., 1] = 128
    return Image.fromarray(arr)


@pytest.mark.parametrize(
    ("fmt", "kwargs"),
    [
        ("JPEG", {"quality": 95}),
        ("PNG", {}),
        ("WEBP", {"lossless": True}),
        ("BMP", {}),
        ("TIFF", {}),
    ],
)
def test_accepted_formats_decode_to_rgb(fmt: str, kwargs: dict) -> None:
    data = encode(rgb_image(), fmt, **kwargs)
    out = decode_image(data, max_pixels=LIMIT)
    assert out.pixels.shape == (16, 24, 3) and out.pixels.dtype == np.uint8
    assert (out.width, out.height) == (24, 16)
    assert out.format == fmt
    assert out.sha256 == sha256_hex(data)
    tolerance = 12 if fmt == "JPEG" else 0
    assert np.abs(out.pixels.astype(int) - np.asarray(rgb_image()).astype(int)).max() <= tolerance


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK", "I;16", "1"])
def test_modes_become_rgb(mode: str) -> None:
    if mode == "I;16":
        img = Image.fromarray(np.full((10, 12), 65535, np.uint16))
    else:
        img = rgb_image(12, 10).convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    out = decode_image(encode(img, fmt), max_pixels=LIMIT)
    assert out.pixels.shape == (10, 12, 3) and out.pixels.dtype == np.uint8
    if mode == "I;16":
        assert (out.pixels == 255).all()


def test_transparent_pixels_are_composed_on_white() -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:2, :, 3] = 255  # top half opaque red, bottom half fully transparent
    out = decode_image(encode(Image.fromarray(rgba), "PNG"), max_pixels=LIMIT).pixels
    assert tuple(out[0, 0]) == (255, 0, 0)
    assert tuple(out[3, 3]) == (255, 255, 255)


def test_exif_orientation_is_applied() -> None:
    img = rgb_image(30, 10)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    out = decode_image(encode(img, "JPEG", exif=exif.tobytes()), max_pixels=LIMIT)
    assert (out.width, out.height) == (10, 30)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"this is not an image at all",
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 20,
        encode(rgb_image(), "GIF"),
        encode(rgb_image(), "PNG")[:60],  # truncated
    ],
)
def test_refused_inputs_are_unsupported_image(data: bytes) -> None:
    with pytest.raises(UnsupportedImage) as info:
        decode_image(data, max_pixels=LIMIT)
    assert info.value.status == 415


def png_header_only(width: int, height: int) -> bytes:
    """A PNG signature and an IHDR that declares width x height, and no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr
    chunk += struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    end = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND") & 0xFFFFFFFF)
    return b"\x89PNG\r\n\x1a\n" + chunk + end


@pytest.mark.parametrize(("width", "height"), [(7000, 7000), (10_000, 10_000), (100_000, 100_000)])
def test_a_huge_declared_size_is_payload_too_large_without_decoding(
    width: int, height: int
) -> None:
    data = png_header_only(width, height)
    assert len(data) < 100
    with pytest.raises(PayloadTooLarge) as info:
        decode_image(data, max_pixels=LIMIT)
    assert info.value.status == 413


def test_the_pixel_limit_is_the_callers() -> None:
    data = encode(rgb_image(24, 16), "PNG")
    with pytest.raises(PayloadTooLarge, match="384 pixels"):
        decode_image(data, max_pixels=383)
    assert decode_image(data, max_pixels=384).pixels.shape == (16, 24, 3)


def test_segment_pngs_round_trip_16_bit_ids() -> None:
    ids = np.arange(40 * 30, dtype=np.uint16).reshape(40, 30) * 50
    data = encode_png(ids)
    with Image.open(io.BytesIO(data)) as img:
        assert img.mode.startswith("I")
    np.testing.assert_array_equal(decode_segments_png(data), ids.astype(np.int32))


def test_encode_png_of_rgb() -> None:
    arr = np.asarray(rgb_image())
    with Image.open(io.BytesIO(encode_png(arr))) as img:
        np.testing.assert_array_equal(np.asarray(img.convert("RGB")), arr)


def jpeg_with_exif_block(block: bytes) -> bytes:
    jpeg = encode(rgb_image(30, 10), "JPEG")
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(block) + 2) + block + jpeg[2:]


@pytest.mark.parametrize(
    "ifd",
    [
        struct.pack("<I", 0xFFFFFFF0),  # the first IFD far past the end
        struct.pack("<I", 8) + struct.pack("<H", 1) + struct.pack("<HHII", 0x0112, 3, 1000, 99),
        struct.pack("<I", 8) + struct.pack("<H", 0xFFFF),  # 65535 entries, none there
    ],
    ids=["ifd-out-of-file", "orientation-out-of-file", "too-many-entries"],
)
def test_a_corrupt_exif_block_is_ignored_not_warned_about(ifd: bytes) -> None:
    """Pillow warns and skips the tags; the pixels decode, unrotated (pytest: warnings are
    errors, so a warning escaping decode_image fails here)."""
    out = decode_image(jpeg_with_exif_block(b"Exif\x00\x00II*\x00" + ifd), max_pixels=LIMIT)
    assert (out.width, out.height) == (30, 10)


def test_a_tiff_whose_next_page_is_garbage_is_unsupported_not_a_crash() -> None:
    """Pillow raises TypeError ("Missing dimensions") counting the pages: found by fuzzing."""
    data = bytearray(encode(rgb_image(), "TIFF"))
    ifd = struct.unpack("<I", data[4:8])[0]
    at = ifd + 2 + 12 * struct.unpack("<H", data[ifd : ifd + 2])[0]
    data[at : at + 4] = struct.pack("<I", 0xFFFFFF)
    with pytest.raises(UnsupportedImage, match="Missing dimensions"):
        decode_image(bytes(data), max_pixels=LIMIT)


def test_reasons_name_the_limit_and_no_object_addresses() -> None:
    with pytest.raises(PayloadTooLarge, match=r"\(10000000000 pixels\); the limit is 40000000"):
        decode_image(png_header_only(100_000, 100_000), max_pixels=LIMIT)
    with pytest.raises(UnsupportedImage) as info:
        decode_image(b"\x89PNG\r\n\x1a\n" + b"<html>" * 10, max_pixels=LIMIT)
    assert "accepted format" in info.value.detail and " at 0x" not in info.value.detail


def test_stored_maps_keep_the_old_format_and_add_a_comparison() -> None:
    maps = np.random.default_rng(0).normal(size=(2, 5, 7)).astype(np.float32)
    compare = np.random.default_rng(1).normal(size=(3, 2, 4, 6))
    alone = encode_stored(maps, None)
    assert alone == encode_maps(maps)  # what jobs stored before comparisons existed
    found, none = decode_stored(alone)
    assert none is None and found is not None
    np.testing.assert_array_equal(found, maps)
    both, kept = decode_stored(encode_stored(maps, compare))
    assert both is not None and kept is not None and kept.dtype == np.float32
    np.testing.assert_array_equal(both, maps)
    np.testing.assert_allclose(kept, compare.astype(np.float16), rtol=0, atol=0)
    only, kept = decode_stored(encode_stored(None, compare))
    assert only is None and kept is not None and kept.shape == (3, 2, 4, 6)
    assert encode_stored(None, None) is None and decode_stored(None) == (None, None)
