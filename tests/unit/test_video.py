"""core.video: real files written to tmp_path and read back; sampling; bad files raise InputError."""

from __future__ import annotations

import os
import subprocess

import imageio_ffmpeg
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from core.errors import InputError
from core.video import VideoInfo, probe_video, read_video, sample_frame_indices, side_by_side, write_video


def smooth_frames(num_frames: int = 12, height: int = 64, width: int = 96) -> np.ndarray:
    """Slowly moving colour gradients (T,H,W,3) uint8: what a codec handles well."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = [
        np.stack(
            [
                128 + 90 * np.sin((xx + 3 * t) / 25),
                128 + 90 * np.cos(yy / 21 + t / 5),
                60 + (xx + yy + 4 * t) * 0.5,
            ],
            axis=-1,
        )
        for t in range(num_frames)
    ]
    return np.clip(frames, 0, 255).astype(np.uint8)


def few_colour_frames(num_frames: int = 8, height: int = 40, width: int = 56) -> np.ndarray:
    """Frames with 64 distinct colours, so a GIF palette holds them exactly."""
    rng = np.random.default_rng(0)
    levels = np.array([0, 85, 170, 255], np.uint8)
    return levels[rng.integers(0, 4, (num_frames, height, width, 3))]


@pytest.fixture(scope="module")
def mp4_16(tmp_path_factory) -> tuple:
    """A 16-frame, 8 fps mp4 and the frames it was written from."""
    frames = smooth_frames(16)
    return write_video(tmp_path_factory.mktemp("mp4") / "clip.mp4", frames, 8), frames


# -- sample_frame_indices ----------------------------------------------------------------------------


def test_sampling_examples() -> None:
    assert sample_frame_indices(5).tolist() == [0, 1, 2, 3, 4]
    assert sample_frame_indices(10, stride=3).tolist() == [0, 3, 6, 9]
    assert sample_frame_indices(10, stride=3, start=2).tolist() == [2, 5, 8]
    assert sample_frame_indices(16, num_frames=5).tolist() == [0, 4, 8, 11, 15]
    assert sample_frame_indices(16, num_frames=1, start=7).tolist() == [7]
    assert sample_frame_indices(20, num_frames=4, stride=5, start=1).tolist() == [1, 6, 11, 16]
    assert sample_frame_indices(4, num_frames=4).tolist() == [0, 1, 2, 3]


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 500), st.integers(1, 60), st.integers(0, 40))
def test_evenly_spaced_sampling_spans_the_clip(total, num_frames, start) -> None:
    if start + num_frames > total:
        with pytest.raises(InputError):
            sample_frame_indices(total, num_frames=num_frames, start=start)
        return
    indices = sample_frame_indices(total, num_frames=num_frames, start=start)
    assert indices.dtype == np.int64 and len(indices) == num_frames
    assert indices[0] == start
    assert indices[-1] == (total - 1 if num_frames > 1 else start)
    steps = np.diff(indices)
    assert np.all(steps >= 1)  # distinct, increasing
    if len(steps):
        assert steps.max() - steps.min() <= 1  # as even as integers allow


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 300), st.integers(1, 20), st.integers(0, 40), st.one_of(st.none(), st.integers(1, 20)))
def test_stride_sampling_matches_range(total, stride, start, num_frames) -> None:
    expected = list(range(start, total, stride))
    if num_frames is not None:
        expected = expected[:num_frames] if len(expected) >= num_frames else None
    if not expected:
        with pytest.raises(InputError):
            sample_frame_indices(total, stride=stride, start=start, num_frames=num_frames)
        return
    assert sample_frame_indices(total, stride=stride, start=start, num_frames=num_frames).tolist() == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"total": 0}, "no frames"),
        ({"total": 5, "start": 5}, "past the end"),
        ({"total": 5, "num_frames": 6}, "has 5 frames"),
        ({"total": 9, "num_frames": 4, "stride": 3}, "at stride 3"),
        ({"total": 5, "num_frames": 0}, "number of frames"),
        ({"total": 5, "stride": 0}, "stride"),
        ({"total": 5, "start": -1}, "start frame"),
        ({"total": 5, "num_frames": 2.5}, "integer"),
        ({"total": 5, "stride": True}, "integer"),
    ],
)
def test_sampling_rejects_impossible_requests(kwargs, message) -> None:
    total = kwargs.pop("total")
    with pytest.raises(InputError, match=message):
        sample_frame_indices(total, **kwargs)


# -- mp4 ---------------------------------------------------------------------------------------------


def test_mp4_round_trip_keeps_shape_fps_count_and_pixels(mp4_16) -> None:
    path, frames = mp4_16
    clip = read_video(path)
    assert clip.frames_uint8.shape == frames.shape and clip.frames_uint8.dtype == np.uint8
    assert clip.fps == 8.0
    assert clip.source_indices.tolist() == list(range(16))
    error = np.abs(clip.frames_uint8.astype(np.float32) - frames).mean()
    assert error < 1.5, error  # measured 0.95 at crf 18 on this content
    assert probe_video(path) == VideoInfo(16, 8.0, (64, 96))


def video_stream_line(path) -> str:
    """ffmpeg's description of the file's video stream (codec, pixel format, colours, rate, time base)."""
    result = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-i", str(path)], capture_output=True, text=True
    )
    return next(line for line in result.stderr.splitlines() if "Video:" in line)


def test_mp4_is_h264_yuv420p_bt709(mp4_16) -> None:
    path, _ = mp4_16
    stream = video_stream_line(path)
    assert "h264" in stream and "yuv420p(tv, bt709" in stream and "8 fps" in stream, stream


def test_mp4_sampling_by_count_and_stride(mp4_16) -> None:
    path, _ = mp4_16
    full = read_video(path).frames_uint8

    spread = read_video(path, num_frames=5)
    assert spread.source_indices.tolist() == [0, 4, 8, 11, 15]
    np.testing.assert_array_equal(spread.frames_uint8, full[[0, 4, 8, 11, 15]])
    assert spread.fps == pytest.approx(8 / 3.75)

    strided = read_video(path, stride=3, start=1)
    assert strided.source_indices.tolist() == [1, 4, 7, 10, 13]
    assert strided.fps == pytest.approx(8 / 3)
    np.testing.assert_array_equal(strided.frames_uint8, full[1::3])

    capped = read_video(path, stride=2, max_frames=3)
    assert capped.source_indices.tolist() == [0, 2, 4] and capped.num_frames == 3
    both = read_video(path, num_frames=4, stride=4, start=2)
    assert both.source_indices.tolist() == [2, 6, 10, 14] and both.fps == 2.0


def test_mp4_requests_the_clip_cannot_meet_raise(mp4_16) -> None:
    path, _ = mp4_16
    with pytest.raises(InputError, match="has 16 frames"):
        read_video(path, num_frames=17)
    with pytest.raises(InputError, match="has 16 frames"):
        read_video(path, num_frames=5, stride=4)
    with pytest.raises(InputError, match="past the end"):
        read_video(path, start=16)
    with pytest.raises(InputError, match="at most 8"):
        read_video(path, num_frames=10, max_frames=8)


def test_mp4_fractional_fps(tmp_path) -> None:
    for fps in (12.5, 29.97):
        path = write_video(tmp_path / f"clip_{fps}.mp4", smooth_frames(6, 32, 32), fps)
        info = probe_video(path)
        assert info.num_frames == 6 and info.fps == pytest.approx(fps, abs=0.005)
        assert read_video(path).fps == pytest.approx(fps, abs=0.005)


def test_mp4_rate_reaches_imageio_ffmpeg_as_a_float_and_the_file_keeps_it_exact(
    tmp_path, monkeypatch
) -> None:
    # imageio-ffmpeg before 0.7 accepts only an int or float fps (a Fraction failed this check, so every mp4
    # write crashed) and rounds it to 0.01; from 0.7 it passes a float to ffmpeg as its exact rational.
    real_write_frames = imageio_ffmpeg.write_frames
    rates = []

    def write_frames(*args, fps, **kwargs):
        assert isinstance(fps, float | int), "fps must be float"
        rates.append(fps)
        return real_write_frames(*args, fps=fps, **kwargs)

    monkeypatch.setattr(imageio_ffmpeg, "write_frames", write_frames)
    ntsc = 30000 / 1001
    stream = video_stream_line(write_video(tmp_path / "ntsc.mp4", smooth_frames(6, 32, 32), ntsc))
    assert rates == [ntsc]
    assert "29.97 fps" in stream and "30k tbn" in stream, stream  # 30000/1001, not 2997/100 (11988 tbn)


def test_odd_sizes_are_padded_to_even_by_repeating_the_edge(tmp_path) -> None:
    frames = smooth_frames(6, 33, 47)
    clip = read_video(write_video(tmp_path / "odd.mp4", frames, 8))
    assert clip.size_hw == (34, 48)
    assert np.abs(clip.frames_uint8[:, :33, :47].astype(np.float32) - frames).mean() < 1.5
    # The added row / column repeat their neighbours (up to codec error), not black.
    assert np.abs(clip.frames_uint8[:, 33].astype(np.float32) - clip.frames_uint8[:, 32]).mean() < 3
    assert np.abs(clip.frames_uint8[:, :, 47].astype(np.float32) - clip.frames_uint8[:, :, 46]).mean() < 3


def test_truncated_mp4_gives_the_frames_that_decode(tmp_path) -> None:
    noise = np.random.default_rng(1).integers(0, 256, (20, 64, 64, 3), dtype=np.uint8)
    data = write_video(tmp_path / "noise.mp4", noise, 8).read_bytes()
    half = tmp_path / "half.mp4"
    half.write_bytes(data[: len(data) // 2])
    assert probe_video(half).num_frames == 20  # the header still says 20 frames
    decoded = read_video(half)
    assert 1 <= decoded.num_frames < 20
    # Evenly spaced sampling follows the frames that exist, not the header's estimate.
    spread = read_video(half, num_frames=3)
    assert spread.source_indices.tolist()[-1] == decoded.num_frames - 1
    with pytest.raises(InputError, match="Use a longer video"):
        read_video(half, num_frames=decoded.num_frames + 1)


def test_webm_reads(tmp_path) -> None:
    frames = smooth_frames(5, 32, 48)
    path = tmp_path / "clip.webm"
    writer = imageio_ffmpeg.write_frames(str(path), (48, 32), fps=10, codec="libvpx-vp9", macro_block_size=1)
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    clip = read_video(path)
    assert clip.frames_uint8.shape == frames.shape and clip.fps == 10.0
    assert np.abs(clip.frames_uint8.astype(np.float32) - frames).mean() < 6


# -- gif ---------------------------------------------------------------------------------------------


def test_gif_round_trip_is_exact_for_palette_content_with_repeated_frames(tmp_path) -> None:
    frames = few_colour_frames(8)
    frames[3] = frames[2]  # Pillow's writer merges identical neighbours; reading restores them
    frames[4] = frames[2]
    path = write_video(tmp_path / "clip.gif", frames, 10)
    assert Image.open(path).n_frames == 6
    clip = read_video(path)
    assert clip.fps == 10.0
    np.testing.assert_array_equal(clip.frames_uint8, frames)
    assert probe_video(path) == VideoInfo(8, 10.0, (40, 56))


def test_gif_of_smooth_content_is_near(tmp_path) -> None:
    frames = smooth_frames(6)
    clip = read_video(write_video(tmp_path / "smooth.gif", frames, 5))
    assert clip.frames_uint8.shape == frames.shape and clip.fps == 5.0
    error = np.abs(clip.frames_uint8.astype(np.float32) - frames).mean()
    assert error < 4.5, error  # measured 3.34: a 256-colour palette per frame


def test_gif_fps_is_rounded_to_whole_centiseconds(tmp_path) -> None:
    frames = few_colour_frames(3)
    assert read_video(write_video(tmp_path / "a.gif", frames, 8)).fps == pytest.approx(100 / 12)
    assert read_video(write_video(tmp_path / "b.gif", frames, 200)).fps == 50.0


def _save_gif(path, frames, delays_ms) -> None:
    images = [Image.fromarray(frame) for frame in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=delays_ms, loop=0)


def test_gif_variable_delays_become_a_constant_rate(tmp_path) -> None:
    frames = few_colour_frames(3)
    _save_gif(tmp_path / "multiples.gif", frames, [100, 200, 100])
    clip = read_video(tmp_path / "multiples.gif")
    assert clip.fps == 10.0 and clip.num_frames == 4
    np.testing.assert_array_equal(clip.frames_uint8, frames[[0, 1, 1, 2]])

    _save_gif(tmp_path / "irregular.gif", frames, [100, 150, 100])
    irregular = read_video(tmp_path / "irregular.gif")
    assert irregular.num_frames == 3 and irregular.fps == pytest.approx(3000 / 350)

    _save_gif(tmp_path / "zero.gif", frames, [0, 0, 0])  # browsers play 0 ms as 100 ms
    assert read_video(tmp_path / "zero.gif").fps == 10.0


# -- frame folders -----------------------------------------------------------------------------------


def test_frame_folder_reads_in_natural_order(tmp_path) -> None:
    frames = few_colour_frames(12)
    for index, frame in enumerate(frames):
        Image.fromarray(frame).save(tmp_path / f"frame{index}.png")  # frame2 must come before frame10
    (tmp_path / "notes.txt").write_text("not a frame")
    clip = read_video(tmp_path, folder_fps=12)
    assert clip.fps == 12.0
    np.testing.assert_array_equal(clip.frames_uint8, frames)
    assert read_video(tmp_path).fps == 8.0
    assert probe_video(tmp_path) == VideoInfo(12, 8.0, (40, 56))
    assert read_video(tmp_path, num_frames=3).source_indices.tolist() == [0, 6, 11]


def test_frame_folder_problems_raise_input_error(tmp_path) -> None:
    with pytest.raises(InputError, match="no .png or .jpg"):
        read_video(tmp_path)
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    Image.new("RGB", (8, 6)).save(tmp_path / "b.jpg")
    with pytest.raises(InputError, match="one size"):
        read_video(tmp_path)
    (tmp_path / "b.jpg").write_bytes(b"garbage")
    with pytest.raises(InputError, match="not a readable image"):
        read_video(tmp_path)
    with pytest.raises(InputError, match="positive"):
        read_video(tmp_path, folder_fps=0)


# -- bad files ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["random.mp4", "random.webm", "random.gif", "text.mp4", "head.mp4", "empty.mp4"]
)
def test_corrupt_files_raise_input_error(tmp_path, mp4_16, name) -> None:
    path = tmp_path / name
    if name.startswith("random"):
        path.write_bytes(os.urandom(4096))
    elif name == "text.mp4":
        path.write_text("this is not a video\n" * 20)
    elif name == "head.mp4":
        path.write_bytes(mp4_16[0].read_bytes()[:1024])  # the header is cut off
    else:
        path.write_bytes(b"")
    for reader in (read_video, probe_video):
        with pytest.raises(InputError, match="empty|cannot be read"):
            reader(path)


def test_missing_file_raises_input_error(tmp_path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_video(tmp_path / "missing.mp4")
    with pytest.raises(InputError, match="does not exist"):
        probe_video(tmp_path / "missing.mp4")


def test_write_rejects_bad_input(tmp_path) -> None:
    frames = few_colour_frames(2)
    with pytest.raises(InputError, match="uint8"):
        write_video(tmp_path / "a.mp4", frames.astype(np.float32), 8)
    with pytest.raises(InputError, match=r"\(T,H,W,3\)"):
        write_video(tmp_path / "a.mp4", frames[0], 8)
    with pytest.raises(InputError, match="at least one frame"):
        write_video(tmp_path / "a.mp4", frames[:0], 8)
    with pytest.raises(InputError, match="frame rate"):
        write_video(tmp_path / "a.mp4", frames, 0)
    with pytest.raises(InputError, match=".mp4 or .gif"):
        write_video(tmp_path / "a.avi", frames, 8)
    with pytest.raises(InputError, match="crf"):
        write_video(tmp_path / "a.mp4", frames, 8, crf=60)
    with pytest.raises(OSError, match="folder"):
        write_video(tmp_path / "no" / "such" / "folder.mp4", frames, 8)


def test_side_by_side_puts_clips_in_step_with_gaps():
    left = np.full((3, 4, 5, 3), 10, np.uint8)
    still = np.full((1, 4, 2, 3), 200, np.uint8)  # one image beside every frame
    both = side_by_side(left, still, gap_px=1)
    assert both.shape == (3, 4, 5 + 1 + 2, 3)
    assert (both[:, :, :5] == 10).all() and (both[:, :, 5] == 0).all() and (both[:, :, 6:] == 200).all()
    assert side_by_side(left, left, gap_px=0).shape == (3, 4, 10, 3)
