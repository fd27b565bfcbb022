"""core.flow.encoding: flow <-> RGB image encoding and its error bounds.

The measured round-trip table: tests/unit/test_eval_flow_encoding.py."""

import json

import numpy as np
import pytest
import torch

from core.errors import InputError
from core.flow.encoding import (
    FLOW_ENCODING_FILE,
    FlowEncoding,
    decode_flow,
    decode_flow_uint8,
    encode_flow,
    encode_flow_uint8,
    uint8_error_bound_px,
)

SCALES = (8.0, 16.0, 32.0)


def _random_flows(scale_px, shape=(3, 16, 20), seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-scale_px, scale_px, (*shape, 2)).astype(np.float32)


# --- float round trip ------------------------------------------------------------------------------


@pytest.mark.parametrize("scale_px", SCALES)
def test_float_round_trip_is_exact_to_float32_rounding_inside_the_range(scale_px):
    flows = _random_flows(scale_px)
    images = encode_flow(flows, scale_px)
    error = np.abs(decode_flow(images, scale_px) - flows).max()
    # Measured 2^-24 * scale (half a float32 step at full scale): 4.8e-7 px at 8 px, 1.9e-6 px at 32 px.
    assert error <= 2.0**-23 * scale_px
    assert images.dtype == np.float32 and images.shape == (3, 16, 20, 3)
    assert images.min() >= -1.0 and images.max() <= 1.0


def test_encoding_is_the_signed_square_root_with_a_zero_third_channel():
    flows = np.array([[[[4.0, -1.0], [0.0, 16.0], [-16.0, 0.25]]]], np.float32)
    images = encode_flow(flows, 16.0)
    expected = np.array([[[[0.5, -0.25, 0.0], [0.0, 1.0, 0.0], [-1.0, 0.125, 0.0]]]], np.float32)
    np.testing.assert_allclose(images, expected, rtol=0, atol=1e-7)


def test_encoding_is_strictly_monotonic_in_each_component():
    components = np.linspace(-8.0, 8.0, 4001, dtype=np.float32)
    coded = encode_flow(np.stack([components, -components], axis=-1), 8.0)
    assert np.all(np.diff(coded[:, 0]) > 0) and np.all(np.diff(coded[:, 1]) < 0)


def test_components_beyond_the_scale_clip_exactly_and_independently():
    flows = np.array([[[40.0, 3.0], [-17.0, -100.0], [16.0, 16.5]]], np.float32)
    decoded = decode_flow(encode_flow(flows, 16.0), 16.0)
    np.testing.assert_array_equal(decoded, [[[16.0, 3.0], [-16.0, -16.0], [16.0, 16.0]]])


def test_decode_clamps_images_outside_the_range_and_reads_nan_as_rest():
    images = np.array([[[1.5, -3.0, 0.7], [np.nan, 0.5, 9.0]]], np.float32)
    decoded = decode_flow(images, 10.0)
    np.testing.assert_array_equal(decoded, [[[10.0, -10.0], [0.0, 2.5]]])


# --- uint8 round trip ------------------------------------------------------------------------------


@pytest.mark.parametrize("scale_px", SCALES)
def test_uint8_round_trip_stays_within_the_analytic_bound_and_the_bound_is_tight(scale_px):
    components = np.linspace(-scale_px, scale_px, 50_001, dtype=np.float32)
    flows = np.stack([components, components[::-1]], axis=-1)[None]
    images_uint8 = encode_flow_uint8(flows, scale_px)
    assert images_uint8.dtype == np.uint8 and images_uint8.shape == (1, 50_001, 3)
    assert np.all(images_uint8[..., 2] == 128)  # the reserved channel is mid grey
    error = np.abs(decode_flow_uint8(images_uint8, scale_px) - flows)
    bound = uint8_error_bound_px(flows, scale_px)
    assert np.all(error <= bound)
    # Full scale: about 2 * scale / 255 (0.063 px at 8 px, 0.25 px at 32 px); reached within 1%.
    assert error.max() == pytest.approx(2 * scale_px / 255, rel=0.01)
    # Small motions get much finer steps than a linear code (scale / 255 everywhere) would give.
    small = np.abs(flows) <= 1.0
    assert error[small].max() < 0.75 * scale_px / 255


