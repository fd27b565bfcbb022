"""The keyframe app's inbetweening controls (step 3, UI only): their one list, the request their values make,
which of them each backend shows, and flow+svd's refine-strength slider.

`INTERP_CONTROLS` names them (keys of the app's component dict) in the order of the inbetween handlers'
parameters (/inbetween, /inbetween_images) and of the values Redo puts back (`apps.keyframe.compare`), so the
events and Redo cannot disagree on it. `interp_request` turns their values into the job's
`apps.keyframe.backends.InterpRequest`.
"""

from __future__ import annotations

import gradio as gr

from apps.keyframe.backends import INTERP_BACKENDS, InterpRequest

INTERP_CONTROLS = (
    "interp_backend",
    "out_fps",
    "interp_flow_method",
    "motion_bucket",
    "interp_steps",
    "interp_seed",
    "decode_chunk",
    "low_vram",
    "reinjection",
    "refine_strength",
)
# Which controls each backend shows, by the request field they set (`Backend.options`).
SHOWN_BY_OPTION = {
    "flow_group": "flow_method",
    "svd_group": "motion_bucket",
    "reinjection": "noise_reinjection",
    "refine_strength": "refine_strength",
}
DEFAULT_REFINE_STRENGTH = InterpRequest.refine_strength


def refine_slider() -> gr.Slider:
    """flow+svd's strength: the share of the SVD steps that run from the noised flow frames."""
    return gr.Slider(
        0.05,
        1.0,
        value=DEFAULT_REFINE_STRENGTH,
        step=0.05,
        label="Refine strength",
        info="How much SVD repaints the flow frames: the share of the steps that run (1: from noise)",
        visible=False,
        elem_id="kf-refine-strength",
    )


def interp_request(
    backend: str,
    fps: float | None,
    flow_method: str,
    motion_bucket: float,
    steps: float,
    seed: float,
    decode_chunk_size: float,
    noise_reinjection: float = 0,
    refine_strength: float = DEFAULT_REFINE_STRENGTH,
) -> InterpRequest:
    """The inbetweening request of the controls' values (sliders send floats; an fps of 0 or None: the
    video's). Not checked here: the job checks it."""
    return InterpRequest(
        backend=backend,
        fps=float(fps) if fps else None,
        flow_method=flow_method,
        motion_bucket=int(motion_bucket),
        steps=int(steps),
        seed=int(seed),
        decode_chunk_size=int(decode_chunk_size),
        noise_reinjection=int(noise_reinjection),
        refine_strength=float(refine_strength),
    )


def interp_values(interp: InterpRequest, low_vram: bool) -> tuple:
    """The controls' values of a request, in `INTERP_CONTROLS` order (what Redo puts back)."""
    return (
        interp.backend,
        interp.fps or 0,
        interp.flow_method,
        interp.motion_bucket,
        interp.steps,
        interp.seed,
        interp.decode_chunk_size,
        low_vram,
        interp.noise_reinjection,
        interp.refine_strength,
    )


def show_interp_backend(backend: str) -> tuple:
    """Visibility updates of the `SHOWN_BY_OPTION` controls (in its order) for `backend`."""
    options = INTERP_BACKENDS[backend].options
    return tuple(gr.update(visible=option in options) for option in SHOWN_BY_OPTION.values())
