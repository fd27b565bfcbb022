"""The Gradio apps' "Runs" panel: this session's earlier runs (:mod:`apps.common.history`) with a thumbnail,
their parameters (the run record), their files, and "Redo with these settings".

One :class:`RunsPanel` per app keeps a :class:`~apps.common.history.RunHistory` per Gradio session (by its
``session_hash``, dropped when the session ends); a handler adds its run with :meth:`RunsPanel.remember`. The
files are handed out like a run's results (:func:`apps.common.gradio.served_copies`), so they reach only the
session that made them. Redo is the app's: a function from a :class:`~apps.common.history.RunEntry` to the
values of the app's controls (its ``job.request_from_record``, shown in the controls), so the user sees the
settings and starts the run as before.

API: ``/runs`` (the list, newest first), ``/run_details`` (a run's parameters JSON and files), ``/redo`` (the
controls' values for a run).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import gradio as gr
import numpy as np

from apps.common.gradio import served_copies, shows_errors
from apps.common.history import THUMB_SIDE, RunEntry, RunHistory

RUNS_LABEL = "Runs (this session)"
NO_THUMBNAIL = np.full((THUMB_SIDE // 2, THUMB_SIDE // 2, 3), 200, np.uint8)  # a run without a picture


def _thumbnail(entry: RunEntry) -> np.ndarray:
    thumb = entry.thumbnail_uint8()
    return NO_THUMBNAIL if thumb is None else thumb


class RunsPanel:
    """The Runs panel of one app; ``prefix`` starts its elements' ids (e.g. ``jd`` -> ``jd-runs``)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._lock = threading.Lock()
        self._histories: dict[str, RunHistory] = {}

    def remember(self, client: gr.Request | None, record_path) -> None:
        """Add a finished run (its record's path) to `client`'s session; without a session (tests, scripts)
        there is no panel to show it in."""
        session = getattr(client, "session_hash", None)
        if session is None:
            return
        with self._lock:
            history = self._histories.setdefault(session, RunHistory())
        history.add(record_path)

    def history(self, client: gr.Request | None) -> RunHistory:
        """`client`'s session's runs (empty for a session that ran nothing)."""
        with self._lock:
            return self._histories.get(getattr(client, "session_hash", None), RunHistory())

    def end_session(self, client: gr.Request) -> None:
        with self._lock:
            self._histories.pop(client.session_hash, None)

    # -- events ----------------------------------------------------------------------------------------

    def listing(self, client: gr.Request = None):
        """The runs, newest first: thumbnails with their names, the run choice (the newest chosen) and a
        sentence per run that could not be listed."""
        entries, notes = self.history(client).entries()
        gallery = [(_thumbnail(entry), entry.summary()) for entry in entries]
        names = [entry.name for entry in entries]
        choice = gr.update(choices=names, value=names[0] if names else None)
        return gallery, choice, "\n\n".join(f"⚠️ {note}" for note in notes)

    @shows_errors
    def details(self, name: str | None, client: gr.Request = None):
        """A run's parameters (its record's JSON) and its files."""
        if not name:
            return "", []
        entry = self.history(client).get(name)
        return entry.parameters_json(), served_copies(entry.downloads())

    def pick(self, evt: gr.SelectData, client: gr.Request = None):
        """A click on a thumbnail chooses its run."""
        entries, _ = self.history(client).entries()
        return entries[evt.index].name if 0 <= evt.index < len(entries) else gr.update()

    # -- layout and wiring ---------------------------------------------------------------------------------

    def build(self) -> dict[str, Any]:
        """The panel's components (an accordion, open): thumbnails, notes, run choice, Redo, parameters, files."""
        ui: dict[str, Any] = {}
        p = self.prefix
        with gr.Accordion(RUNS_LABEL, open=True, elem_id=f"{p}-runs-panel"):
            # Thumbnail-sized cells however few runs there are (gradio stretches a lone item to the full width).
            cells = "grid-template-columns: repeat(auto-fill, minmax(100px, 140px)) !important"
            gr.HTML(
                f"<style>#{p}-runs .grid-container {{ {cells}; grid-template-rows: none !important; }}</style>"
            )
            ui["runs_gallery"] = gr.Gallery(
                label="Earlier runs (click one)",
                height=190,
                object_fit="contain",
                allow_preview=False,
                elem_id=f"{p}-runs",
            )
            ui["runs_notes"] = gr.Markdown(elem_id=f"{p}-runs-notes")
            with gr.Row():
                ui["run_choice"] = gr.Dropdown([], label="Run", elem_id=f"{p}-run-choice", scale=3)
                ui["redo_btn"] = gr.Button("Redo with these settings", elem_id=f"{p}-redo", scale=1)
            ui["run_params"] = gr.Code(
                label="Parameters (run record)", language="json", elem_id=f"{p}-run-params", max_lines=16
            )
            ui["run_files"] = gr.File(
                label="Files of the run", file_count="multiple", elem_id=f"{p}-run-files"
            )
        return ui

    def wire(
        self,
        demo: gr.Blocks,
        ui: dict[str, Any],
        runs: Sequence[Any],
        redo: Callable[[RunEntry], Sequence[Any]],
        redo_outputs: Sequence[gr.Component],
    ) -> None:
        """List the runs after each of `runs` (event dependencies) succeeds; show the chosen run; Redo puts
        ``redo(entry)`` into `redo_outputs`. A session that ends forgets its runs."""
        listing = [ui["runs_gallery"], ui["run_choice"], ui["runs_notes"]]
        for run in runs:
            run.success(self.listing, None, listing, queue=False, api_visibility="private")
        ui["run_choice"].change(
            self.details,
            ui["run_choice"],
            [ui["run_params"], ui["run_files"]],
            api_name="run_details",
            queue=False,
        )
        ui["runs_gallery"].select(self.pick, None, ui["run_choice"], queue=False, api_visibility="private")

        @shows_errors
        def redo_values(name: str | None, client: gr.Request = None):
            values = tuple(redo(self.history(client).get(name)))
            return values if len(values) > 1 else values[0]

        ui["redo_btn"].click(redo_values, ui["run_choice"], list(redo_outputs), api_name="redo", queue=False)
        demo.load(self.listing, None, listing, api_name="runs", queue=False)
        demo.unload(self.end_session)
