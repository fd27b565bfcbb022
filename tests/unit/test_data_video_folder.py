"""Video folder datasets on real mp4 folders written by the synthetic generator and core.video."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from core.data.synthetic import make_video_scene, write_video_folder
from core.data.video_folder import ClipRecord, PandaVideoDataset, VideoClipDataset, WebVidDataset
from core.errors import InputError
from core.imaging import to_signed
from core.video import read_video, write_video

SIZE, FRAMES, FPS = (32, 48), 12, 8.0


@pytest.fixture(scope="module")
def panda_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("panda")
    write_video_folder(root, 3, layout="panda", size=SIZE, n_frames=FRAMES, fps=FPS, seed=20)
    return root


@pytest.fixture(scope="module")
def webvid_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("webvid")
    write_video_folder(root, 2, layout="webvid", size=SIZE, n_frames=FRAMES, fps=FPS, seed=30, captions=False)
    return root


def test_panda_items_shapes_ranges_fps_and_captions(panda_root):
    ds = PandaVideoDataset(
        panda_root, sample_size=(32, 32), sample_n_frames=4, sample_stride=2, clip_start="first"
    )
    assert len(ds) == 3 and ds.skipped == {}
    for i in range(3):
        item = ds[i]
        scene = make_video_scene(SIZE, FRAMES, 20 + i, fps=FPS)
        assert item["pixel_values"].shape == (4, 3, 32, 32) and item["pixel_values"].dtype == torch.float32
        assert item["pixel_values"].min() >= -1.0 and item["pixel_values"].max() <= 1.0
        assert item["fps"] == pytest.approx(FPS / 2)
        assert item["caption"] == scene.caption
        # Frames 0, 2, 4, 6 of the decoded file, centre-cropped to columns 8..40 (no resize needed).
        decoded = read_video(ds.records[i].path).frames_uint8
        torch.testing.assert_close(item["pixel_values"], to_signed(decoded[0:8:2, :, 8:40]))
        # And they are the scene: H.264 (yuv420p, crf 18) keeps these small textured frames within
        # a few grey levels (measured 3-4.5).
        truth = to_signed(scene.frames_uint8[0:8:2, :, 8:40])
        assert (item["pixel_values"] - truth).abs().mean() < 6 / 127.5


@pytest.mark.parametrize(("target_fps", "stride", "fps"), [(4.0, 2, 4.0), (3.0, 3, 8 / 3), (30.0, 1, 8.0)])
def test_target_fps_picks_the_stride(panda_root, target_fps, stride, fps):
    ds = PandaVideoDataset(
        panda_root, sample_size=16, sample_n_frames=3, target_fps=target_fps, clip_start="first"
    )
    direct = read_video(ds.records[0].path, num_frames=3, stride=stride)
    item = ds[0]
    assert item["fps"] == pytest.approx(fps)
    assert item["pixel_values"].shape == (3, 3, 16, 16)
    full = PandaVideoDataset(
        panda_root, sample_size=SIZE, sample_n_frames=3, target_fps=target_fps, clip_start="first"
    )
    torch.testing.assert_close(full[0]["pixel_values"], to_signed(direct.frames_uint8))


def test_webvid_layout_and_missing_captions(webvid_root):
    assert sorted(p.name for p in webvid_root.iterdir()) == ["000001_000050", "results.csv"]
    ds = WebVidDataset(webvid_root, sample_size=24, sample_n_frames=5)
    assert len(ds) == 2
    item = ds[1]
    assert item["caption"] == "" and item["pixel_values"].shape == (5, 3, 24, 24) and item["fps"] == FPS
    assert WebVidDataset(webvid_root, sample_size=24, sample_n_frames=5, default_caption="a video")[0][
        "caption"
    ] == ("a video")


def test_random_window_and_crop_are_reproducible_with_a_seed(panda_root):
    kwargs = dict(sample_size=(16, 16), sample_n_frames=3, crop="random", clip_start="random")
    a = PandaVideoDataset(panda_root, seed=3, **kwargs)[0]["pixel_values"]
    b = PandaVideoDataset(panda_root, seed=3, **kwargs)[0]["pixel_values"]
    torch.testing.assert_close(a, b)
    others = [PandaVideoDataset(panda_root, seed=s, **kwargs)[0]["pixel_values"] for s in range(4, 8)]
    assert any(not torch.equal(a, o) for o in others)


def test_dataloader_batches_items(panda_root):
    ds = PandaVideoDataset(panda_root, sample_size=16, sample_n_frames=2)
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["pixel_values"].shape == (2, 2, 3, 16, 16)
    assert batch["fps"].tolist() == [FPS, FPS] and len(batch["caption"]) == 2


def test_broken_clips_are_skipped_counted_and_replaced_deterministically(tmp_path):
    write_video_folder(tmp_path, 5, layout="panda", size=(16, 16), n_frames=8, fps=FPS)
    videos = tmp_path / "videos"
    (videos / "clip_00001.mp4").write_bytes(np.random.default_rng(0).bytes(2000))  # not a video
    (videos / "clip_00002.mp4").unlink()  # missing
    write_video(videos / "clip_00003.mp4", np.zeros((3, 16, 16, 3), np.uint8), FPS)  # too short
    ds = PandaVideoDataset(tmp_path, sample_size=16, sample_n_frames=6)
    assert len(ds) == 4 and list(ds.skipped.values()) == ["missing file: no video file with that id"]
    captions = [row["caption"] for row in csv.DictReader(open(tmp_path / "metadata.csv"))]
    got = [ds[i]["caption"] for i in range(len(ds))]
    # Records: clips 0, 1 (bad bytes), 3 (too short), 4. Broken ones fall through to the next good one.
    assert got == [captions[0], captions[4], captions[4], captions[4]]
    assert len(ds.skipped) == 3
    reasons = " | ".join(ds.skipped.values())
    assert "cannot be read" in reasons and "too short: 3 frames" in reasons
    assert ds.skip_report().startswith("3 clip(s) skipped")


def test_nothing_usable_raises_input_error(tmp_path):
    write_video_folder(tmp_path, 2, layout="webvid", size=(16, 16), n_frames=4, fps=FPS)
    ds = WebVidDataset(tmp_path, sample_size=16, sample_n_frames=8)  # every clip too short
    with pytest.raises(InputError, match="No usable clip.*2 skipped"):
        ds[0]
    shutil.rmtree(tmp_path / "000001_000050")
    with pytest.raises(InputError, match="No usable clip.*missing file"):
        WebVidDataset(tmp_path)
    with pytest.raises(InputError, match="csv_path"):
        WebVidDataset(tmp_path / "000001_000050")
    with pytest.raises(InputError, match="metadata"):
        PandaVideoDataset(tmp_path)


def test_raw_panda_rows_with_timestamp_lists_give_one_clip_per_span(tmp_path):
    scene = make_video_scene((16, 16), 24, seed=1, fps=FPS)
    (tmp_path / "videos").mkdir()
    write_video(tmp_path / "videos" / "abc.mp4", scene.frames_uint8, FPS)
    write_video(tmp_path / "videos" / "def.mp4", scene.frames_uint8, FPS)
    with open(tmp_path / "metadata.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["videoID", "url", "timestamp", "caption", "matching_score"])
        writer.writerow(
            [
                "abc",
                "",
                "[['0:00:00.000', '0:00:01.000'], ['0:00:01.500', '0:00:03.000']]",
                "['first', 'second']",
                "",
            ]
        )
        writer.writerow(["def", "", "[['0:00:nope', '0:00:01.000']]", "['broken']", ""])
        writer.writerow(["def", "", "[0.25, 2.0]", "(one span) in seconds", ""])
    ds = PandaVideoDataset(tmp_path, sample_size=(16, 16), sample_n_frames=4, clip_start="first")
    assert [(r.caption, r.start_s, r.end_s) for r in ds.records] == [
        ("first", 0.0, 1.0),
        ("second", 1.5, 3.0),
        ("(one span) in seconds", 0.25, 2.0),
    ]
    assert len(ds.skipped) == 1 and "malformed metadata row" in next(iter(ds.skipped.values()))
    decoded = read_video(tmp_path / "videos" / "abc.mp4").frames_uint8
    # 'second' spans 1.5 s .. 3.0 s at 8 fps: frames 12 .. 23; the window starts at its first frame.
    torch.testing.assert_close(ds[1]["pixel_values"], to_signed(decoded[12:16]))
    # 0.25 s at 8 fps is frame 2.
    torch.testing.assert_close(ds[2]["pixel_values"], to_signed(decoded[2:6]))


def test_explicit_records_and_argument_checks(panda_root):
    path = next((panda_root / "videos").iterdir())
    ds = VideoClipDataset([ClipRecord(path, "")], sample_size=8, sample_n_frames=2, default_caption="x")
    assert ds[0]["caption"] == "x"
    for bad in (
        dict(sample_stride=2, target_fps=4.0),
        dict(sample_stride=0),
        dict(target_fps=-1.0),
        dict(sample_n_frames=0),
        dict(crop="diagonal"),
        dict(clip_start="last"),
        dict(sample_size=(0, 8)),
    ):
        with pytest.raises(InputError):
            VideoClipDataset([ClipRecord(path, "")], **bad)
