"""Joint-depth app: prompt -> image + depth; image -> depth; depth -> image (Gradio UI and a headless CLI).

- `app`: the Gradio page, one builder per section (`python -m apps.joint_depth.app --host H --port P`).
- `job`: the job, UI-free, shared by the app and the CLI (model with the tiny fallback, joint-weight folders,
  runs, files, the run record and `request_from_record`).
- `cli`: the same job headless (`python -m apps.joint_depth.cli --prompt ... | --image F | --depth F`).
- `examples`: example prompts, sample photos and a synthetic scene with exact depth.
"""
