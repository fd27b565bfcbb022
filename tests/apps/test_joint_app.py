"""The joint-depth app through its API (gradio_client), on the tiny model at 64x64 with 2 steps.

Every api_name is called and its files checked: image sizes, 16-bit depth PNGs, PLY vertex counts and
colours, batch sizes, seed determinism, the joint-weights picker (a folder changes the output, "none" after it
gives the untrained output back), the fallback banner without SD weights, and bad uploads answered with one
sentence while the server keeps working.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import zlib
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import cv2
import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from apps.common.gradio import launch_kwargs
from apps.common.runs import RunRecord
from apps.joint_depth import examples, job
from apps.joint_depth.app import NO_WEIGHTS_LABEL, SERVED_FOLDERS, build_demo
from core.config import Settings
from core.errors import InputError
from core.models import tiny_sd_components
from core.pipelines.joint_sd import JointSDPipeline
from core.pointcloud import disparity_to_depth, grid_stride, read_ply

SIDE = 64
EXPECTED_API = {
    "/startup",
    "/model_status",
    "/list_weights",
    "/generate",
    "/image_to_depth",
    "/depth_to_image",
    "/stop_generate",
    "/stop_image_to_depth",
    "/stop_depth_to_image",
    "/runs",
    "/run_details",
    "/redo",
}
FAST = {"steps": 2, "guidance": 7.5, "batch": 1, "weights": ""}


@pytest.fixture(scope="module")
def weights_root(tmp_path_factory) -> Path:
    """A training-run folder with trained-looking (random, non-zero) joint layers and two checkpoints."""
    root = tmp_path_factory.mktemp("runs") / "joint"
    # A separate tiny UNet (not the cached one the app uses), so the app has to load these from disk.
    components = tiny_sd_components()
    pipe = JointSDPipeline.from_stock(StableDiffusionPipeline(**components))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in pipe.joint_patch.joint_parameters():
            param.copy_(0.05 * torch.randn(param.shape, generator=generator))
    for folder in (root, root / "checkpoint-10", root / "checkpoint-2"):
        pipe.joint_patch.save(folder)
    return root


def _serve(settings: Settings) -> tuple:
    demo = build_demo(settings)
    demo.queue().launch(prevent_thread_lock=True, quiet=True, **launch_kwargs(settings, *SERVED_FOLDERS))
    return demo, Client(demo.local_url, verbose=False)


@pytest.fixture(scope="module")
def app(tmp_path_factory, weights_root):
    out = tmp_path_factory.mktemp("joint_app")
    settings = Settings(
        sd_model="tiny", device="cpu", output_dir=out / "outputs", joint_weights=str(weights_root)
    )
    demo, client = _serve(settings)
    yield client, settings
    demo.close()


def generate(client: Client, prompt: str = "a red chair", **options):
    args = {**FAST, **options}
    height, width = args.pop("height", SIDE), args.pop("width", SIDE)
    return client.predict(prompt, "", height, width, api_name="/generate", **args)


def read_png16(path: str) -> np.ndarray:
    depth = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    assert depth is not None and depth.dtype == np.uint16 and depth.ndim == 2, (
        path,
        getattr(depth, "dtype", None),
    )
    return depth


def files_by_kind(downloads: list[str]) -> dict[str, list[str]]:
    names = [Path(p).name for p in downloads]
    kinds = {"image": [], "depth": [], "color": [], "ply": [], "json": []}
    for path, name in zip(downloads, names):
        kind = (
            "color"
            if name.endswith("_color.png")
            else "depth"
            if name.startswith("depth_")
            else "image"
            if name.startswith("image_")
            else "ply"
            if name.endswith(".ply")
            else "json"
        )
        kinds[kind].append(path)
    return kinds


@pytest.fixture(scope="module")
def first_run(app):
    """/generate with the untrained patch, batch 2, seed 7 (reused by the determinism checks)."""
    client, _ = app
    return generate(client, batch=2, seed=7, max_points=1000)


def test_startup_names_the_tiny_model_and_the_missing_joint_weights(app):
    client, _ = app
    assert set(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == EXPECTED_API
    banner, height, width, image_side, depth_side = client.predict(weights="", api_name="/startup")
    assert (height, width, image_side, depth_side) == (SIDE,) * 4  # the tiny model's native size
    assert "KINEMA_SD_MODEL=tiny" in banner and "noise" in banner
    assert "No joint weights" in banner and "untrained" in banner
    assert client.predict(weights="", api_name="/model_status").count("No joint weights") == 1


def test_generate_files(app, first_run):
    images, depth_maps, cloud, downloads, status = first_run
    assert len(images) == len(depth_maps) == 2  # batch size
    assert "2 samples of 64x64" in status and "seed 7; model tiny, joint weights none" in status
    kinds = files_by_kind(downloads)
    assert [len(kinds[k]) for k in ("image", "depth", "color", "ply", "json")] == [2, 2, 2, 2, 1]
    stride = grid_stride(SIDE, SIDE, 1000)
    for k in range(2):
        image = np.asarray(Image.open(images[k]["image"]))
        assert image.shape == (SIDE, SIDE, 3) and image.dtype == np.uint8
        np.testing.assert_array_equal(np.asarray(Image.open(kinds["image"][k])), image)
        depth16 = read_png16(kinds["depth"][k])
        assert depth16.shape == (SIDE, SIDE) and depth16.max() > depth16.min()
        assert np.asarray(Image.open(depth_maps[k]["image"]).convert("RGB")).shape == (SIDE, SIDE, 3)
        # The point cloud: the capped grid, the image's colours, the 16-bit depth's z.
        ply = read_ply(kinds["ply"][k])
        assert len(ply) == math.ceil(SIDE / stride) ** 2 < 1000
        np.testing.assert_array_equal(ply.colors_uint8, image[::stride, ::stride].reshape(-1, 3))
        z = disparity_to_depth(depth16[::stride, ::stride] / 65535.0).reshape(-1)
        np.testing.assert_allclose(-ply.points[:, 2], z, rtol=2e-4)  # 16-bit quantisation of disparity
    assert cloud.endswith("points_1.ply")
    record = json.loads(Path(kinds["json"][0]).read_text())
    assert (record["format"], record["app"], record["action"]) == ("kinema.run", "joint_depth", "ui:generate")
    params = record["arguments"]
    assert params["mode"] == "joint" and params["seed"] == 7 and params["batch"] == 2
    assert record["settings"]["sd_model"] == "tiny" and record["settings"]["joint_weights"] == ""
    assert sorted(record["outputs"].values()) == sorted(
        Path(p).name for p in downloads if p.endswith(("png", "ply"))
    )


def _redo(settings: Settings, downloads: list[str], folder: Path) -> tuple[RunRecord, job.JobResult]:
    """The run record among `downloads`, and the job run again from it into `folder`; the downloads are
    kept in one folder first, as a user saves them."""
    saved = folder.with_name(f"{folder.name}-downloads")
    saved.mkdir(parents=True)
    for path in map(Path, downloads):
        shutil.copyfile(path, saved / path.name)
    record = RunRecord.read(saved / next(Path(p).name for p in downloads if p.endswith(".json")))
    return record, job.run_job(job.request_from_record(record, saved), settings, folder, action=record.action)


def test_the_record_redoes_the_run(app, first_run, tmp_path):
    _, settings = app
    images, _, _, downloads, _ = first_run
    record, again = _redo(settings, downloads, tmp_path / "again")
    assert again.record.arguments == record.arguments and again.record.settings == record.settings
    for k, item in enumerate(images):
        np.testing.assert_array_equal(again.images_uint8[k], np.asarray(Image.open(item["image"])))
    for k, path in enumerate(files_by_kind(downloads)["depth"]):
        np.testing.assert_array_equal(read_png16(str(again.files.depth16[k])), read_png16(path))
    with pytest.raises(InputError, match="run record of the keyframe app"):
        job.request_from_record(RunRecord(app="keyframe", action="cli", arguments={}))


def test_weights_picker_and_seed_determinism(app, first_run, weights_root):
    client, _ = app
    update = client.predict(api_name="/list_weights")  # the dropdown's new choices: (label, name)
    assert update["choices"] == [
        [NO_WEIGHTS_LABEL, ""],
        ["joint", "joint"],
        ["joint/checkpoint-2", "joint/checkpoint-2"],
        ["joint/checkpoint-10", "joint/checkpoint-10"],
    ]

    def depth_of(result) -> np.ndarray:
        return np.stack([read_png16(p) for p in files_by_kind(result[3])["depth"]])

    def images_of(result) -> np.ndarray:
        return np.stack([np.asarray(Image.open(item["image"])) for item in result[0]])

    banner = client.predict(weights="joint/checkpoint-2", api_name="/model_status")
    assert "`joint/checkpoint-2`" in banner and "No joint weights" not in banner
    assert str(weights_root) not in banner  # the name, not the server path
    trained = generate(client, batch=2, seed=7, max_points=1000, weights="joint/checkpoint-2")
    assert np.abs(depth_of(trained).astype(int) - depth_of(first_run)).max() > 100  # the weights matter
    # Back to none: the untrained patch again, bit for bit the first run (same seed, batch, size).
    again = generate(client, batch=2, seed=7, max_points=1000)
    np.testing.assert_array_equal(images_of(again), images_of(first_run))
    np.testing.assert_array_equal(depth_of(again), depth_of(first_run))
    other_seed = generate(client, batch=1, seed=8)
    assert np.abs(images_of(other_seed)[0].astype(int) - images_of(first_run)[0]).max() > 10

    with pytest.raises(AppError, match="not in the list of choices"):  # a server path is not a choice
        client.predict(weights=str(weights_root / "checkpoint-2"), api_name="/model_status")


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG signature and IHDR claiming width x height, then one empty IDAT and IEND (no pixels)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


def test_bad_uploads_get_one_sentence_and_the_server_keeps_working(app, tmp_path):
    client, settings = app
    garbage = tmp_path / "holiday.png"
    garbage.write_bytes(b"this is not an image, just text with a .png name\n" * 20)
    huge = tmp_path / "huge.png"
    huge.write_bytes(_png_header_only(4000, 3000))  # 12 MP: under PIL's own bomb limit
    colour = tmp_path / "colour_depth.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(colour)
    image_api = {"prompt": "", "side": SIDE, "api_name": "/image_to_depth", **FAST, "seed": 0}
    depth_api = {
        "prompt": "",
        "negative_prompt": "",
        "side": SIDE,
        "api_name": "/depth_to_image",
        **FAST,
        "seed": 0,
    }

    with pytest.raises(AppError, match=r"holiday\.png is not a readable image"):
        client.predict(handle_file(garbage), **image_api)
    with pytest.raises(AppError, match="4000x3000 pixels; the largest side allowed is 2048"):
        client.predict(handle_file(huge), **image_api)
    with pytest.raises(AppError, match="in colour; upload the greyscale"):
        client.predict(handle_file(colour), **depth_api)
    with pytest.raises(AppError, match="Upload an image first"):
        client.predict(None, **image_api)
    with pytest.raises(AppError, match="Value 0 is less than minimum value 1"):  # the steps slider's bound
        client.predict(handle_file(colour), **{**image_api, "steps": 0})
    with pytest.raises(AppError, match="multiple of 64"):
        generate(client, height=100)

    # The next valid call works: image -> depth on the synthetic example scene.
    scene_image, scene_depth, _ = examples.synthetic_scene_files(tmp_path / "examples")
    images, depth_maps, cloud, downloads, status = client.predict(handle_file(scene_image), **image_api)
    assert "1 sample of 64x64" in status and "image_to_depth" in status
    expected = job.prepare_image(scene_image, settings, SIDE)
    np.testing.assert_array_equal(np.asarray(Image.open(images[0]["image"])), expected)  # the input, as given
    kinds = files_by_kind(downloads)
    assert read_png16(kinds["depth"][0]).shape == (SIDE, SIDE)
    assert len(read_ply(cloud)) == SIDE * SIDE


def test_depth_to_image(app, tmp_path):
    client, settings = app
    _, scene_depth, caption = examples.synthetic_scene_files(tmp_path / "examples")
    images, _, _, downloads, status = client.predict(
        handle_file(scene_depth),
        caption,
        "",
        SIDE,
        api_name="/depth_to_image",
        **{**FAST, "seed": 3, "batch": 2},
    )
    assert len(images) == 2 and "depth_to_image" in status
    assert np.asarray(Image.open(images[1]["image"])).shape == (SIDE, SIDE, 3)
    # The depth files hold the uploaded map, resized and normalised as the pipeline was given it.
    given = job.prepare_depth(scene_depth, settings, SIDE)
    for path in files_by_kind(downloads)["depth"]:
        np.testing.assert_array_equal(read_png16(path), np.rint(given * 65535).astype(np.uint16))
    # Its record names the upload, and redoes the run from it.
    record, again = _redo(settings, downloads, tmp_path / "again")
    assert (
        record.action == "ui:depth_to_image"
        and record.arguments["input"] == Path(record.arguments["input_path"]).name
    )
    for k, item in enumerate(images):
        np.testing.assert_array_equal(again.images_uint8[k], np.asarray(Image.open(item["image"])))


def test_missing_sd_weights_fall_back_to_tiny_and_say_so(app, tmp_path):
    settings = Settings(
        sd_model=str(tmp_path / "no-such-model"), device="cpu", output_dir=tmp_path / "outputs"
    )
    demo, client = _serve(settings)
    try:
        banner = client.predict(weights="", api_name="/startup")[0]
        assert "no-such-model" in banner and "are not available" in banner
        assert "KINEMA_SD_MODEL" in banner and "Running on the 'tiny' preset instead" in banner
        images, _, _, _, status = generate(client, seed=1)
        assert len(images) == 1 and "model tiny, joint weights none (untrained)" in status
    finally:
        demo.close()


def test_the_low_vram_checkbox_is_recorded_and_keeps_the_result(app, first_run):
    """The checkbox (start: the server's setting) sets Settings.low_vram for the run; on the CPU it only
    chunks the UNet's feed-forward, so the images and depth maps are the default mode's."""
    client, _ = app
    config = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/generate"]
    (box,) = [p for p in config["parameters"] if p["parameter_name"] == "low_vram"]
    assert (box["label"], box["parameter_default"]) == ("Low-VRAM mode (slower; for GPUs with 8 GB)", False)
    images, depth_maps, _, downloads, _ = generate(client, batch=2, seed=7, max_points=1000, low_vram=True)
    record = RunRecord.read(next(p for p in downloads if p.endswith(".json")))
    assert record.settings["low_vram"] is True
    default_images, default_depth, _, default_downloads, _ = first_run
    assert (
        RunRecord.read(next(p for p in default_downloads if p.endswith(".json"))).settings["low_vram"]
        is False
    )
    for k in range(2):
        image = np.asarray(Image.open(images[k]["image"])).astype(int)
        default = np.asarray(Image.open(default_images[k]["image"])).astype(int)
        assert np.abs(image - default).max() <= 1  # float noise may flip a rounding
        depth = read_png16(files_by_kind(downloads)["depth"][k]).astype(int)
        assert (
            np.abs(depth - read_png16(files_by_kind(default_downloads)["depth"][k]).astype(int)).max() <= 16
        )
