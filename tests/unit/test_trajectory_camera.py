"""core.trajectory.camera: CameraMotion's ramp, its exact inverse, and its checks."""

import math

import numpy as np
import pytest

from core.errors import InputError
from core.trajectory import CameraMotion

H, W = 60, 80
POINTS_PX = np.array([[0.0, 0.0], [79.0, 59.0], [10.5, 40.25], [39.5, 29.5]])


@pytest.mark.parametrize(
    "camera",
    [CameraMotion(pan_x=0.2, pan_y=-0.1), CameraMotion(zoom=0.8, rotate_deg=30), CameraMotion(1, 2, 3, 4)],
)
def test_backward_is_the_exact_inverse_of_forward_at_every_fraction(camera):
    for fraction in (0.0, 0.3, 1.0):
        moved = POINTS_PX + camera.forward(POINTS_PX, fraction, H, W)
        np.testing.assert_allclose(moved + camera.backward(moved, fraction, H, W), POINTS_PX, atol=1e-9)
    np.testing.assert_array_equal(camera.forward(POINTS_PX, 0.0, H, W), 0.0)  # frame 0 does not move


def test_the_move_ramps_linearly_in_pan_and_angle_and_geometrically_in_zoom():
    centre = np.array([(W - 1) / 2, (H - 1) / 2])
    corner = np.array([[0.0, 0.0]])
    pan = CameraMotion(pan_x=0.25, pan_y=-0.5)
    np.testing.assert_allclose(pan.forward(corner, 0.5, H, W), [[10.0, -15.0]])
    zoom = CameraMotion(zoom=4.0)
    np.testing.assert_allclose(zoom.forward(corner, 0.5, H, W), (corner - centre) * (2.0 - 1.0))
    rotate = CameraMotion(rotate_deg=180)
    # Half way is a quarter turn, clockwise on screen (y down): (x, y) - c -> (-(y - cy), x - cx).
    offset = corner[0] - centre
    np.testing.assert_allclose(
        rotate.forward(corner, 0.5, H, W)[0], [-offset[1], offset[0]] - offset, atol=1e-12
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"zoom": 0}, "Camera zoom must be positive"),
        ({"zoom": -1.5}, "Camera zoom must be positive"),
        ({"pan_x": math.nan}, "finite numbers"),
        ({"rotate_deg": math.inf}, "finite numbers"),
        ({"pan_y": "left"}, "finite numbers"),
    ],
)
def test_bad_values_are_input_errors(kwargs, match):
    with pytest.raises(InputError, match=match):
        CameraMotion(**kwargs)
