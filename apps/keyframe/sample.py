"""The sample clip of the keyframe app: ``python -m apps.keyframe.sample`` rewrites assets/video/sample.mp4.

A slow camera zoom into scikit-image's astronaut photo (NASA, public domain), made with
`core.eval.fixtures.camera_clip`: 24 frames of 320x320 at 10 fps (2.4 s), H.264.
scikit-image is a dev dependency; only this rebuild needs it, the app reads the committed file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from core.eval.fixtures import camera_clip, load_photo
from core.video import write_video

SAMPLE_VIDEO = Path(__file__).resolve().parents[2] / "assets" / "video" / "sample.mp4"
SAMPLE_FRAMES = 24
SAMPLE_FPS = 10.0
SAMPLE_SIZE = 320
# Higher than core.video's near-lossless default: the clip is a demo input, small matters more.
SAMPLE_CRF = 23


def make_sample(path: Path = SAMPLE_VIDEO) -> Path:
    """Write the sample clip to `path` (.mp4) and return the path; the same bytes for the same libraries."""
    frames_uint8 = camera_clip(load_photo("astronaut"), "zoom", SAMPLE_SIZE, SAMPLE_FRAMES)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_video(path, frames_uint8, SAMPLE_FPS, crf=SAMPLE_CRF)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m apps.keyframe.sample", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", type=Path, default=SAMPLE_VIDEO, help="where to write the clip (.mp4)")
    args = parser.parse_args(argv)
    print(make_sample(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