@pytest.mark.parametrize("scale_px", SCALES)
def test_uint8_zero_flow_decodes_within_a_square_step(scale_px):
    flows = np.zeros((2, 4, 4, 2), np.float32)
    decoded = decode_flow_uint8(encode_flow_uint8(flows, scale_px), scale_px)
    # 0 lands on level 127.5, rounded to 128: image value 1/255, squared.
    assert np.abs(decoded).max() == pytest.approx(scale_px / 255**2, rel=1e-4)  # float32 levels
    assert np.abs(decoded).max() <= uint8_error_bound_px(0.0, scale_px)


# --- torch ----------------------------------------------------------------------------------------


def test_torch_input_gives_torch_output_equal_to_the_numpy_path():
    flows = _random_flows(16.0, shape=(2, 8, 8))
    images_np = encode_flow(flows, 16.0)
    images_t = encode_flow(torch.from_numpy(flows), 16.0)
    assert isinstance(images_t, torch.Tensor) and images_t.dtype == torch.float32
    np.testing.assert_allclose(images_t.numpy(), images_np, rtol=0, atol=2e-7)
    decoded_t = decode_flow(images_t, 16.0)
    assert isinstance(decoded_t, torch.Tensor) and decoded_t.shape == (2, 8, 8, 2)
    assert (decoded_t.numpy() - flows).__abs__().max() <= 4e-6
    # Half-precision VAE output decodes to float32.
    assert decode_flow(images_t.half(), 16.0).dtype == torch.float32


def test_torch_input_with_nan_flow_is_refused():
    with pytest.raises(InputError, match="NaN"):
        encode_flow(torch.full((2, 2, 2), float("nan")), 4.0)


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale_px", [0, -1.0, float("inf"), float("nan"), True, "8"])
def test_bad_scale_is_refused(scale_px):
    with pytest.raises(InputError, match="scale"):
        encode_flow(np.zeros((2, 2, 2), np.float32), scale_px)


def test_bad_shapes_and_values_are_refused():
    with pytest.raises(InputError, match=r"\(...,H,W,2\)"):
        encode_flow(np.zeros((4, 4, 3), np.float32), 8.0)
    with pytest.raises(InputError, match=r"\(...,H,W,3\)"):
        decode_flow(np.zeros((4, 4, 2), np.float32), 8.0)
    with pytest.raises(InputError, match="NaN"):
        encode_flow(np.full((2, 2, 2), np.inf, np.float32), 8.0)
    with pytest.raises(InputError, match="numpy array or torch tensor"):
        encode_flow([[0.0, 0.0]], 8.0)


# --- scale record ----------------------------------------------------------------------------------


def test_flow_encoding_scales_with_width_and_round_trips_through_json(tmp_path):
    encoding = FlowEncoding.from_scale_px(16.0, 512)
    assert (
        encoding.scale_px(512) == 16.0 and encoding.scale_px(1024) == 32.0 and encoding.scale_px(256) == 8.0
    )
    path = encoding.save(tmp_path / "lora", width=512)
    assert path.name == FLOW_ENCODING_FILE
    record = json.loads(path.read_text())
    assert record == {"encoding": "signed-sqrt-v1", "scale_of_width": 0.03125, "scale_px": 16.0, "width": 512}
    assert FlowEncoding.load(tmp_path / "lora") == encoding
    assert FlowEncoding.load(path) == encoding


def test_flow_encoding_refuses_missing_or_foreign_files(tmp_path):
    with pytest.raises(InputError, match="Cannot read"):
        FlowEncoding.load(tmp_path)
    (tmp_path / FLOW_ENCODING_FILE).write_text(json.dumps({"encoding": "other", "scale_of_width": 0.1}))
    with pytest.raises(InputError, match="not a signed-sqrt-v1"):
        FlowEncoding.load(tmp_path)
    (tmp_path / FLOW_ENCODING_FILE).write_text(
        json.dumps({"encoding": "signed-sqrt-v1", "scale_of_width": -1})
    )
    with pytest.raises(InputError, match="scale_of_width"):
        FlowEncoding.load(tmp_path)
    with pytest.raises(InputError, match="width"):
        FlowEncoding.from_scale_px(8.0, 0)
