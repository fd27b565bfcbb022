"""The drag app's track list: one row per trajectory (colour, kind, length) with its Delete button and,
for a moving track, when it moves (start and end frame, easing); and the canvas remount that deleting or
resetting needs.

Timing lives beside the canvas, which knows only shapes: `track_timings` maps a canvas object's index to
its `core.trajectory.Timing` (fractions of the clip, so it survives a change of the frame count; the list
shows frames). It follows the objects when one is deleted, starts empty (the whole clip, linear) for new
ones, and comes from the file when trajectories are loaded. The trajectories JSON (version 2) stores it.

Session state it uses (see `apps.drag.app`): canvas_rev, canvas_seed, canvas_objects, track_timings.
"""

from __future__ import annotations

import streamlit as st

from apps.drag import ui_canvas
from apps.drag.overlay import colour_of
from core.trajectory import EASINGS, Timing, Trajectories, Trajectory
from core.trajectory.canvas import ParsedCanvas


def remount_canvas(objects: list[dict], timings: dict[int, Timing] | None = None) -> None:
    """Show `objects` on a freshly mounted canvas (the only way to take objects away from the component),
    with `timings` by object index (None: every track over the whole clip)."""
    objects = ui_canvas.recoloured(objects)  # each track in its list colour, which deleting shifts
    st.session_state.canvas_seed = objects
    st.session_state.canvas_objects = list(objects)
    st.session_state.track_timings = dict(timings or {})
    st.session_state.canvas_rev += 1


def delete_trajectory(object_index: int) -> None:
    objects = list(st.session_state.canvas_objects)
    del objects[object_index]
    timings = st.session_state.track_timings
    kept = {i - (i > object_index): timing for i, timing in timings.items() if i != object_index}
    remount_canvas(objects, kept)


def timings_of(trajectories: Trajectories) -> dict[int, Timing]:
    """The timings of trajectories about to be drawn on a fresh canvas (one object each, in order)."""
    return {i: trajectory.timing for i, trajectory in enumerate(trajectories)}


def trajectory_list(parsed: ParsedCanvas, image_wh: tuple[int, int], frames: int) -> Trajectories:
    """The list (see the module docstring); returns the drawing's trajectories with their timing."""
    st.markdown("**Trajectories**")
    timed = []
    if not len(parsed.trajectories):
        st.caption("None yet: draw on the image.")
    rev = st.session_state.canvas_rev
    for i, (trajectory, object_index) in enumerate(zip(parsed.trajectories, parsed.object_index)):
        text_col, button_col = st.columns([4, 1], vertical_alignment="center")
        if trajectory.is_anchor:
            x, y = trajectory.points_norm[0] * image_wh
            text_col.markdown(f":blue[**{i + 1}**] anchor at ({x:.0f}, {y:.0f}) px")
        else:
            r, g, b = colour_of(i)
            swatch = f'<span style="color:rgb({r},{g},{b})">&#9632;</span>'
            text_col.markdown(
                f"{swatch} **{i + 1}** track, {len(trajectory.points_norm)} points, "
                f"{trajectory.length(image_wh):.0f} px",
                unsafe_allow_html=True,
            )
            trajectory = Trajectory(trajectory.points_norm, track_timing(i, object_index, frames))
        timed.append(trajectory)
        button_col.button(
            "Delete",
            key=f"delete-{rev}-{i}",
            on_click=delete_trajectory,
            args=(object_index,),
            help=f"Delete trajectory {i + 1}",
        )
    for problem in parsed.problems:
        st.warning(problem)
    if parsed.clipped:
        numbers = ", ".join(str(i + 1) for i in parsed.clipped)
        if len(parsed.clipped) == 1:
            st.warning(f"Trajectory {numbers} left the image and was clipped to its edge.")
        else:
            st.warning(f"Trajectories {numbers} left the image and were clipped to its edge.")
    st.button(
        "Reset all",
        key=f"reset-{rev}",
        on_click=remount_canvas,
        args=([],),
        disabled=not st.session_state.canvas_objects,
    )
    return Trajectories(tuple(timed))


def track_timing(number: int, object_index: int, frames: int) -> Timing:
    """Track `number`'s (0-based) start/end frame slider and easing choice; its Timing, kept in
    `track_timings`. The widgets' keys hold the canvas revision and the frame count, so a remount or another
    frame count shows the stored timing afresh."""
    timings = st.session_state.track_timings
    stored = timings.get(object_index, Timing())
    last = max(frames - 1, 1)
    keys = f"{st.session_state.canvas_rev}-{object_index}-{frames}"
    range_col, easing_col = st.columns([3, 2])
    start, end = range_col.slider(
        f"Track {number + 1} moves from frame ... to frame",
        0,
        last,
        (round(stored.start * last), round(stored.end * last)),
        key=f"frames-{keys}",
    )
    easing = easing_col.selectbox(
        f"Track {number + 1} speed", EASINGS, EASINGS.index(stored.easing), key=f"easing-{keys}"
    )
    if (start, end, easing) == (round(stored.start * last), round(stored.end * last), stored.easing):
        return stored  # untouched: a loaded timing between two frames stays exact
    if start >= end:
        range_col.caption(f"A track must end after it starts: track {number + 1} keeps its last timing.")
        return stored
    timings[object_index] = Timing(start / last, end / last, easing)
    return timings[object_index]
