"""The keyframe job without a UI (apps.keyframe.video, keyframes, backends, job): input limits, keyframe lists,
backends, outputs and the run record."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from apps.common.runs import RunRecord, new_run_folder
from apps.keyframe import backends, job, keyframes
from apps.keyframe import video as kf_video
from apps.keyframe.sample import SAMPLE_FPS, SAMPLE_FRAMES, SAMPLE_SIZE, SAMPLE_VIDEO
from core.config import Settings
from core.engines.edit import apply_edit
from core.engines.keyframes import Keyframe
from core.errors import InputError, ModelNotAvailable
from core.imaging import load_image
from core.video import VideoInfo, read_video, write_video


@pytest.fixture
def settings(tmp_path):
    return Settings.from_env({}, sd_model="tiny", svd_model="tiny", device="cpu", output_dir=tmp_path)


@pytest.fixture(scope="module")
def sample_frames():
    return read_video(SAMPLE_VIDEO).frames_uint8


def test_sample_clip_is_what_assets_readme_says():
    clip = read_video(SAMPLE_VIDEO)
    assert clip.frames_uint8.shape == (SAMPLE_FRAMES, SAMPLE_SIZE, SAMPLE_SIZE, 3)
    assert clip.fps == SAMPLE_FPS
    assert SAMPLE_VIDEO.stat().st_size < 100_000
    # a zoom: consecutive frames differ, the clip is not a still
    assert np.abs(clip.frames_uint8[1:].astype(int) - clip.frames_uint8[:-1]).mean() > 1.0


# -- limits ------------------------------------------------------------------------------------------


def test_whole_sample_loads_at_its_size(settings, sample_frames):
    video = kf_video.load_video(SAMPLE_VIDEO, settings)
    assert video.num_frames == SAMPLE_FRAMES and video.fps == SAMPLE_FPS and video.stride == 1
    assert np.array_equal(video.frames_uint8, sample_frames)
    assert video.notices == ()
    assert (video.start_s, video.end_s) == (0.0, pytest.approx(2.4))


def test_trim_takes_the_frames_shown_between_start_and_end(settings, sample_frames):
    video = kf_video.load_video(SAMPLE_VIDEO, settings, start_s=0.5, end_s=1.5)
    assert video.source_indices.tolist() == list(range(5, 16))
    assert np.array_equal(video.frames_uint8, sample_frames[5:16])
    assert video.record()["first_source_frame"] == 5


def test_larger_video_is_downscaled_to_the_working_size_with_a_notice(settings, sample_frames):
    video = kf_video.load_video(SAMPLE_VIDEO, settings, working_side=128)
    assert video.size_hw == (128, 128)
    assert video.notices == ("Working at 128x128 (the video is 320x320; the working size is 128 px).",)
    # area averaging: the mean colour is kept within a grey level
    assert abs(video.frames_uint8.mean() - sample_frames.mean()) < 1.0


def test_working_size_keeps_the_aspect_with_even_sides():
    assert kf_video.working_size(1080, 1920, 512) == (288, 512)
    assert kf_video.working_size(101, 99, 512) == (100, 98)  # no upscaling, even for H.264
    assert kf_video.working_size(4096, 4096, 333) == (332, 332)


def test_too_many_frames_are_read_at_a_stride_with_a_notice(settings, sample_frames):
    video = kf_video.load_video(SAMPLE_VIDEO, settings.replace(max_frames=10))
    assert video.stride == 3 and video.source_indices.tolist() == [0, 3, 6, 9, 12, 15, 18, 21]
    assert np.array_equal(video.frames_uint8, sample_frames[::3])
    assert video.fps == pytest.approx(SAMPLE_FPS / 3)
    assert video.notices[0].startswith("Kept every 3rd frame (8 frames at 3.33 fps)")
    assert "KINEMA_MAX_FRAMES" in video.notices[0]


def test_a_part_needing_a_stride_above_four_is_refused_from_the_probe(settings):
    with pytest.raises(InputError, match=r"at most 5 frames are processed \(KINEMA_MAX_FRAMES\)"):
        kf_video.load_video(SAMPLE_VIDEO, settings.replace(max_frames=5))
    # ten minutes at 30 fps: refused from the header alone, naming the longest part that fits
    ten_minutes = VideoInfo(18_000, 30.0, (720, 1280))
    with pytest.raises(InputError) as error:
        kf_video.plan_part(ten_minutes, settings, 0.0, None)
    assert str(error.value) == (
        "The chosen part is 600.0 s long (18000 frames at 30 fps) but at most 64 frames are processed "
        "(KINEMA_MAX_FRAMES); choose a part of at most 8.5 s with the start and end times."
    )
    assert kf_video.plan_part(ten_minutes, settings, 60.0, 68.0) == (1800, 4, 61)
    # the app's default part: the first 64 frames, read one by one
    end_s = kf_video.default_end_s(ten_minutes, settings)
    assert end_s == 2.1 and kf_video.plan_part(ten_minutes, settings, 0.0, end_s) == (0, 1, 64)
    odd_rate = VideoInfo(18_000, 29.97, (720, 1280))
    assert kf_video.plan_part(odd_rate, settings, 0.0, kf_video.default_end_s(odd_rate, settings))[1:] == (
        1,
        63,
    )
    assert kf_video.default_end_s(VideoInfo(24, 10.0, (8, 8)), settings) == 2.4


@pytest.fixture(scope="module")
def bad_videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    corrupt = folder / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"not a video" * 200)
    one_frame = write_video(folder / "one_frame.mp4", np.full((1, 64, 64, 3), 128, np.uint8), 10)
    huge = write_video(folder / "huge.mp4", np.full((2, 4096, 4096, 3), 90, np.uint8), 10)
    return {"corrupt": corrupt, "one_frame": one_frame, "huge": huge}


def test_corrupt_file_is_refused(settings, bad_videos):
    with pytest.raises(InputError, match="corrupt.mp4 cannot be read: it is corrupt or not a video"):
        kf_video.load_video(bad_videos["corrupt"], settings)


def test_single_frame_video_is_refused(settings, bad_videos):
    with pytest.raises(
        InputError, match="holds 1 frame; keyframe editing needs a video of at least 2 frames"
    ):
        kf_video.load_video(bad_videos["one_frame"], settings)


def test_4k_by_4k_video_is_refused_before_decoding(settings, bad_videos):
    with pytest.raises(InputError) as error:
        kf_video.load_video(bad_videos["huge"], settings)
    assert str(error.value) == (
        "The video is 4096x4096; the largest accepted side is 2048 px (KINEMA_MAX_IMAGE_SIDE). "
        "Downscale it first or raise the limit."
    )
    video = kf_video.load_video(bad_videos["huge"], settings.replace(max_image_side=4096), working_side=256)
    assert video.size_hw == (256, 256) and "the video is 4096x4096" in video.notices[0]


def test_upload_over_the_size_limit_is_refused(settings, tmp_path):
    big = tmp_path / "big.mp4"
    big.write_bytes(b"\x00" * (2 * 2**20 + 1))
    with pytest.raises(InputError, match=r"The video is 2 MB; the limit is 1 MB \(KINEMA_MAX_UPLOAD_MB\)"):
        kf_video.load_video(big, settings.replace(max_upload_mb=1))


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (1.0, 1.0, "Choose 0 <= start < end"),
        (-1.0, None, "Choose 0 <= start < end"),
        (5.0, None, "past the end of the video"),
        (2.25, None, "holds 1 frame"),
        (float("nan"), None, "start time must be a number"),
    ],
)
def test_bad_trim_ranges_are_refused(settings, start, end, message):
    with pytest.raises(InputError, match=message):
        kf_video.load_video(SAMPLE_VIDEO, settings, start_s=start, end_s=end)


@pytest.mark.parametrize("side", [32, 5000, 100.5])
def test_working_size_out_of_range_is_refused(settings, side):
    with pytest.raises(InputError, match="working size"):
        kf_video.load_video(SAMPLE_VIDEO, settings, working_side=side)


# -- keyframe lists and prompts ------------------------------------------------------------------------


def test_keyframes_from_text_sorts_and_keeps_suggested_reasons():
    suggested = [Keyframe(0, "first frame"), Keyframe(8, "every 8 frames")]
    keys = keyframes.keyframes_from_text(" 16, 0 8", 24, suggested)
    assert [(k.index, k.reason) for k in keys] == [
        (0, "first frame"),
        (8, "every 8 frames"),
        (16, "chosen by hand"),
    ]
    assert keyframes.format_indices([k.index for k in keys]) == "0, 8, 16"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "List at least one keyframe"),
        ("0, eight", "'eight' is not one"),
        ("0, -3", "'-3' is not one"),
        ("0, 24", "Keyframe 24 is outside the video, which has frames 0 to 23"),
        ("0, 8, 8", "Keyframe 8 is listed twice"),
    ],
)
def test_bad_keyframe_lists_are_refused(text, message):
    with pytest.raises(InputError, match=message):
        keyframes.keyframes_from_text(text, 24)


def test_keyframe_prompts_parse_per_frame_overrides():
    text = "8: the same street at night\n\n 16 :snow: heavy \n"
    assert keyframes.parse_keyframe_prompts(text, [0, 8, 16]) == {
        8: "the same street at night",
        16: "snow: heavy",
    }
    assert keyframes.parse_keyframe_prompts("", [0]) == {}
    with pytest.raises(InputError, match="Frame 5 has a prompt but is not a keyframe"):
        keyframes.parse_keyframe_prompts("5: x", [0, 8])
    with pytest.raises(InputError, match="line 2 is 'no frame here'"):
        keyframes.parse_keyframe_prompts("0: a\nno frame here", [0])
    with pytest.raises(InputError, match="Frame 0 has two per-keyframe prompts"):
        keyframes.parse_keyframe_prompts("0: a\n0: b", [0])


# -- editing -----------------------------------------------------------------------------------------


def test_filter_backend_is_the_core_filter(settings, sample_frames):
    keys = sample_frames[[0, 12]]
    request = backends.EditRequest(filter="adjust", filter_params={"hue_deg": 90.0})
    edited = backends.edit_keyframes(keys, [0, 12], request, settings)
    assert np.array_equal(edited, apply_edit(keys, "adjust", hue_deg=90.0))
    assert np.abs(edited.astype(int) - keys).mean() > 10
    assert request.record() == {
        "backend": "filter",
        "filter": "adjust",
        "params": {"brightness": 0.0, "contrast": 1.0, "saturation": 1.0, "hue_deg": 90.0, "gamma": 1.0},
    }


def test_edit_requests_are_checked_before_any_work():
    with pytest.raises(InputError, match="hue_deg"):
        backends.EditRequest(filter="adjust", filter_params={"hue_deg": 400.0}).check()
    with pytest.raises(InputError, match="needs a 'reference'"):
        backends.EditRequest(filter="color_grade").check()
    with pytest.raises(InputError, match="The SD edit needs a prompt"):
        backends.EditRequest(backend="sd").check()
    with pytest.raises(InputError, match="Unknown edit backend 'gan'"):
        backends.EditRequest(backend="gan").check()
    # per-keyframe prompts alone are enough for SD
    backends.EditRequest(backend="sd", keyframe_prompts={0: "snow"}).check()


def test_sd_backend_edits_odd_sized_keyframes(settings, sample_frames):
    keys = kf_video.resize_frames(sample_frames[[0, 12]], (36, 44))  # not multiples of 8: padded, then cut
    request = backends.EditRequest(
        backend="sd",
        prompt="snow",
        keyframe_prompts={12: "rain"},
        strength=0.5,
        guidance=1.0,
        steps=2,
        seed=3,
    )
    edited = backends.edit_keyframes(keys, [0, 12], request, settings)
    assert edited.shape == keys.shape and edited.dtype == np.uint8
    assert np.abs(edited.astype(int) - keys).mean() > 5  # random tiny weights: far from the input
    assert request.record()["keyframe_prompts"] == {"12": "rain"}


def test_missing_sd_weights_name_the_setting(settings, sample_frames, tmp_path):
    request = backends.EditRequest(backend="sd", prompt="snow")
    with pytest.raises(ModelNotAvailable, match=r"set KINEMA_SD_MODEL \(or --sd-model\)"):
        backends.edit_keyframes(
            sample_frames[:1], [0], request, settings.replace(sd_model=str(tmp_path / "no"))
        )


def test_fit_image_converts_and_resizes_uploads():
    grey = np.full((10, 20), 77, np.uint8)
    assert np.array_equal(backends.fit_image(grey, (4, 8)), np.full((4, 8, 3), 77, np.uint8))
    rgba = np.zeros((4, 8, 4), np.uint8)
    assert backends.fit_image(rgba, (4, 8)).shape == (4, 8, 3)
    with pytest.raises(InputError, match="not an image"):
        backends.fit_image(np.zeros((0, 3), np.uint8), (4, 8))


# -- inbetweening -------------------------------------------------------------------------------------


def test_flow_and_crossfade_keep_keyframes_exact(settings, sample_frames):
    frames = kf_video.resize_frames(sample_frames[:9], (96, 96))
    indices = [0, 4, 8]
    edited = apply_edit(frames[indices], "adjust", hue_deg=120.0)
    seen: list[tuple[int, int]] = []
    for backend in ("flow", "crossfade"):
        seen.clear()
        out = backends.inbetween(
            frames, indices, edited, backends.InterpRequest(backend=backend), settings,
            callback=lambda done, total: seen.append((done, total)),
        )  # fmt: skip
        assert out.shape == frames.shape and np.array_equal(out[indices], edited)
        assert seen[-1] == (9, 9)
        # the hue-rotated edit reaches the inbetweens: they are far from the originals
        assert np.abs(out[[2, 6]].astype(int) - frames[[2, 6]]).mean() > 10


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"backend": "gan"}, "Unknown inbetweening backend 'gan'"),
        ({"fps": 0.0}, "frame rate must be between 0 and 120"),
        ({"flow_method": "magic"}, "Unknown flow method 'magic'"),
        ({"motion_bucket": 300}, "motion bucket must be between 0 and 255"),
        ({"decode_chunk_size": 0}, "Decode chunk size must be a whole number from 1 to 25, got 0"),
    ],
)
def test_bad_inbetween_requests_are_refused(change, message):
    with pytest.raises(InputError, match=message):
        backends.InterpRequest(**change).check()


def test_svd_needs_keyframes_at_both_ends(settings, sample_frames):
    frames = sample_frames[:5]
    with pytest.raises(InputError, match="make frames 0 and 4 keyframes"):
        backends.inbetween(
            frames, [0, 2], frames[[0, 2]], backends.InterpRequest(backend="svd-trf"), settings
        )


def test_missing_svd_weights_name_the_setting(settings, sample_frames, tmp_path):
    frames = sample_frames[:3]
    missing = settings.replace(svd_model=str(tmp_path / "no"))
    with pytest.raises(ModelNotAvailable, match=r"set KINEMA_SVD_MODEL \(or --svd-model\)"):
        backends.inbetween(frames, [0, 2], frames[[0, 2]], backends.InterpRequest(backend="svd-trf"), missing)


def test_svd_lora_without_a_lora_says_so(settings):
    assert backends.backend_notes(backends.InterpRequest(backend="flow"), settings) == []
    (note,) = backends.backend_notes(backends.InterpRequest(backend="svd-lora"), settings)
    assert "KINEMA_SVD_INTERP_LORA is empty" in note


@pytest.mark.slow
def test_svd_fills_each_gap_and_keeps_keyframes(settings, sample_frames):
    frames = kf_video.resize_frames(sample_frames[:4], (48, 56))  # padded to 64x64 for SVD, then cut
    indices = [0, 2, 3]  # gaps of 2 and 1 (nothing to generate in the second)
    edited = apply_edit(frames[indices], "adjust", hue_deg=60.0)
    request = backends.InterpRequest(backend="svd-trf", steps=1, decode_chunk_size=2)
    seen: list[tuple[int, int]] = []
    out = backends.inbetween(
        frames, indices, edited, request, settings, fps=SAMPLE_FPS, callback=lambda *done: seen.append(done)
    )
    assert out.shape == frames.shape and np.array_equal(out[indices], edited)
    assert not np.array_equal(out[1], frames[1]) and seen == [(4, 4)]


def test_noise_reinjection_reaches_the_pipeline_and_the_record(settings, sample_frames):
    frames = kf_video.resize_frames(sample_frames[:3], (32, 32))
    plain, reinjected = (
        backends.InterpRequest(backend="svd-trf", steps=2, decode_chunk_size=2, noise_reinjection=n)
        for n in (0, 2)
    )
    outputs = [
        backends.inbetween(frames, [0, 2], frames[[0, 2]], r, settings, fps=SAMPLE_FPS)
        for r in (plain, reinjected)
    ]
    assert not np.array_equal(outputs[0][1], outputs[1][1])
    assert (
        reinjected.record()["noise_reinjection"] == 2
        and "noise_reinjection" not in backends.InterpRequest().record()
    )
    with pytest.raises(
        InputError, match="Noise re-injection repeats must be a whole number from 0 to 8, got 9"
    ):
        backends.InterpRequest(noise_reinjection=9).check()


def test_svd_lora_is_on_the_shared_unet_for_its_job_only(settings, sample_frames, tmp_path):
    from core import lora
    from core.models import load_pipeline, tiny_svd_components

    trained = tiny_svd_components()["unet"]
    lora.add_lora(trained, "trained", init=False)  # random LoRA weights: a visible change
    path = lora.save_lora(trained, "trained", tmp_path / "interp.safetensors")
    frames = kf_video.resize_frames(sample_frames[:3], (32, 32))

    def inbetween(weights: str) -> np.ndarray:
        request = backends.InterpRequest(backend="svd-lora", steps=1, decode_chunk_size=2)
        with_lora = settings.replace(svd_interp_lora=weights)
        return backends.inbetween(frames, [0, 2], frames[[0, 2]], request, with_lora, fps=SAMPLE_FPS)

    stock = inbetween("")  # no LoRA configured: the stock weights
    assert np.abs(inbetween(str(path))[1].astype(int) - stock[1]).max() > 0
    assert lora.list_loras(load_pipeline("svd", settings).unet) == []  # taken off the cached UNet again
    np.testing.assert_array_equal(inbetween(""), stock)


# -- outputs ---------------------------------------------------------------------------------------------


def test_the_job_writes_every_file_readably_and_its_record(settings, sample_frames, tmp_path):
    frames = sample_frames[:6]
    request = job.KeyframeRequest(
        video=str(SAMPLE_VIDEO),
        end_s=0.55,
        keyframes="0, 5",
        keyframe_reasons={0: "first frame", 5: "last frame"},
        edit=backends.EditRequest(filter="pencil"),
    )
    folder = new_run_folder(settings.output_dir, "keyframe")
    done = job.run(request, settings, job.OutputFiles.in_folder(folder), action="ui:inbetween")
    files = done.files
    assert [p.name for p in files.paths()] == [
        "result.mp4",
        "result.gif",
        "side_by_side.mp4",
        "keyframes.zip",
        "params.json",
    ]
    edited = apply_edit(frames[[0, 5]], "pencil")
    assert np.array_equal(done.result_uint8[[0, 5]], edited)
    mp4 = read_video(files.video_mp4)
    assert mp4.num_frames == 6 and mp4.fps == 10.0
    assert np.abs(mp4.frames_uint8.astype(int) - done.result_uint8).mean() < 3  # H.264 at crf 18
    assert read_video(files.video_gif).num_frames == 6
    assert read_video(files.side_by_side_mp4).size_hw == (320, 2 * 320 + 8)
    with zipfile.ZipFile(files.keyframes_zip) as archive:
        assert archive.namelist() == [
            "frame_0000_original.png", "frame_0000_edited.png", "frame_0005_original.png", "frame_0005_edited.png",
        ]  # fmt: skip
        assert np.array_equal(load_image(archive.read("frame_0005_edited.png")), edited[1])
    record = RunRecord.read(files.params_json)
    params = record.arguments
    assert (record.app, record.action, record.command) == ("keyframe", "ui:inbetween", None)
    assert params["video"]["frames"] == 6 and params["video"]["source"] == "sample.mp4"
    edit_record = {**backends.EditRequest(filter="pencil").record(), "batch": [0, 5]}
    assert params["keyframes"][1] == {"index": 5, "reason": "last frame", "edit": edit_record}
    assert params["inbetween"] == {"backend": "flow", "fps": None, "flow_method": "dis", "output_fps": 10.0}
    assert record.settings["sd_model"] == "tiny" and set(record.timings_s) == {
        "load",
        "edit",
        "motion",
        "inbetween",
    }
    assert record.outputs == {
        "video_mp4": "result.mp4", "video_gif": "result.gif", "side_by_side_mp4": "side_by_side.mp4",
        "keyframes_zip": "keyframes.zip",
    }  # fmt: skip
