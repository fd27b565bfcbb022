"""User trajectories: the data model, the drawing canvas's data, flow maps and camera moves.

- `core.trajectory.model`: `Trajectory`, `Trajectories` (normalised coordinates, resampling to frames,
  the JSON file), `from_clicks`.
- `core.trajectory.canvas`: streamlit-drawable-canvas / Fabric objects <-> trajectories (reading,
  writing, motion-brush strokes).
- `core.trajectory.flow`: sparse and dense flow maps of resampled tracks (`tracks_to_px`).
- `core.trajectory.camera`: `CameraMotion`.

The names below are the package's API; the canvas module's object-level helpers are imported from it.
"""

from core.trajectory.camera import CameraMotion
from core.trajectory.canvas import from_canvas_json
from core.trajectory.flow import (
    backward_flow,
    dense_displacement,
    sparse_flow,
    sparse_flow_mask,
    tracks_to_px,
)
from core.trajectory.model import (
    EASINGS,
    JSON_FORMAT,
    JSON_VERSION,
    Timing,
    Trajectories,
    Trajectory,
    from_clicks,
    resample_polyline,
)

__all__ = [
    "EASINGS",
    "JSON_FORMAT",
    "JSON_VERSION",
    "CameraMotion",
    "Timing",
    "Trajectories",
    "Trajectory",
    "backward_flow",
    "dense_displacement",
    "from_canvas_json",
    "from_clicks",
    "resample_polyline",
    "sparse_flow",
    "sparse_flow_mask",
    "tracks_to_px",
]
