"""What the drag app's Generate button runs: a video from one of `apps.drag.backends`, written to disk.

UI-free apart from the Streamlit progress bar handed in as a callable, so the app stays a thin layer:
the image, trajectories and parameters in, a `DragResult` (mp4, gif, flow video, side-by-side,
trajectories JSON, parameters JSON) out. Bad input raises InputError, missing weights ModelNotAvailable.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np

from apps.drag.backends import RenderProgress, render
from core.flow import render_flow_video
from core.trajectory import Trajectories
from core.video import write_video

Progress = Callable[[float, str], None]

PARAMS_FORMAT = "kinema.drag.parameters"
# Share of the progress bar the backend's render takes; encoding the videos takes the rest.
RENDER_SHARE = 0.9


@dataclass(frozen=True)
class DragParams:
    """Every choice behind one run; written next to the video as the parameters JSON."""

    backend: str  # a name of apps.drag.backends.BACKENDS
    num_frames: int
    fps: int
    camera: str
    resize_mode: Literal["crop", "pad"]
    working_side: int
    motion_bucket_id: int
    strength: float | None  # None: the backend takes none
    num_inference_steps: int
    noise_aug_strength: float
    seed: int
    motion_brush: bool
    controlnet_scale: float | None = None  # svd-controlnet only
    image: str = ""  # the sample's or the uploaded file's name, for the record

    def to_json(self, **extra: object) -> str:
        return json.dumps({"format": PARAMS_FORMAT, **asdict(self), **extra}, indent=2)


@dataclass(frozen=True)
class DragResult:
    """One finished run. Video fields are encoded file bytes; `folder` holds the same files on disk.

    The GIF is written on first request (`gif_bytes`): encoding it takes several times longer than all
    the mp4s together, so a run does not wait for a download nobody may ask for.
    """

    params: DragParams
    frames_uint8: np.ndarray  # (T,H,W,3) uint8, the generated clip
    video_mp4: bytes
    flow_mp4: bytes
    side_by_side_mp4: bytes
    trajectories_json: str
    params_json: str
    folder: Path
    seconds: float

    def gif_bytes(self) -> bytes:
        """The clip as a looping GIF (written to `folder` on the first call)."""
        path = self.folder / "video.gif"
        if not path.is_file():
            write_video(path, self.frames_uint8, self.params.fps)
        return path.read_bytes()


def generate(
    image_uint8: np.ndarray,
    trajectories: Trajectories,
    params: DragParams,
    *,
    region_mask: np.ndarray | None,
    output_dir: Path,
    pipeline=None,
    progress: Progress | None = None,
    overlay_uint8: np.ndarray | None = None,
) -> DragResult:
    """Animate `image_uint8` (H,W,3) along `trajectories` with `params.backend` and encode the results.

    `pipeline` is what `apps.drag.backends.load(params.backend, settings)` returned (the app caches
    it; loaded from the environment's settings when None). `progress(fraction, text)` is called as
    work advances. Files go to a new folder under `output_dir`.
    """
    report = progress or (lambda fraction, text: None)
    started = time.perf_counter()

    def on_render(event: RenderProgress) -> None:
        report(round(RENDER_SHARE * event.fraction, 4), event.text)

    report(0.0, "Warping")
    video = render(
        params.backend,
        image_uint8,
        trajectories,
        num_frames=params.num_frames,
        fps=params.fps,
        motion_bucket_id=params.motion_bucket_id,
        strength=params.strength,
        controlnet_scale=1.0 if params.controlnet_scale is None else params.controlnet_scale,
        num_inference_steps=params.num_inference_steps,
        noise_aug_strength=params.noise_aug_strength,
        seed=params.seed,
        camera=params.camera,
        region_mask=region_mask,
        pipeline=pipeline,
        progress=on_render,
    )
    frames = video.frames_uint8
    # Record what the backend used (the warp takes no strength, only one backend a ControlNet scale).
    params = replace(params, strength=video.strength, controlnet_scale=video.controlnet_scale)

    report(RENDER_SHARE, "Encoding videos")
    folder = _new_run_folder(output_dir)
    flow_frames = _flow_frames(video.flow_px, len(frames))
    overlay = image_uint8 if overlay_uint8 is None else overlay_uint8
    side_by_side = np.concatenate([np.broadcast_to(overlay, frames.shape), frames, flow_frames], axis=2)
    write_video(folder / "video.mp4", frames, params.fps)
    write_video(folder / "flow.mp4", flow_frames, params.fps)
    write_video(folder / "side_by_side.mp4", np.ascontiguousarray(side_by_side), params.fps)
    seconds = time.perf_counter() - started
    trajectories_json = trajectories.to_json()
    height, width = image_uint8.shape[:2]
    params_json = params.to_json(width=width, height=height, seconds=round(seconds, 3))
    (folder / "trajectories.json").write_text(trajectories_json)
    (folder / "parameters.json").write_text(params_json)
    report(1.0, f"Done in {seconds:.1f} s")
    return DragResult(
        params=params,
        frames_uint8=frames,
        video_mp4=(folder / "video.mp4").read_bytes(),
        flow_mp4=(folder / "flow.mp4").read_bytes(),
        side_by_side_mp4=(folder / "side_by_side.mp4").read_bytes(),
        trajectories_json=trajectories_json,
        params_json=params_json,
        folder=folder,
        seconds=seconds,
    )


def _flow_frames(flow_px: np.ndarray, num_frames: int) -> np.ndarray:
    """Colour frames (T,H,W,3) uint8 of a flow video (T-1,H,W,2) px, one shared scale, padded to `num_frames`."""
    colours = render_flow_video(np.asarray(flow_px, dtype=np.float32))
    if len(colours) < num_frames:  # frame-to-frame flow has one frame fewer: frame 0 shows no motion
        still = np.full((num_frames - len(colours), *colours.shape[1:]), 255, np.uint8)
        colours = np.concatenate([still, colours])
    return colours[:num_frames]


def _new_run_folder(output_dir: Path) -> Path:
    base = Path(output_dir) / "drag"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        folder = base / (stamp if n == 0 else f"{stamp}-{n}")
        try:
            folder.mkdir(parents=True, exist_ok=False)
            return folder
        except FileExistsError:
            continue
    raise OSError(f"Could not create a new run folder under {base}.")
