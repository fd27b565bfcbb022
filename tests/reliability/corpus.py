"""The bad-input corpus, generated as data: broken and hostile images, videos and trajectory files.

Every case is written by code from a fixed seed (no binary blobs in the repository). `python -m
tests.reliability.corpus DIR` writes the whole corpus to DIR to look at or to throw at a running server;
the reliability suites build it once per session (`tests/reliability/conftest.py`).

A case says whether a careful tool must refuse it (`refuse=True`: truncated, empty, hostile, not the right
kind of file) or may accept it (`refuse=False`: odd but valid, e.g. a 16-bit PNG or a one-pixel image).
Either way the answer is a success or one clear message (`assert_clear_message`), never a traceback.
"""

from __future__ import annotations

import functools
import io
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

SEED = 17
GOOD_SIZE = (96, 64)  # (width, height) of the valid image everything broken is derived from
BOMB_SIDE = 12_000  # the 12000x12000 PNG of the issue: a small file that decodes to 432 MB
IMAGE_FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP", "bmp": "BMP", "gif": "GIF", "tiff": "TIFF"}
MESSAGE_LIMIT = 400  # characters: longer than this is a dump, not a message


@dataclass(frozen=True)
class Case:
    """One corpus entry: `path` for files, `text` for payloads given as text (trajectory JSON)."""

    name: str
    refuse: bool
    path: Path | None = None
    text: str | None = None


def assert_clear_message(message: str, *, forbidden: tuple[str, ...] = ()) -> None:
    """One line a user can read: no traceback, no exception class, no server path, not a dump.

    `forbidden` adds strings that must not appear (e.g. the server's output folder or temp folder).
    """
    text = str(message).strip()
    assert text, "empty message"
    assert "\n" not in text, f"more than one line: {text!r}"
    assert len(text) <= MESSAGE_LIMIT, f"{len(text)} characters: {text[:120]!r}..."
    assert "Traceback" not in text and not re.search(r"\b[A-Z]\w*(Error|Exception)\b:", text), text
    assert not re.search(r"(^|[\s'\"(])/(tmp|home|root|var|private|work)/", text), f"server path: {text!r}"
    for word in forbidden:
        assert word not in text, f"{word!r} in {text!r}"


# -- images ------------------------------------------------------------------------------------------


