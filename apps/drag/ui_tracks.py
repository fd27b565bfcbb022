"""The drag app's track list: one row per trajectory (colour, kind, length) with its Delete button, and the
canvas remount that deleting or resetting needs.

Session state it uses (see `apps.drag.app`): canvas_rev, canvas_seed, canvas_objects.
"""

from __future__ import annotations

import streamlit as st

from apps.drag.overlay import colour_of
from core.trajectory.canvas import ParsedCanvas


def remount_canvas(objects: list[dict]) -> None:
    """Show `objects` on a freshly mounted canvas (the only way to take objects away from the component)."""
    st.session_state.canvas_seed = list(objects)
    st.session_state.canvas_objects = list(objects)
    st.session_state.canvas_rev += 1


def delete_trajectory(object_index: int) -> None:
    objects = list(st.session_state.canvas_objects)
    del objects[object_index]
    remount_canvas(objects)


def trajectory_list(parsed: ParsedCanvas, image_wh: tuple[int, int]) -> None:
    st.markdown("**Trajectories**")
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
