"""core.imaging: exact range round trips, clipping, layouts, resize plans, colour maps, loading."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from core.errors import InputError
from core.imaging import (
    ResizeInfo,
    apply_resize,
    colorize_depth,
    colorize_flow_magnitude,
    from_signed,
    from_unit,
    load_image,
    load_png16,
    plan_resize,
    resize_to_multiple,
    save_png16,
    signed_to_uint8,
    signed_to_unit,
    to_numpy_hwc,
    to_signed,
    to_tensor_chw,
    to_unit,
    uint8_to_signed,
    uint8_to_unit,
    undo_resize,
    unit_to_signed,
    unit_to_uint8,
)

ALL_UINT8 = np.arange(256, dtype=np.uint8)
uint8_arrays = hnp.arrays(np.uint8, hnp.array_shapes(min_dims=1, max_dims=4, max_side=6))
# Any float32 value, including far out of range, +-inf and NaN.
wild_floats = hnp.arrays(
    np.float32,
    hnp.array_shapes(min_dims=1, max_dims=3, max_side=8),
    elements=st.floats(allow_nan=True, allow_infinity=True, width=32),
)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _smooth_image(height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = [128 + 100 * np.sin(xx / 17.0), 128 + 100 * np.cos(yy / 23.0), (xx + yy) * 255.0 / (height + width)]
    return np.clip(np.stack(rgb, axis=-1), 0, 255).astype(np.uint8)


# -- value ranges ------------------------------------------------------------------------------------


@pytest.mark.parametrize("as_tensor", [False, True])
def test_every_uint8_value_round_trips_exactly(as_tensor: bool) -> None:
    values = torch.from_numpy(ALL_UINT8) if as_tensor else ALL_UINT8
    for there, back in ((uint8_to_unit, unit_to_uint8), (uint8_to_signed, signed_to_uint8)):
        restored = back(there(values))
        assert restored.dtype == values.dtype
        np.testing.assert_array_equal(np.asarray(restored), ALL_UINT8)


def test_uint8_conversions_hit_the_range_ends_exactly() -> None:
    assert uint8_to_unit(ALL_UINT8).dtype == np.float32
    assert uint8_to_unit(ALL_UINT8)[[0, -1]].tolist() == [0.0, 1.0]
    assert uint8_to_signed(ALL_UINT8)[[0, -1]].tolist() == [-1.0, 1.0]
    np.testing.assert_allclose(uint8_to_signed(ALL_UINT8), ALL_UINT8 / 127.5 - 1, atol=1e-6)


@FAST
@given(uint8_arrays)
def test_uint8_round_trips_are_identities_for_any_shape(pixels: np.ndarray) -> None:
    np.testing.assert_array_equal(unit_to_uint8(uint8_to_unit(pixels)), pixels)
    np.testing.assert_array_equal(signed_to_uint8(uint8_to_signed(pixels)), pixels)
    np.testing.assert_array_equal(from_signed(to_signed(pixels)) if pixels.ndim in (3, 4) else pixels, pixels)


@FAST
@given(wild_floats)
def test_float_conversions_stay_in_range_and_clip_out_of_range_input(values: np.ndarray) -> None:
    clipped_unit = np.clip(np.nan_to_num(values, nan=0.0), 0, 1)
    clipped_signed = np.clip(np.nan_to_num(values, nan=-1.0), -1, 1)

    signed = unit_to_signed(values)
    unit = signed_to_unit(values)
    assert signed.dtype == np.float32 and unit.dtype == np.float32
    assert signed.min() >= -1.0 and signed.max() <= 1.0
    assert unit.min() >= 0.0 and unit.max() <= 1.0
    np.testing.assert_allclose(signed, clipped_unit * 2 - 1, atol=1e-6)
    np.testing.assert_allclose(unit, (clipped_signed + 1) / 2, atol=1e-6)
    np.testing.assert_array_equal(unit_to_uint8(values), np.rint(clipped_unit * 255).astype(np.uint8))
    np.testing.assert_array_equal(
        signed_to_uint8(values), np.rint((clipped_signed + 1) * 127.5).astype(np.uint8)
    )

    # torch gives the same numbers as numpy.
    tensor = torch.from_numpy(values)
    np.testing.assert_array_equal(unit_to_signed(tensor).numpy(), signed)
    np.testing.assert_array_equal(signed_to_unit(tensor).numpy(), unit)
    np.testing.assert_array_equal(unit_to_uint8(tensor).numpy(), unit_to_uint8(values))
    np.testing.assert_array_equal(signed_to_uint8(tensor).numpy(), signed_to_uint8(values))


def test_float_dtype_is_kept_and_ints_become_float32() -> None:
    half = torch.tensor([0.0, 0.25, 1.0], dtype=torch.float16)
    assert unit_to_signed(half).dtype == torch.float16
    assert unit_to_signed(half).tolist() == [-1.0, -0.5, 1.0]
    assert signed_to_unit(np.array([-1.0, 0.0], np.float64)).dtype == np.float64
    assert unit_to_signed(np.array([0, 1], np.int64)).dtype == np.float32


def test_uint8_only_functions_reject_float_input() -> None:
    with pytest.raises(InputError, match="uint8"):
        uint8_to_unit(np.zeros(3, np.float32))
    with pytest.raises(InputError, match="uint8"):
        uint8_to_signed(torch.zeros(3))


# -- layouts -----------------------------------------------------------------------------------------


def test_layout_conversion_moves_channels_and_keeps_values() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    frames = rng.integers(0, 256, (4, 5, 7, 3), dtype=np.uint8)

    chw = to_tensor_chw(image)
    assert chw.shape == (3, 5, 7) and chw.dtype == torch.uint8 and chw.is_contiguous()
    assert chw[2, 4, 6] == image[4, 6, 2]
    tchw = to_tensor_chw(frames)
    assert tchw.shape == (4, 3, 5, 7) and tchw[3, 1, 2, 5] == frames[3, 2, 5, 1]
    np.testing.assert_array_equal(to_numpy_hwc(chw), image)
    np.testing.assert_array_equal(to_numpy_hwc(tchw), frames)
    # Non-contiguous numpy input (a flipped view) works too.
    np.testing.assert_array_equal(to_numpy_hwc(to_tensor_chw(image[:, ::-1])), image[:, ::-1])


def test_signed_and_unit_tensors_have_the_documented_range_and_layout() -> None:
    frames = np.zeros((2, 4, 6, 3), np.uint8)
    frames[1, ..., 0] = 255
    signed = to_signed(frames)
    unit = to_unit(frames, dtype=torch.float16)
    assert signed.shape == (2, 3, 4, 6) and signed.dtype == torch.float32
    assert unit.dtype == torch.float16
    assert signed[0].unique().tolist() == [-1.0] and signed[1, 0].unique().tolist() == [1.0]
    assert unit[1, 0].unique().tolist() == [1.0] and unit[1, 1].unique().tolist() == [0.0]
    np.testing.assert_array_equal(from_unit(unit), frames)
    bf16 = to_unit(frames, dtype=torch.bfloat16)
    np.testing.assert_array_equal(from_unit(bf16), frames)


def test_layout_conversion_rejects_wrong_rank() -> None:
    with pytest.raises(InputError, match="shape"):
        to_tensor_chw(np.zeros((4, 4), np.uint8))
    with pytest.raises(InputError, match="shape"):
        to_numpy_hwc(torch.zeros(2, 2))


# -- resize plans ------------------------------------------------------------------------------------

sides = st.integers(1, 5000)
multiples = st.sampled_from([8, 16, 32, 64])
caps = st.one_of(st.none(), st.integers(64, 2048))


@settings(max_examples=400, deadline=None)
@given(sides, sides, multiples, caps)
def test_crop_plan_is_divisible_capped_and_keeps_aspect(height, width, multiple, max_side) -> None:
    info = plan_resize(height, width, multiple=multiple, max_side=max_side, mode="crop")
    out_h, out_w = info.output_hw
    assert out_h % multiple == 0 and out_w % multiple == 0
    assert out_h >= multiple and out_w >= multiple
    cap = None if max_side is None else max_side // multiple * multiple
    if cap is not None:
        assert max(out_h, out_w) <= cap
    scale = 1.0 if cap is None else min(1.0, cap / max(height, width))
    # Aspect kept within one multiple on each side.
    assert abs(out_h - height * scale) <= multiple
    assert abs(out_w - width * scale) <= multiple
    # The crop box lies in the source, spans one full side, and has the output aspect to a pixel.
    top, left, crop_h, crop_w = info.crop_box
    assert 0 <= top and 0 <= left and top + crop_h <= height and left + crop_w <= width
    assert crop_h == height or crop_w == width
    assert abs(crop_w * out_h - crop_h * out_w) <= 0.5 * max(out_h, out_w) + 1e-9
    assert info.padding == (0, 0, 0, 0)


@settings(max_examples=400, deadline=None)
@given(sides, sides, multiples, caps)
def test_pad_plan_is_divisible_capped_and_keeps_exact_aspect(height, width, multiple, max_side) -> None:
    info = plan_resize(height, width, multiple=multiple, max_side=max_side, mode="pad")
    out_h, out_w = info.output_hw
    assert out_h % multiple == 0 and out_w % multiple == 0
    cap = None if max_side is None else max_side // multiple * multiple
    if cap is not None:
        assert max(out_h, out_w) <= cap
    scale = 1.0 if cap is None else min(1.0, cap / max(height, width))
    scaled_h, scaled_w = info.scaled_hw
    assert abs(scaled_h - height * scale) <= 0.5 + 1e-9 or scaled_h == 1
    assert abs(scaled_w - width * scale) <= 0.5 + 1e-9 or scaled_w == 1
    top, bottom, left, right = info.padding
    assert 0 <= top <= bottom <= top + 1 and 0 <= left <= right <= left + 1  # centred
    assert top + bottom < multiple and left + right < multiple
    assert info.crop_box == (0, 0, height, width)


@FAST
@given(
    hnp.arrays(np.uint8, st.tuples(st.integers(1, 90), st.integers(1, 90), st.sampled_from([1, 3, 4]))),
    st.sampled_from([8, 16, 64]),
    st.sampled_from(["edge", "constant"]),
)
def test_pad_round_trip_recovers_the_original_exactly(image, multiple, pad_mode) -> None:
    padded, info = resize_to_multiple(image, multiple=multiple, mode="pad", pad_mode=pad_mode, pad_value=7)
    assert padded.shape[0] % multiple == 0 and padded.shape[1] % multiple == 0
    assert padded.shape[2:] == image.shape[2:] and padded.dtype == np.uint8
    np.testing.assert_array_equal(undo_resize(padded, info), image)
    top, bottom, _, _ = info.padding
    if top:
        expected = image[0] if pad_mode == "edge" else np.full_like(image[0], 7)
        np.testing.assert_array_equal(padded[0, info.padding[2] : info.padding[2] + image.shape[1]], expected)


@FAST
@given(st.integers(1, 300), st.integers(1, 300), st.sampled_from(["crop", "pad"]), st.sampled_from([16, 64]))
def test_resized_images_have_the_planned_divisible_shape(height, width, mode, multiple) -> None:
    image = np.full((height, width, 3), 200, np.uint8)
    resized, info = resize_to_multiple(image, multiple=multiple, max_side=128, mode=mode)
    assert resized.shape == (*info.output_hw, 3)
    assert resized.shape[0] % multiple == 0 and resized.shape[1] % multiple == 0
    assert max(resized.shape[:2]) <= 128
    # A flat image stays flat: no ringing, no padding colour.
    assert resized.min() == 200 and resized.max() == 200


def test_downscale_numbers_for_a_portrait_photo() -> None:
    crop = plan_resize(1000, 600, max_side=512, mode="crop")
    assert crop == ResizeInfo((1000, 600), (20, 0, 960, 600), (512, 320), (0, 0, 0, 0))
    pad = plan_resize(1000, 600, max_side=512, mode="pad")
    assert pad == ResizeInfo((1000, 600), (0, 0, 1000, 600), (512, 307), (0, 0, 6, 7))
    assert pad.output_hw == (512, 320)
    # The SVD landscape size comes out exactly from a 16:9 source.
    assert plan_resize(1080, 1920, max_side=1024).output_hw == (576, 1024)


def test_crop_mode_cuts_the_centre_without_resampling_when_sizes_match() -> None:
    image = _smooth_image(128, 200)
    cropped, info = resize_to_multiple(image, mode="crop")
    assert info.crop_box == (0, 4, 128, 192)
    np.testing.assert_array_equal(cropped, image[:, 4:196])


def test_downscaled_pad_undo_is_close_and_frames_match_single_images() -> None:
    image = _smooth_image(300, 500)
    padded, info = resize_to_multiple(image, max_side=256, mode="pad")
    restored = undo_resize(padded, info)
    assert restored.shape == image.shape
    error = np.abs(restored.astype(np.float32) - image).mean()
    assert error < 0.5, error  # measured 0.16: smooth content survives 2x down + up

    frames = np.stack([image, image[::-1]])
    resized_frames, frame_info = resize_to_multiple(frames, max_side=256, mode="crop")
    assert resized_frames.shape == (2, *frame_info.output_hw, 3)
    for frame, resized in zip(frames, resized_frames):
        np.testing.assert_array_equal(resize_to_multiple(frame, max_side=256, mode="crop")[0], resized)


def test_float_maps_resize_without_leaving_their_range() -> None:
    depth = np.random.default_rng(1).random((37, 53)).astype(np.float32)
    for mode in ("crop", "pad"):
        resized, _ = resize_to_multiple(depth, multiple=64, mode=mode)
        assert resized.dtype == np.float32 and resized.shape == (64, 64)
        assert resized.min() >= depth.min() and resized.max() <= depth.max()


def test_resize_rejects_bad_arguments() -> None:
    with pytest.raises(InputError, match="at least"):
        plan_resize(100, 100, multiple=64, max_side=32)
    with pytest.raises(InputError, match="empty"):
        resize_to_multiple(np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(InputError, match="'crop' or 'pad'"):
        plan_resize(10, 10, mode="stretch")
    info = plan_resize(100, 100)
    with pytest.raises(InputError, match="planned"):
        apply_resize(np.zeros((50, 50, 3), np.uint8), info)
    with pytest.raises(InputError, match="produced"):
        undo_resize(np.zeros((50, 50, 3), np.uint8), info)


# -- colour maps -------------------------------------------------------------------------------------


def _ramp(height: int = 20, width: int = 100) -> np.ndarray:
    """Depth in metres growing left to right: the left column is nearest."""
    return np.tile(np.linspace(1.0, 10.0, width, dtype=np.float32), (height, 1))


def test_depth_near_is_warm_and_far_is_cold_with_turbo() -> None:
    rgb = colorize_depth(_ramp()).astype(int)
    assert rgb.shape == (20, 100, 3)
    near, far = rgb[0, 0], rgb[0, -1]
    assert near[0] > near[2] + 50, near  # red dominates
    assert far.sum() < 150, far  # turbo's far end is dark
    assert rgb[0, 75, 2] > rgb[0, 75, 0] + 50, rgb[0, 75]  # farther: blue dominates
    # disparity=True reads larger values as nearer, so the colours flip.
    flipped = colorize_depth(_ramp(), disparity=True)
    np.testing.assert_array_equal(flipped[:, ::-1], colorize_depth(_ramp()))


def test_depth_brightness_rises_with_nearness_for_inferno_and_gray() -> None:
    inferno = colorize_depth(_ramp(), colormap="inferno")[0].astype(int).sum(axis=1)
    assert np.all(np.diff(inferno) <= 0)  # left (near) brightest, darkening to the right
    assert inferno[0] - inferno[-1] > 500
    gray = colorize_depth(_ramp(), colormap="gray", percentiles=(0, 100))
    assert gray[0, 0].tolist() == [255, 255, 255] and gray[0, -1].tolist() == [0, 0, 0]


def test_depth_percentiles_ignore_outliers_and_invalid_pixels_are_black() -> None:
    depth = _ramp()
    clean = colorize_depth(depth)
    spoiled = depth.copy()
    spoiled[5, 50] = 1e6
    spoiled[6, 50] = np.nan
    spoiled_rgb = colorize_depth(spoiled)
    keep = np.ones(depth.shape, bool)
    keep[5:7, 50] = False
    assert np.abs(spoiled_rgb[keep].astype(int) - clean[keep]).mean() < 4.0  # measured 2.5
    assert spoiled_rgb[6, 50].tolist() == [0, 0, 0]
    # Without percentiles the single outlier would squash the whole ramp into one colour.
    squashed = colorize_depth(spoiled, percentiles=(0, 100))
    assert np.abs(squashed[keep].astype(int) - clean[keep]).mean() > 30

    mask = np.ones(depth.shape, bool)
    mask[:, :10] = False
    masked = colorize_depth(torch.from_numpy(depth), valid_mask=mask)
    assert masked[:, :10].max() == 0 and masked[:, 10:].max() > 0


def test_depth_edge_cases_do_not_crash() -> None:
    flat = colorize_depth(np.full((4, 4), 3.0, np.float32))
    assert len(np.unique(flat.reshape(-1, 3), axis=0)) == 1
    assert colorize_depth(np.full((4, 4), np.nan, np.float32)).max() == 0
    with pytest.raises(InputError, match=r"\(H,W\)"):
        colorize_depth(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(InputError, match="Colour map"):
        colorize_depth(_ramp(), colormap="jet")


def test_flow_magnitude_colours() -> None:
    flow = np.zeros((20, 10, 2), np.float32)
    flow[:, 5:, 0] = 3.0
    flow[:, 5:, 1] = 4.0  # magnitude 5
    flow[0, 9] = [30.0, 40.0]  # magnitude 50 (one pixel in 200), clipped to the top colour
    rgb = colorize_flow_magnitude(flow, max_magnitude=5.0)
    inferno_ends = cv2.applyColorMap(np.array([[0, 255]], np.uint8), cv2.COLORMAP_INFERNO)[0, :, ::-1]
    assert rgb[0, 0].tolist() == inferno_ends[0].tolist()
    assert rgb[0, 6].tolist() == inferno_ends[1].tolist() == rgb[0, 9].tolist()
    half = colorize_flow_magnitude(flow, max_magnitude=10.0)
    assert 0 < half[0, 6].astype(int).sum() < rgb[0, 6].astype(int).sum()
    # Default scale: the 99th percentile, so the one fast outlier does not darken the rest.
    np.testing.assert_array_equal(colorize_flow_magnitude(torch.from_numpy(flow))[:, :9], rgb[:, :9])
    assert colorize_flow_magnitude(np.zeros((3, 3, 2), np.float32)).max() == inferno_ends[0].max()
    with pytest.raises(InputError, match=r"\(H,W,2\)"):
        colorize_flow_magnitude(np.zeros((3, 3, 3), np.float32))


# -- loading -----------------------------------------------------------------------------------------


def _png_bytes(image: Image.Image, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **params)
    return buffer.getvalue()


def test_load_image_converts_modes_to_rgb_uint8(tmp_path) -> None:
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:2, ..., 3] = 255  # top half opaque red-ish, bottom half fully transparent
    loaded = load_image(_png_bytes(Image.fromarray(rgba, "RGBA")))
    assert loaded.shape == (4, 5, 3) and loaded.dtype == np.uint8
    assert loaded[0, 0].tolist() == [200, 0, 0] and loaded[3, 0].tolist() == [255, 255, 255]

    grey = np.arange(20, dtype=np.uint8).reshape(4, 5) * 10
    loaded_grey = load_image(_png_bytes(Image.fromarray(grey, "L")))
    np.testing.assert_array_equal(loaded_grey, np.repeat(grey[..., None], 3, axis=2))

    grey16 = (np.arange(20, dtype=np.uint16).reshape(4, 5) * 13) * 257  # exact multiples of 257
    path = tmp_path / "grey16.png"
    assert cv2.imwrite(str(path), grey16)
    np.testing.assert_array_equal(load_image(path)[..., 0], (grey16 // 257).astype(np.uint8))

    palette = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), "P")
    palette.putpalette([10, 20, 30, 40, 50, 60])
    assert load_image(_png_bytes(palette))[0, 1].tolist() == [40, 50, 60]


def test_load_image_applies_exif_orientation() -> None:
    pixels = _smooth_image(6, 10)
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    loaded = load_image(_png_bytes(image, exif=exif))
    np.testing.assert_array_equal(loaded, np.rot90(pixels, k=-1))


def test_load_image_accepts_paths_and_bytes_alike(tmp_path) -> None:
    pixels = _smooth_image(9, 7)
    data = _png_bytes(Image.fromarray(pixels))
    path = tmp_path / "image.png"
    path.write_bytes(data)
    np.testing.assert_array_equal(load_image(path), pixels)
    np.testing.assert_array_equal(load_image(str(path)), pixels)
    np.testing.assert_array_equal(load_image(data), pixels)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a size in its header but carries almost no pixel data."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 10))


def test_oversized_images_are_refused_from_the_header() -> None:
    # 9000x9000 would need 243 MB decoded; the header check refuses it without decoding.
    with pytest.raises(InputError, match="largest side allowed is 8192"):
        load_image(_png_header_only(9000, 9000))
    with pytest.raises(InputError, match="largest side allowed is 100"):
        load_image(_png_bytes(Image.new("RGB", (101, 5))), max_side=100)
    assert load_image(_png_bytes(Image.new("RGB", (100, 5))), max_side=100).shape == (5, 100, 3)


def test_missing_empty_and_corrupt_images_raise_input_error(tmp_path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        load_image(empty)
    with pytest.raises(InputError, match="empty"):
        load_image(b"")
    with pytest.raises(InputError, match="does not exist"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(InputError, match="not a readable image"):
        load_image(b"this is not an image at all")
    complete = _png_bytes(Image.fromarray(_smooth_image(64, 64)))
    truncated = complete[: len(complete) // 2]
    with pytest.raises(InputError, match="corrupt or truncated"):
        load_image(truncated)


def _encoded_samples() -> list[bytes]:
    pixels = _smooth_image(24, 32)
    samples = []
    for fmt in ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF"):
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format=fmt)
        samples.append(buffer.getvalue())
    return samples


ENCODED = _encoded_samples()


@pytest.mark.filterwarnings("ignore::UserWarning")  # PIL's TIFF reader warns about broken tags
@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(range(len(ENCODED))),
    st.floats(0.0, 1.0),
    st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 255)), max_size=4),
)
def test_damaged_files_give_an_image_or_input_error_never_another_exception(which, keep, flips) -> None:
    data = bytearray(ENCODED[which][: max(1, int(len(ENCODED[which]) * keep))])
    for position, value in flips:
        data[int(position * (len(data) - 1))] = value
    try:
        image = load_image(bytes(data))
    except InputError:
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


# -- 16-bit depth PNGs -------------------------------------------------------------------------------


def test_png16_round_trip_is_within_half_a_step(tmp_path) -> None:
    depth = np.random.default_rng(2).random((31, 47))
    path = save_png16(tmp_path / "depth.png", depth.astype(np.float32))
    stored = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert stored.dtype == np.uint16 and stored.shape == (31, 47)
    loaded = load_png16(path)
    assert loaded.dtype == np.float32 and loaded.shape == depth.shape
    assert np.abs(loaded - depth).max() <= 0.5 / 65535 + 1e-7
    np.testing.assert_array_equal(load_png16(path.read_bytes()), loaded)


def test_png16_clips_out_of_range_values_and_nan(tmp_path) -> None:
    depth = torch.tensor([[-0.5, 0.0, 1.0, 7.0, float("nan")]])
    loaded = load_png16(save_png16(tmp_path / "d.png", depth))
    assert loaded.tolist() == [[0.0, 0.0, 1.0, 1.0, 0.0]]


def test_png16_reads_8_bit_grey_and_refuses_colour(tmp_path) -> None:
    grey = np.array([[0, 51, 255]], np.uint8)
    assert cv2.imwrite(str(tmp_path / "grey.png"), grey)
    np.testing.assert_allclose(load_png16(tmp_path / "grey.png"), [[0.0, 0.2, 1.0]], atol=1e-7)
    as_rgb = np.repeat(grey[..., None], 3, axis=2)
    assert cv2.imwrite(str(tmp_path / "grey_rgb.png"), as_rgb)
    np.testing.assert_allclose(load_png16(tmp_path / "grey_rgb.png"), [[0.0, 0.2, 1.0]], atol=1e-7)
    assert cv2.imwrite(str(tmp_path / "colour.png"), colorize_depth(_ramp()))
    with pytest.raises(InputError, match="colour"):
        load_png16(tmp_path / "colour.png")
    with pytest.raises(InputError, match=".png"):
        save_png16(tmp_path / "depth.jpg", np.zeros((2, 2)))
    with pytest.raises(InputError, match="not a readable image"):
        load_png16(b"garbage")
