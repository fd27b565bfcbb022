"""Keyframe app: video -> keyframes -> consistent edit -> inbetweened video (Gradio UI and a headless CLI).

- `workflow`: the job itself, UI-free, shared by the app and the CLI (limits, keyframes, edit and
  inbetweening backends, output files, the parameters record).
- `app`: the Gradio Blocks UI (`python -m apps.keyframe.app --host H --port P`).
- `cli`: the same job headless (`python -m apps.keyframe.cli --video V --out out.mp4 ...`).
- `sample`: rebuilds the sample clip in assets/video/ from a public-domain photo.
"""
