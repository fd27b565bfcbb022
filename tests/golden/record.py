"""Golden outputs of every app path, to show that a restructuring changes no behaviour.

`python -m tests.golden.record --write` runs (on one CPU thread) each CLI (drag: warp with each engine, svd, svd-controlnet, svd-joint-flow on the
tiny models; keyframe: filter + flow, sd edit + svd-trf on tiny) and the joint-depth job (three modes on tiny with
seeded joint weights) in folders under a temporary folder of its own (removed unless something changed, so
that runs in parallel do not meet; recorded as <work>), and stores the SHA-256 of every decoded video
and image, and every parameters JSON (timings and clock fields dropped), in tests/golden/golden.json.
`python -m tests.golden.record` (no flag) runs the same and compares: media hashes must be equal, and every
(key, value) leaf of the stored parameters must still be in the new JSON (at any depth: the run-record envelope
may wrap them). Exit status 1 and a list of differences when anything changed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).with_name("golden.json")
WORK = Path(tempfile.gettempdir()) / f"kinema-golden-{os.getpid()}"
# The settings every case runs with: each model as offline random 'tiny' weights, on the CPU.
TINY_ENV = {
    "KINEMA_SD_MODEL": "tiny",
    "KINEMA_SVD_MODEL": "tiny",
    "KINEMA_SVD_CONTROLNET_MODEL": "tiny",
    "KINEMA_SVD_JOINT_FLOW_MODEL": "tiny",
    "KINEMA_DEVICE": "cpu",
}
CLOCK_KEYS = {
    "timings_s",
    "seconds",
    "wall_s",
    "created",
    "timestamp",
    "time",
    "elapsed_s",
    "format",
    "version",
}


def _sha(array: np.ndarray) -> str:
    array = np.ascontiguousarray(array)
    return hashlib.sha256(str((array.shape, array.dtype.str)).encode() + array.tobytes()).hexdigest()[:16]


def _media_hash(path: Path) -> str:
    from PIL import Image

    from core.video import read_video

    if path.suffix in (".mp4", ".gif"):
        return _sha(read_video(path).frames_uint8)
    if path.suffix == ".png":
        return _sha(np.asarray(Image.open(path)))
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            return _sha(
                np.frombuffer(b"".join(archive.read(n) for n in sorted(archive.namelist())), np.uint8)
            )
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _without_clock(value):
    """The JSON without clock fields, with the checkout's path as <repo> (the same in any clone) and the
    work folder as <work>."""
    if isinstance(value, dict):
        return {k: _without_clock(v) for k, v in value.items() if k not in CLOCK_KEYS}
    if isinstance(value, list):
        return [_without_clock(v) for v in value]
    if isinstance(value, str):
        return value.replace(str(WORK), "<work>").replace(str(ROOT), "<repo>")
    return value


def _leaves(value, key="") -> Counter:
    if isinstance(value, dict):
        return sum((_leaves(v, k) for k, v in value.items()), Counter())
    if isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        return sum((_leaves(v, key) for v in value), Counter())
    return Counter({(key, json.dumps(value, sort_keys=True)): 1})


def _case_folder(name: str) -> Path:
    folder = WORK / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def _collect(folder: Path) -> dict:
    media, params = {}, {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.suffix in (".mp4", ".gif", ".png", ".zip", ".ply"):
            media[rel] = _media_hash(path)
        elif path.suffix == ".json" and not rel.startswith("inputs"):
            params[rel] = _without_clock(json.loads(path.read_text()))
    return {"media": media, "params": params}


def _drag_inputs(folder: Path) -> tuple[Path, Path]:
    import cv2
    from PIL import Image

    from core.imaging import load_image
    from core.trajectory import Trajectories, Trajectory

    inputs = folder / "inputs"
    inputs.mkdir()
    photo = load_image(ROOT / "assets" / "images" / "coffee.jpg")
    Image.fromarray(cv2.resize(photo, (300, 200), interpolation=cv2.INTER_AREA)).save(inputs / "coffee.png")
    tracks = Trajectories(
        (
            Trajectory([[0.34, 0.30], [0.44, 0.26], [0.50, 0.30]]),
            Trajectory([[0.55, 0.70], [0.62, 0.62]]),
            Trajectory([[0.86, 0.80]]),
        )
    )
    (inputs / "drag.json").write_text(tracks.to_json())
    return inputs / "coffee.png", inputs / "drag.json"


def _drag(name: str, *extra: str) -> dict:
    from apps.drag import cli

    folder = _case_folder(name)
    image, tracks = _drag_inputs(folder)
    argv = ["--image", str(image), "--trajectories", str(tracks), "--out", str(folder / "out" / "video.mp4")]
    code = cli.main([*argv, "--flow-out", str(folder / "out" / "flow.mp4"), "--quiet", *extra])
    if code != 0:
        raise SystemExit(f"golden case {name}: drag CLI exited {code}")
    return _collect(folder)


def _keyframe(name: str, *extra: str) -> dict:
    from apps.keyframe import cli

    folder = _case_folder(name)
    out = folder / "out"
    argv = ["--video", str(ROOT / "assets" / "video" / "sample.mp4"), "--out", str(out / "video.mp4")]
    argv += ["--side-by-side", str(out / "side.mp4"), "--keyframes-zip", str(out / "keys.zip")]
    code = cli.main([*argv, *extra])
    if code != 0:
        raise SystemExit(f"golden case {name}: keyframe CLI exited {code}")
    return _collect(folder)


def _joint() -> dict:
    """The joint-depth job in its three modes, on tiny SD with seeded random joint weights."""
    import torch
    from diffusers import StableDiffusionPipeline
    from PIL import Image

    from apps.joint_depth import job
    from core.config import Settings
    from core.imaging import save_png16
    from core.models import tiny_sd_components
    from core.pipelines.joint_sd import JointSDPipeline

    folder = _case_folder("joint")
    weights = folder / "inputs" / "weights"
    pipe = JointSDPipeline.from_stock(StableDiffusionPipeline(**tiny_sd_components()))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in pipe.joint_patch.joint_parameters():
            param.copy_(0.05 * torch.randn(param.shape, generator=generator))
    pipe.joint_patch.save(weights)
    settings = Settings(sd_model="tiny", device="cpu", output_dir=str(folder / "outputs"))
    photo = np.asarray(Image.open(ROOT / "assets" / "images" / "chelsea.jpg").convert("RGB").resize((64, 64)))
    Image.fromarray(photo).save(folder / "inputs" / "image.png")
    save_png16(folder / "inputs" / "depth.png", np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64))
    inputs = {
        "image_to_depth": folder / "inputs" / "image.png",
        "depth_to_image": folder / "inputs" / "depth.png",
    }
    for mode in ("joint", "image_to_depth", "depth_to_image"):
        request = job.JointRequest.from_ui(
            settings,
            mode=mode,
            prompt="a red chair",
            steps=2,
            seed=3,
            batch=2,
            height=64,
            width=64,
            side=64,
            weights=str(weights),
            input_path=str(inputs.get(mode, "")),
        )
        job.run_job(request, settings, folder / "out" / mode)
    return _collect(folder)


CASES = {
    "drag-warp": lambda: _drag("drag-warp", "--frames", "8", "--max-side", "256", "--gif"),
    "drag-warp-sheet": lambda: _drag(
        "drag-warp-sheet", "--engine", "sheet", "--frames", "8", "--max-side", "256"
    ),
    "drag-svd": lambda: _drag(
        "drag-svd", "--backend", "svd", "--max-side", "64", "--frames", "3", "--steps", "2"
    ),
    "drag-svd-controlnet": lambda: _drag(
        "drag-svd-controlnet",
        "--backend",
        "svd-controlnet",
        "--max-side",
        "64",
        "--frames",
        "3",
        "--steps",
        "2",
    ),
    "drag-svd-joint-flow": lambda: _drag(
        "drag-svd-joint-flow",
        "--backend",
        "svd-joint-flow",
        "--max-side",
        "64",
        "--frames",
        "3",
        "--steps",
        "2",
    ),
    "keyframe-flow": lambda: _keyframe(
        "keyframe-flow", "--working-size", "128", "--edit", "cartoon", "--end", "2"
    ),
    "keyframe-sd-trf": lambda: _keyframe(
        "keyframe-sd-trf",
        "--working-size",
        "64",
        "--end",
        "1.0",
        "--keyframes",
        "0,5,10",
        "--edit",
        "sd",
        "--prompt",
        "snow",
        "--steps",
        "2",
        "--interp",
        "svd-trf",
        "--interp-steps",
        "2",
    ),  # fmt: skip
    "joint": _joint,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="store the outputs as the new golden file")
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(
        1
    )  # float sums, hence the hashes, depend on the thread count: one, as the tests run
    os.environ.update(TINY_ENV)
    results = {name: CASES[name]() for name in args.cases}
    if args.write:
        GOLDEN.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
        print(f"wrote {GOLDEN} ({len(results)} cases)")
        shutil.rmtree(WORK)
        return 0
    golden = json.loads(GOLDEN.read_text())
    problems = []
    for name, got in results.items():
        want = golden[name]
        for file, digest in want["media"].items():
            if got["media"].get(file) != digest:
                problems.append(f"{name}: {file} {digest} -> {got['media'].get(file)}")
        for file, params in want["params"].items():
            new = got["params"].get(file)
            missing = _leaves(params) - _leaves(new) if new is not None else {"(file missing)": 1}
            problems += [f"{name}: {file} lost or changed {leaf}" for leaf in missing]
        print(f"{name}: {len(want['media'])} media, {len(want['params'])} JSON checked")
    if problems:
        print("\n".join(problems) + f"\nthe outputs are in {WORK}")
        return 1
    shutil.rmtree(WORK)
    print("golden outputs unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
