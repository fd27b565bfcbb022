"""Joint-depth app: prompt -> image + depth; image -> depth; depth -> image (Gradio UI).

- `workflow`: the work itself, UI-free (model with the tiny fallback, joint-weight folders, runs, files).
- `app`: the Gradio Blocks UI (`python -m apps.joint_depth.app --host H --port P`).
- `examples`: example prompts, sample photos and a synthetic scene with exact depth.
"""
