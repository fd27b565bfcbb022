"""Keyframe app: video -> keyframes -> consistent edit -> inbetweened video (Gradio UI and a headless CLI).

- `app`: the Gradio page, one builder per section (`python -m apps.keyframe.app --host H --port P`);
  `handlers`: its event functions and per-session data; `interp_controls`: step 3's inbetweening controls
  (their one order, the request they make); `compare`: the compare views and Redo; `ui_sequence` and
  `sequence`: the images panel and its job (chaining images without a video); `views`: what the page shows.
- `job`: the whole job, UI-free, shared by the app and the CLI: request, run, output files, the run record
  and `request_from_record`.
- `cli`: the same job headless (`python -m apps.keyframe.cli --video V --out out.mp4 ...`).
- `video`: reading the chosen part within the limits; `keyframes`: keyframe specs, lists and prompts;
  `backends`: the edit and inbetweening backends as data (`EDIT_BACKENDS`, `INTERP_BACKENDS`) and their runs.
- `sample`: rebuilds the sample clip in assets/video/ from a public-domain photo.
"""