def good_image_uint8() -> np.ndarray:
    width, height = GOOD_SIZE
    y, x = np.mgrid[0:height, 0:width]
    ramp = np.stack([x * 255 // (width - 1), y * 255 // (height - 1), (x + y) % 256], axis=-1)
    noise = np.random.default_rng(SEED).integers(
        -24, 25, ramp.shape
    )  # so no encoder packs it into a few bytes
    return np.clip(ramp + noise, 0, 255).astype(np.uint8)


def _encoded(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG signature and IHDR claiming width x height, and nothing else (no pixel data)."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


def _png_rgb48(image_uint8: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG (PIL cannot write one; OpenCV can)."""
    import cv2

    ok, data = cv2.imencode(".png", (image_uint8[..., ::-1].astype(np.uint16) * 257))
    assert ok
    return data.tobytes()


def _exif_rotated_jpeg(image: Image.Image) -> bytes:
    """A JPEG whose EXIF says "rotate 90 degrees to show upright" (orientation 6)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return _encoded(image, "JPEG", exif=exif.tobytes())


def _zip_bytes() -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("image.png", b"not really")
    return buffer.getvalue()


@functools.cache
def image_payloads() -> dict[str, tuple[bytes, bool]]:
    """Broken, hostile and odd images: file name -> (bytes, refuse)."""
    rng = np.random.default_rng(SEED)
    good = Image.fromarray(good_image_uint8())
    cases: list[tuple[str, bytes, bool]] = []
    for ext, fmt in IMAGE_FORMATS.items():
        data = _encoded(good, fmt)
        for percent in (10, 50, 90):
            cases.append((f"truncated{percent}.{ext}", data[: len(data) * percent // 100], True))
        cases.append((f"header16.{ext}", data[:16], True))
        flipped = bytearray(data)
        middle = slice(len(data) // 3, len(data) // 3 + 64)
        flipped[middle] = rng.integers(0, 256, len(flipped[middle]), dtype=np.uint8).tobytes()
        cases.append((f"scrambled.{ext}", bytes(flipped), False))  # some decoders show garbage pixels
        cases.append(
            (f"wrong_extension_{ext}.png" if ext != "png" else "wrong_extension_png.jpg", data, False)
        )
    cases += [
        ("empty.png", b"", True),
        ("random_bytes.png", rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(), True),
        ("text.png", b"this is not an image\n", True),
        ("json.png", json.dumps({"an": "object"}).encode(), True),
        ("html.jpg", b"<html><body><img src=x onerror=alert(1)></body></html>", True),
        ("svg.png", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', True),
        ("pdf.png", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n", True),
        ("header_claims_100000.png", _png_header_only(100_000, 100_000), True),
        ("header_claims_1x1_nodata.png", _png_header_only(1, 1), True),
        ("bomb_12000.png", _encoded(Image.new("1", (BOMB_SIDE, BOMB_SIDE)), "PNG", optimize=True), True),
        ("one_pixel.png", _encoded(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"), False),
        ("sliver_1x2000.png", _encoded(Image.new("RGB", (1, 2000), (10, 200, 10)), "PNG"), False),
        (
            "grey16.png",
            _encoded(Image.fromarray(good_image_uint8()[..., 0].astype(np.uint16) * 257), "PNG"),
            False,
        ),
        ("rgba.png", _encoded(good.convert("RGBA"), "PNG"), False),
        ("la.png", _encoded(good.convert("LA"), "PNG"), False),
        ("palette.png", _encoded(good.convert("P"), "PNG"), False),
        ("cmyk.jpg", _encoded(good.convert("CMYK"), "JPEG"), False),
        ("grey.jpg", _encoded(good.convert("L"), "JPEG"), False),
        (
            "animated.gif",
            _encoded(
                good.convert("P"), "GIF", save_all=True, append_images=[good.convert("P").rotate(90)] * 3
            ),
            False,
        ),
        ("rgb48.png", _png_rgb48(good_image_uint8()), False),
        ("exif_rotated.jpg", _exif_rotated_jpeg(good), False),
        ("progressive.jpg", _encoded(good, "JPEG", progressive=True), False),
        ("two_by_two.jpg", _encoded(Image.new("RGB", (2, 2), (90, 90, 200)), "JPEG"), False),
        ("cmyk.tiff", _encoded(good.convert("CMYK"), "TIFF"), False),
        ("animated.webp", _encoded(good, "WEBP", save_all=True, append_images=[good.rotate(90)]), False),
        ("icon_named.png", _encoded(good, "ICO"), False),
        ("targa_named.png", _encoded(good, "TGA"), False),
        ("zip_named.png", _zip_bytes(), True),
        ("gzip_named.png", __import__("gzip").compress(_encoded(good, "PNG")), True),
    ]
    return {name: (data, refuse) for name, data, refuse in cases}


def image_cases(folder: Path) -> list[Case]:
    """The images of `image_payloads`, written into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, (data, _) in image_payloads().items():
        (folder / name).write_bytes(data)
    return [
        Case(f"image:{name}", refuse, path=folder / name) for name, (_, refuse) in image_payloads().items()
    ]


# -- videos ------------------------------------------------------------------------------------------


def _ffmpeg(*args: str) -> None:
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", *args], check=True, timeout=60)


def good_clip_uint8(num_frames: int = 8) -> np.ndarray:
    base = good_image_uint8()
    return np.stack([np.roll(base, 3 * t, axis=1) for t in range(num_frames)])


VIDEO_NAMES = (
    *(f"truncated{percent}.mp4" for percent in (5, 30, 60, 95)),
    *("head_cut.mp4 empty.mp4 random_bytes.mp4 text.mp4 png_named.mp4 json.mov gif_one_frame.gif".split()),
    *("gif_truncated.gif one_frame.mp4 audio_only.mp4 sliver_4000x16.mp4".split()),
    *("frames_empty/ frames_not_images/ frames_mixed_sizes/".split()),
)


def video_cases(folder: Path) -> list[Case]:
    """Broken, hostile and odd videos (files and frame folders), written into `folder`."""
    from core.video import write_video

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED + 1)
    good = write_video(folder / "good.mp4", good_clip_uint8(), 8.0)
    data = good.read_bytes()
    cases: list[Case] = []

    def add(name: str, payload: bytes, refuse: bool) -> None:
        (folder / name).write_bytes(payload)
        cases.append(Case(f"video:{name}", refuse, path=folder / name))

    for percent in (5, 30, 60):
        add(f"truncated{percent}.mp4", data[: len(data) * percent // 100], True)
    add("truncated95.mp4", data[: len(data) * 95 // 100], False)  # the frames before the cut decode
    add("head_cut.mp4", data[1024:], True)
    add("empty.mp4", b"", True)
    add("random_bytes.mp4", rng.integers(0, 256, 8192, dtype=np.uint8).tobytes(), True)
    add("text.mp4", b"not a video at all\n", True)
    add("png_named.mp4", _encoded(Image.fromarray(good_image_uint8()), "PNG"), True)
    add("json.mov", json.dumps({"frames": []}).encode(), True)
    add("gif_one_frame.gif", _encoded(Image.fromarray(good_image_uint8()).convert("P"), "GIF"), False)
    add("gif_truncated.gif", _encoded(Image.fromarray(good_image_uint8()).convert("P"), "GIF")[:100], True)
    write_video(folder / "one_frame.mp4", good_clip_uint8(1), 8.0)
    cases.append(Case("video:one_frame.mp4", False, path=folder / "one_frame.mp4"))
    _ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "anullsrc=r=8000:cl=mono",
        "-t",
        "0.5",
        "-c:a",
        "aac",
        str(folder / "audio_only.mp4"),
    )
    cases.append(Case("video:audio_only.mp4", True, path=folder / "audio_only.mp4"))
    _ffmpeg("-f", "lavfi", "-i", "color=c=red:s=4000x16:r=8", "-frames:v", "4", "-pix_fmt", "yuv420p",
            str(folder / "sliver_4000x16.mp4"))  # fmt: skip
    cases.append(Case("video:sliver_4000x16.mp4", False, path=folder / "sliver_4000x16.mp4"))
    for name, files in {
        "frames_empty": {},
        "frames_not_images": {"0001.png": b"nope", "0002.png": b"nope"},
        "frames_mixed_sizes": {
            "0001.png": _encoded(Image.new("RGB", (64, 64)), "PNG"),
            "0002.png": _encoded(Image.new("RGB", (32, 48)), "PNG"),
        },
    }.items():
        (folder / name).mkdir(exist_ok=True)
        for file, payload in files.items():
            (folder / name / file).write_bytes(payload)
        cases.append(Case(f"video:{name}/", True, path=folder / name))
    assert [case.name for case in cases] == [f"video:{name}" for name in VIDEO_NAMES], "update VIDEO_NAMES"
    return cases


# -- trajectory files --------------------------------------------------------------------------------


def _trajectories(*tracks, **header) -> str:
    return json.dumps(
        {
            "format": "kinema.trajectories",
            "version": 1,
            **header,
            "trajectories": [{"points_norm": t} for t in tracks],
        }
    )


def _timed(points: list, **timing) -> str:
    """A version 2 file of one trajectory with the given timing keys."""
    entry = {"points_norm": points, **timing}
    return json.dumps({"format": "kinema.trajectories", "version": 2, "trajectories": [entry]})


def trajectory_cases() -> list[Case]:
    """Malformed, nested, non-finite, boolean and degenerate trajectory files, as text."""
    line = [[0.2, 0.5], [0.6, 0.5]]
    texts: dict[str, tuple[str, bool]] = {
        "not_json": ("{this is not json", True),
        "empty": ("", True),
        "whitespace": ("   \n", True),
        "null": ("null", True),
        "list": ("[]", True),
        "object": ("{}", True),
        "number": ("42", True),
        "string": ('"trajectories"', True),
        "wrong_format": (json.dumps({"format": "other", "version": 1, "trajectories": []}), True),
        "version_zero": (_trajectories(line, version=0), True),
        "version_string": (_trajectories(line, version="1"), True),
        "version_true": (_trajectories(line, version=True), True),
        "version_future": (_trajectories(line, version=999), True),
        "trajectories_object": (
            json.dumps({"format": "kinema.trajectories", "version": 1, "trajectories": {}}),
            True,
        ),
        "trajectories_null": (
            json.dumps({"format": "kinema.trajectories", "version": 1, "trajectories": None}),
            True,
        ),
        "entry_number": (
            json.dumps({"format": "kinema.trajectories", "version": 1, "trajectories": [1]}),
            True,
        ),
        "entry_no_points": (
            json.dumps({"format": "kinema.trajectories", "version": 1, "trajectories": [{}]}),
            True,
        ),
        "points_empty": (_trajectories([]), True),
        "points_single": (_trajectories([[0.5, 0.5]]), False),
        "points_one_coordinate": (_trajectories([[0.5], [0.6]]), True),
        "points_three_coordinates": (_trajectories([[0.5, 0.5, 0.5], [0.6, 0.6, 0.6]]), True),
        "points_strings": (_trajectories([["0.1", "0.2"], ["0.3", "0.4"]]), True),
        "points_booleans": (_trajectories([[True, False], [False, True]]), True),
        "points_mixed_boolean": (_trajectories([[0.1, True], [0.3, 0.4]]), True),
        "points_null": (_trajectories([[None, 0.2], [0.3, 0.4]]), True),
        "points_object": (_trajectories([{"x": 0.1, "y": 0.2}, {"x": 0.3, "y": 0.4}]), True),
        "points_flat": (_trajectories([0.1, 0.2, 0.3, 0.4]), True),
        "points_nested": (_trajectories([[[0.1, 0.2]], [[0.3, 0.4]]]), True),
        "nan": (
            '{"format": "kinema.trajectories", "version": 1, "trajectories": [{"points_norm": [[NaN, 0.5], [0.6, 0.5]]}]}',
            True,
        ),
        "infinity": (
            '{"format": "kinema.trajectories", "version": 1, "trajectories": [{"points_norm": [[Infinity, 0.5], [0.6, 0.5]]}]}',
            True,
        ),
        "minus_infinity": (
            '{"format": "kinema.trajectories", "version": 1, "trajectories": [{"points_norm": [[0.2, -Infinity], [0.6, 0.5]]}]}',
            True,
        ),
        "overflow": (
            '{"format": "kinema.trajectories", "version": 1, "trajectories": [{"points_norm": [[1e999, 0.5], [0.6, 0.5]]}]}',
            True,
        ),
        "deep_lists": ("[" * 100_000 + "]" * 100_000, True),
        "deep_points": (
            _trajectories([[0.1, 0.2]]).replace("[[0.1, 0.2]]", "[" * 50_000 + "]" * 50_000),
            True,
        ),
        "deep_objects": ('{"a":' * 100_000 + "1" + "}" * 100_000, True),
        "too_many_tracks": (_trajectories(*[line] * 5_000), True),
        "too_many_points": (_trajectories([[0.5, 0.5 + 1e-6 * i] for i in range(200_000)]), True),
        "trailing_garbage": (_trajectories(line) + " trailing", True),
        "no_tracks": (_trajectories(), False),
        "zero_length": (_trajectories([[0.5, 0.5], [0.5, 0.5]]), False),
        "out_of_frame": (_trajectories([[-0.5, 0.5], [1.5, 0.5]]), False),
        "far_out_of_frame": (_trajectories([[-1e6, 0.5], [1e6, 0.5]]), False),
        "bom": ("\ufeff" + _trajectories(line), False),
        "unknown_keys": (_trajectories(line, extra={"nested": [1, 2, 3]}), False),
        "timing_valid": (_timed(line, start=0.2, end=0.8, easing="ease-in-out"), False),
        "timing_reversed": (_timed(line, start=0.8, end=0.2), True),
        "timing_outside_clip": (_timed(line, start=-1, end=3), True),
        "timing_boolean": (_timed(line, start=True), True),
        "timing_string": (_timed(line, end="1"), True),
        "timing_nan": (_timed(line, end=float("nan")), True),
        "timing_easing_unknown": (_timed(line, easing="bounce"), True),
        "timing_easing_object": (_timed(line, easing={"a": 1}), True),
        "timing_in_version_1": (
            _trajectories(line).replace('"points_norm"', '"start": 0.5, "points_norm"'),
            True,
        ),
    }
    return [Case(f"trajectories:{name}", refuse, text=text) for name, (text, refuse) in texts.items()]


def run_record_cases() -> list[Case]:
    """Damaged and hostile run records (the params.json a run is redone from), as text."""
    record = {"format": "kinema.run", "version": 1, "app": "drag", "action": "cli", "arguments": {}}
    texts = {
        "not_json": ("{params", True),
        "empty": ("", True),
        "list": ("[]", True),
        "deep_lists": ("[" * 100_000 + "]" * 100_000, True),
        "deep_arguments": (
            json.dumps(record).replace(
                '"arguments": {}', '"arguments": ' + '{"a":' * 100_000 + "1" + "}" * 100_000
            ),
            True,
        ),
        "wrong_format": (json.dumps({**record, "format": "other"}), True),
        "version_future": (json.dumps({**record, "version": 99}), True),
        "no_app": (json.dumps({k: v for k, v in record.items() if k != "app"}), True),
        "unknown_app": (json.dumps({**record, "app": "other"}), True),
        "bad_action": (json.dumps({**record, "action": "rm -rf"}), True),
        "arguments_list": (json.dumps({**record, "arguments": []}), True),
        "unknown_key": (json.dumps({**record, "extra": 1}), True),
        "binary": ("\x00\x01\x02", True),
        "valid": (json.dumps(record), False),
    }
    return [Case(f"run_record:{name}", refuse, text=text) for name, (text, refuse) in texts.items()]


def _canvas_line(**changes) -> dict:
    """A Fabric 7.4 line as the drawing canvas sends it (600x400 canvas), with `changes`."""
    line = {"type": "Line", "version": "7.4.0", "left": 240, "top": 160, "width": 240, "height": 160,
            "x1": -120, "y1": -80, "x2": 120, "y2": 80, "originX": "center", "originY": "center",
            "strokeWidth": 20}  # fmt: skip
    return {**line, **changes}


def _canvas_path(commands: object, **changes) -> dict:
    return {"type": "Path", "version": "7.4.0", "left": 300, "top": 200, "originX": "center",
            "originY": "center", "strokeWidth": 20, "path": commands, **changes}  # fmt: skip


def canvas_cases() -> list[Case]:
    """Hostile drawing-canvas objects (what the browser component sends back), one object per case as the
    text of a JSON object list: the drag app reads them as trajectories and as motion-brush strokes."""
    nan, inf = float("nan"), float("inf")
    many = [["M", 10.0, 10.0]] + [["L", 10.0 + (i % 500), 10.0 + i / 100] for i in range(20_000)]
    objects: dict[str, tuple[object, bool]] = {
        "not_an_object": (42, True),
        "string": ("Line", True),
        "no_type": ({"left": 1, "top": 2}, True),
        "type_number": ({"type": 7}, True),
        "rect": ({"type": "Rect", "left": 10, "top": 10, "width": 50, "height": 50}, True),
        "text": ({"type": "Textbox", "text": "<script>alert(1)</script>"}, True),
        "line_strings": (_canvas_line(x1="a", y1="b"), True),
        "line_boolean": (_canvas_line(x1=True), False),  # Fabric's flips are booleans: read as 0/1
        "line_null": (_canvas_line(x2=None), False),  # Fabric writes null for unset values: the default
        "line_nan": (_canvas_line(x1=nan), True),
        "line_infinite_left": (_canvas_line(left=inf), True),
        "line_scale_nan": (_canvas_line(scaleX=nan), True),
        "line_angle_string": (_canvas_line(angle="90deg"), True),
        "line_origin_unknown": (_canvas_line(originX="middle"), True),
        "line_nested_coordinate": (_canvas_line(x1=[[1]]), True),
        "path_empty": (_canvas_path([]), True),
        "path_not_list": (_canvas_path("M 0 0 L 1 1"), True),
        "path_unknown_command": (_canvas_path([["M", 1, 2], ["X", 3, 4]]), True),
        "path_strings": (_canvas_path([["M", "a", "b"], ["L", 1, 1]]), True),
        "path_short_command": (_canvas_path([["M", 1], ["L", 1, 1]]), True),
        "path_nested": (
            _canvas_path([["M", [1], [2]], ["L", 1, 1]]),
            False,
        ),  # one-number lists read as numbers
        "path_nan": (_canvas_path([["M", nan, 1], ["L", 2, 2]]), True),
        "polygon_points_string": ({"type": "Polygon", "left": 1, "top": 1, "points": "1,2 3,4"}, True),
        "polygon_point_missing_y": ({"type": "Polygon", "left": 1, "top": 1, "points": [{"x": 1}]}, True),
        "circle_radius_string": (
            {"type": "Circle", "left": 1, "top": 1, "radius": "big"},
            False,
        ),  # a point: radius unused
        "valid_line": (_canvas_line(), False),
        "far_outside": (_canvas_line(left=1e9, top=-1e9), False),
        "many_points": (_canvas_path(many), False),
        "zero_length_click": (_canvas_path([["M", 300.0, 200.0], ["L", 300.0, 200.0]]), False),
        "huge_stroke": (_canvas_line(strokeWidth=1e6), False),
        "negative_scale": (_canvas_line(scaleX=-1, scaleY=-2), False),
    }
    return [Case(f"canvas:{name}", refuse, text=json.dumps([obj])) for name, (obj, refuse) in objects.items()]


def write_corpus(folder: Path) -> dict[str, Case]:
    """Write every case under `folder` (images/, videos/, trajectories/, run_records/, canvas/); returns them by
    name."""
    written = []
    kinds = (
        ("trajectories", trajectory_cases()),
        ("run_records", run_record_cases()),
        ("canvas", canvas_cases()),
    )
    for kind, cases in kinds:
        (folder / kind).mkdir(parents=True, exist_ok=True)
        for case in cases:
            path = folder / kind / (case.name.split(":", 1)[1] + ".json")
            path.write_text(case.text, encoding="utf-8")
            written.append(Case(case.name, case.refuse, path=path, text=case.text))
    cases = image_cases(folder / "images") + video_cases(folder / "videos") + written
    return {case.name: case for case in cases}


def case_names(kind: str) -> list[str]:
    """The names of one kind's cases ("image", "video", "trajectories", "run_record", "canvas"), known without
    writing: what tests parametrize over, then look up in the `corpus` fixture."""
    names = {
        "image": [f"image:{name}" for name in image_payloads()],
        "video": [f"video:{name}" for name in VIDEO_NAMES],
        "trajectories": [case.name for case in trajectory_cases()],
        "run_record": [case.name for case in run_record_cases()],
        "canvas": [case.name for case in canvas_cases()],
    }
    return names[kind]


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "reliability-corpus")
    cases = write_corpus(target)
    kinds = ("image", "video", "trajectories", "run_record", "canvas")
    counts = {kind: len(case_names(kind)) for kind in kinds}
    print(f"{len(cases)} cases in {target}: " + ", ".join(f"{kind} {n}" for kind, n in counts.items()))
