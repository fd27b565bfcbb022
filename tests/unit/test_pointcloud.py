"""core.pointcloud: the depth range mapping, back-projection onto exact synthetic geometry, PLY bytes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.data.synthetic import ImageSceneSpec, Sphere, render_image_scene
from core.errors import InputError
from core.pointcloud import (
    PointCloud,
    depth_to_point_cloud,
    disparity_to_depth,
    grid_stride,
    read_ply,
    write_ply,
)


def test_disparity_to_depth_interpolates_inverse_depth():
    disparity = np.array([[1.0, 0.0, 0.5, 0.25], [1.5, -0.5, np.nan, 0.75]], np.float32)
    depth = disparity_to_depth(disparity, near=2.0, far=8.0)
    assert depth.dtype == np.float32
    np.testing.assert_allclose(
        depth[0], [2.0, 8.0, 1 / (0.5 / 2 + 0.5 / 8), 1 / (0.25 / 2 + 0.75 / 8)], rtol=1e-6
    )
    np.testing.assert_allclose(
        depth[1, [0, 1, 3]], [2.0, 8.0, 1 / (0.75 / 2 + 0.25 / 8)], rtol=1e-6
    )  # clipped
    assert np.isnan(depth[1, 2])


@pytest.mark.parametrize("near, far", [(0.0, 1.0), (2.0, 2.0), (3.0, 1.0), (1.0, math.inf), (-1.0, 1.0)])
def test_bad_depth_range_is_refused(near, far):
    with pytest.raises(InputError, match="near < far"):
        disparity_to_depth(np.zeros((2, 2)), near=near, far=far)


@given(st.integers(1, 300), st.integers(1, 300), st.integers(1, 20_000))
def test_grid_stride_is_the_smallest_that_fits(height, width, max_points):
    stride = grid_stride(height, width, max_points)
    assert math.ceil(height / stride) * math.ceil(width / stride) <= max_points
    if stride > 1:
        assert math.ceil(height / (stride - 1)) * math.ceil(width / (stride - 1)) > max_points


def test_backprojection_lands_on_the_true_geometry():
    # One sphere on the ground in front of the back wall, camera level (no pitch), 60 degree field of view.
    sphere = Sphere(center=(0.4, 0.3, 4.0), radius=0.7, color="red")
    spec = ImageSceneSpec(objects=(sphere,), ground_y=1.0, wall_z=12.0, fov_deg=60.0, pitch_deg=0.0)
    scene = render_image_scene(spec, (48, 64))
    z = scene.depth.astype(np.float64)
    near, far = z.min(), z.max()
    disparity = (1 / z - 1 / far) / (1 / near - 1 / far)  # the exact [0,1] disparity of this range

    cloud = depth_to_point_cloud(scene.image_uint8, disparity, near=near, far=far, fov_deg=60.0)
    assert len(cloud) == 48 * 64
    p = cloud.points.astype(np.float64)
    # Surfaces in the point cloud's convention (y up, z towards the viewer): y_gl = -y, z_gl = -z.
    centre = np.array([sphere.center[0], -sphere.center[1], -sphere.center[2]])
    on_sphere = np.abs(np.linalg.norm(p - centre, axis=1) - sphere.radius)
    on_ground = np.abs(p[:, 1] + 1.0)
    on_wall = np.abs(p[:, 2] + 12.0)
    residual = np.minimum(np.minimum(on_sphere, on_ground), on_wall)
    assert residual.max() < 2e-3
    assert (on_sphere < 2e-3).sum() > 200  # the sphere covers a good part of the frame
    # Colours are the pixels' own.
    np.testing.assert_array_equal(cloud.colors_uint8, scene.image_uint8.reshape(-1, 3))


def test_subsampling_grid_and_count():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    disparity = rng.random((50, 70)).astype(np.float32)
    disparity[0, 0] = np.nan  # a hole: dropped, not drawn at the origin
    cloud = depth_to_point_cloud(image, disparity, max_points=500)
    stride = grid_stride(50, 70, 500)
    assert stride == 3
    assert len(cloud) == math.ceil(50 / 3) * math.ceil(70 / 3) - 1
    np.testing.assert_array_equal(cloud.colors_uint8, image[::3, ::3].reshape(-1, 3)[1:])
    # Depth along -z: -z of every point is its pixel's depth (the default range).
    expected_z = disparity_to_depth(disparity[::3, ::3]).reshape(-1)[1:]
    np.testing.assert_allclose(-cloud.points[:, 2], expected_z, rtol=1e-6)


def test_shape_and_parameter_checks():
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(InputError, match="must match"):
        depth_to_point_cloud(image, np.zeros((8, 9), np.float32))
    with pytest.raises(InputError, match="uint8"):
        depth_to_point_cloud(image.astype(np.float32), np.zeros((8, 8), np.float32))
    with pytest.raises(InputError, match="field of view"):
        depth_to_point_cloud(image, np.zeros((8, 8), np.float32), fov_deg=180.0)
    with pytest.raises(InputError, match="max_points"):
        depth_to_point_cloud(image, np.zeros((8, 8), np.float32), max_points=0)


def test_ply_bytes_and_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    cloud = PointCloud(
        points=rng.normal(size=(37, 3)).astype(np.float32),
        colors_uint8=rng.integers(0, 256, (37, 3), dtype=np.uint8),
    )
    path = write_ply(tmp_path / "cloud.ply", cloud)
    data = path.read_bytes()
    header, body = data.split(b"end_header\n")
    lines = header.decode("ascii").splitlines()
    assert lines[0] == "ply" and lines[1] == "format binary_little_endian 1.0"
    assert "element vertex 37" in lines
    assert lines[-6:] == [
        "property float x",
        "property float y",
        "property float z",
        "property uchar red",
        "property uchar green",
        "property uchar blue",
    ]
    assert len(body) == 37 * 15  # packed records: 3 float32 + 3 uint8
    # Parse the body independently of read_ply.
    record = np.dtype([("xyz", "<f4", 3), ("rgb", "u1", 3)])
    parsed = np.frombuffer(body, dtype=record)
    np.testing.assert_array_equal(parsed["xyz"], cloud.points)
    np.testing.assert_array_equal(parsed["rgb"], cloud.colors_uint8)

    back = read_ply(path)
    np.testing.assert_array_equal(back.points, cloud.points)
    np.testing.assert_array_equal(back.colors_uint8, cloud.colors_uint8)


def test_read_ply_refuses_other_files(tmp_path):
    cloud = PointCloud(np.zeros((4, 3), np.float32), np.zeros((4, 3), np.uint8))
    data = write_ply(tmp_path / "ok.ply", cloud).read_bytes()
    cases = {
        "truncated.ply": data[:-1],
        "ascii.ply": data.replace(b"binary_little_endian", b"ascii"),
        "image.ply": b"\x89PNG\r\n\x1a\n",
        "empty.ply": b"",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(InputError):
            read_ply(tmp_path / name)
    with pytest.raises(InputError, match=".ply"):
        write_ply(tmp_path / "cloud.obj", cloud)
