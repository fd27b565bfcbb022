"""Inbetweening without weights: carry edited keyframes along the original video's motion.

`interpolate_flow` (the `flow` backend): for a frame t between keyframes a < t < b, the edited
keyframe A is pulled to t along the flow t -> a, composed step by step from the original video's
backward flows, and the edited keyframe B along the flow t -> b, composed from forward flows. The two
are blended by time distance and by a per-pixel confidence of each side:
- validity: a pixel of t is valid for side A when every step of its path back to a passes the
  forward-backward occlusion test (and stays inside the frame), likewise for B;
- photometric agreement: the ORIGINAL keyframe is carried along the same path, and the side whose
  carried original differs from the original frame t gets less weight, as exp(-(error / sigma)^2).
  This catches what the occlusion test misses (flow smeared across motion boundaries), and it is the
  same for any edit, since the edit rides on the same path.
Where one side is unreliable the other fills in; where both are, the plain time blend is kept. Frames before the first or after the last keyframe come from the
nearest keyframe alone. Keyframes are returned exactly as edited.

Because only the original frames' motion is used, any per-pixel edit of the keyframes follows the
real motion of the video. The flow (both directions) and the occlusion masks are computed once per
video (`estimate_video_motion`) and can be reused for every new edit.

`crossfade` is the baseline: a linear blend of the neighbouring keyframes, ignoring motion.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from core.checks import check_frames
from core.errors import InputError
from core.flow import compose_flow, estimate_video_flow, occlusion_mask, warp_field

ProgressCallback = Callable[[int, int], None]
# Weight kept by an invalid side, so a pixel invalid on both sides falls back to the time blend.
_INVALID_WEIGHT = 1e-3
# Keyframe gaps filled at once: each holds its frames' float warps until it is handed out.
_GAP_THREADS = 2


@dataclass(frozen=True)
class VideoMotion:
    """The motion of a video in both directions, with the steps each pixel cannot be followed across.

    forward_px: (T-1,H,W,2) float32, entry t the flow frame t -> t+1 in pixels.
    backward_px: (T-1,H,W,2) float32, entry t the flow frame t+1 -> t in pixels.
    occluded_forward: (T-1,H,W) bool, entry t True at pixels of frame t with no match in frame t+1.
    occluded_backward: (T-1,H,W) bool, entry t True at pixels of frame t+1 with no match in frame t.
    """

    forward_px: np.ndarray
    backward_px: np.ndarray
    occluded_forward: np.ndarray
    occluded_backward: np.ndarray

    @property
    def n_frames(self) -> int:
        return self.forward_px.shape[0] + 1

    @property
    def size_hw(self) -> tuple[int, int]:
        return self.forward_px.shape[1], self.forward_px.shape[2]


def estimate_video_motion(
    frames_uint8: np.ndarray, method: str = "dis", progress: bool = False
) -> VideoMotion:
    """Flow between consecutive frames in both directions and the occlusion masks of every step.

    Args:
        frames_uint8: (T,H,W,3) uint8 RGB original video, T >= 2, H and W >= 16.
        method: flow estimator (see `core.flow.METHODS`).
        progress: tqdm bars while estimating.

    Returns:
        `VideoMotion` for the video; pass it to `interpolate_flow` (and its `forward_px` to
        `adaptive_keyframes`) to estimate flow once per video.
    """
    check_frames(frames_uint8)
    # The two directions one after the other: estimated at once on two threads, OpenCV's DIS returned
    # NaN pixels inside the Gradio server (the keyframe app's tests), never outside it.
    forward = estimate_video_flow(frames_uint8, method, progress)
    backward = estimate_video_flow(frames_uint8[::-1], method, progress)[::-1].copy()

    def occlusions(flows_px: np.ndarray, reverse_px: np.ndarray) -> np.ndarray:
        return np.stack([occlusion_mask(step, back) for step, back in zip(flows_px, reverse_px)])

    # The occlusion tests (numpy and cv2.remap, no flow estimation) of the two directions at once.
    with ThreadPoolExecutor(max_workers=2) as pool:
        occluded_forward, occluded_backward = pool.map(occlusions, (forward, backward), (backward, forward))
    return VideoMotion(forward, backward, occluded_forward, occluded_backward)


def _check_keys(
    n_frames: int, size_hw: tuple[int, int], keyframe_indices: Sequence[int], edited_uint8: np.ndarray
) -> list[int]:
    """Validate sorted, distinct, in-range keyframe indices matching the edited keyframes."""
    indices = list(keyframe_indices)
    if not indices:
        raise InputError("Give at least one keyframe.")
    check_frames(edited_uint8, "edited keyframes")
    for i in indices:
        if isinstance(i, bool) or not isinstance(i, int | np.integer) or not 0 <= i < n_frames:
            raise InputError(f"Keyframe index {i!r} is not a frame of the video (0 to {n_frames - 1}).")
    if any(b <= a for a, b in zip(indices, indices[1:])):
        raise InputError(f"Keyframe indices must be increasing with no repeats, got {indices}.")
    if edited_uint8.shape[0] != len(indices):
        raise InputError(
            f"There are {len(indices)} keyframe indices but {edited_uint8.shape[0]} edited keyframes."
        )
    if edited_uint8.shape[1:3] != tuple(size_hw):
        raise InputError(
            f"Edited keyframes are {edited_uint8.shape[2]}x{edited_uint8.shape[1]} but the video is "
            f"{size_hw[1]}x{size_hw[0]} (width x height); they must match."
        )
    return [int(i) for i in indices]


def _check_motion(motion: VideoMotion, frames_uint8: np.ndarray) -> None:
    expected = (frames_uint8.shape[0] - 1, *frames_uint8.shape[1:3])
    arrays = (motion.forward_px, motion.backward_px, motion.occluded_forward, motion.occluded_backward)
    if any(a.shape[:3] != expected for a in arrays):
        raise InputError(
            f"The motion was computed for {motion.n_frames} frames of {motion.size_hw[1]}x{motion.size_hw[0]}, "
            f"not for this video of {frames_uint8.shape[0]} frames of {frames_uint8.shape[2]}x{frames_uint8.shape[1]}."
        )


def _propagate(
    key_uint8: np.ndarray,
    key_original_uint8: np.ndarray,
    steps: Iterator[tuple[int, np.ndarray, np.ndarray]],
    occlusion_aware: bool,
) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """Pull a keyframe (edited, and its original) along a chain of steps leading away from it.

    `steps` yields (t, step_px, step_occluded): the flow from frame t to the previous frame of the
    chain (one step closer to the key) and the pixels of t with no match there. Yields
    (t, warped edited float32 (H,W,3), warped original float32 (H,W,3), both in [0,255],
    validity float32 (H,W) in [0,1]).
    """
    # Edited and original keyframe travel together: one remap per step for both.
    key = np.concatenate([key_uint8, key_original_uint8], axis=2).astype(np.float32)
    to_key_px, valid = None, None
    for t, step_px, step_occluded in steps:
        # t -> key = one step, then the previous frame's flow to the key sampled where the step lands.
        to_key_px = step_px if to_key_px is None else compose_flow(step_px, to_key_px)
        step_valid = (
            (~step_occluded).astype(np.float32) if occlusion_aware else np.ones(step_px.shape[:2], np.float32)
        )
        valid = step_valid if valid is None else step_valid * warp_field(valid, step_px)
        warped = warp_field(key, to_key_px)
        yield t, warped[..., :3], warped[..., 3:], valid


def _to_uint8(frame: np.ndarray) -> np.ndarray:
    """A float frame in [0,255] rounded to uint8 (rint, then clip)."""
    rounded = np.rint(frame)
    return np.clip(rounded, 0, 255, out=rounded).astype(np.uint8)


def interpolate_flow(
    frames_uint8: np.ndarray,
    keyframe_indices: Sequence[int],
    edited_keyframes_uint8: np.ndarray,
    *,
    motion: VideoMotion | None = None,
    method: str = "dis",
    occlusion_aware: bool = True,
    photometric_sigma: float | None = 16.0,
    progress: bool = False,
    callback: ProgressCallback | None = None,
) -> np.ndarray:
    """Propagate edited keyframes to every frame along the original video's motion (see the module doc).

    Args:
        frames_uint8: (T,H,W,3) uint8 RGB original video, T >= 2.
        keyframe_indices: K increasing frame indices in [0, T-1].
        edited_keyframes_uint8: (K,H,W,3) uint8 RGB, the edited frames at those indices.
        motion: `estimate_video_motion(frames_uint8)` if already computed (reuse it across edits).
        method: flow estimator when `motion` is not given.
        occlusion_aware: weight each side by its validity under the occlusion test.
        photometric_sigma: grey levels; weight each side by exp(-(e / sigma)^2), e the mean absolute
            difference (over RGB) between the original keyframe carried to t and the original frame t.
            None: no photometric weighting. (Both off: time weights only, the ablation.)
        progress: tqdm bar over the output frames.
        callback: called as callback(frames_done, T) after each output frame.

    Returns:
        (T,H,W,3) uint8 edited video; frame keyframe_indices[k] equals edited_keyframes_uint8[k].
    """
    check_frames(frames_uint8)
    n_frames = frames_uint8.shape[0]
    if n_frames < 2:
        raise InputError(f"Inbetweening needs a video of at least 2 frames, got {n_frames}.")
    keys = _check_keys(n_frames, frames_uint8.shape[1:3], keyframe_indices, edited_keyframes_uint8)
    if photometric_sigma is not None and (
        isinstance(photometric_sigma, bool)
        or not isinstance(photometric_sigma, int | float)
        or not 0 < photometric_sigma < np.inf
    ):
        raise InputError(
            f"photometric_sigma must be a positive number of grey levels or None, got {photometric_sigma!r}."
        )
    if motion is None:
        motion = estimate_video_motion(frames_uint8, method, progress)
    _check_motion(motion, frames_uint8)

    def confidence(t: int, warped_original: np.ndarray, valid: np.ndarray) -> np.ndarray:
        if photometric_sigma is None:
            return valid
        # In place, in this order: the same float32 operations as exp(-(mean |diff| / sigma)^2) * valid
        # written out, without a temporary per step (this runs on every frame twice).
        diff = np.subtract(warped_original, frames_uint8[t], dtype=np.float32)
        np.abs(diff, out=diff)
        # Channel slices rather than mean(axis=2): numpy reduces a last axis of 3 slowly.
        error = np.add(diff[..., 0], diff[..., 1])
        error += diff[..., 2]
        error /= np.float32(3 * photometric_sigma)
        np.square(error, out=error)
        np.negative(error, out=error)
        np.exp(error, out=error)
        error *= valid
        return error

    def gap(left: int | None, right: int | None) -> list[tuple[int, np.ndarray]]:
        """The frames from keyframe slot `left` (None: the video's start) up to before slot `right`
        (None: its end), left's keyframe included, as (t, frame uint8) in order."""
        a = None if left is None else keys[left]
        b = None if right is None else keys[right]
        first, last = (0 if a is None else a + 1), (n_frames - 1 if b is None else b - 1)
        gap_frames: list[tuple[int, np.ndarray]] = []
        from_b: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        if b is not None:
            steps_b = (
                (t, motion.forward_px[t], motion.occluded_forward[t]) for t in range(b - 1, first - 1, -1)
            )
            chain = _propagate(edited_keyframes_uint8[right], frames_uint8[b], steps_b, occlusion_aware)
            for t, warped, warped_original, valid in chain:
                from_b[t] = (warped, confidence(t, warped_original, valid))
        if a is not None:
            gap_frames.append((a, edited_keyframes_uint8[left]))
            steps_a = (
                (t, motion.backward_px[t - 1], motion.occluded_backward[t - 1])
                for t in range(a + 1, last + 1)
            )
            chain = _propagate(edited_keyframes_uint8[left], frames_uint8[a], steps_a, occlusion_aware)
            for t, warped_a, warped_original, valid in chain:
                if b is None:
                    gap_frames.append((t, _to_uint8(warped_a)))
                    continue
                warped_b, conf_b = from_b.pop(t)
                conf_a = confidence(t, warped_original, valid)
                time_a = (b - t) / (b - a)
                weight_a = time_a * (conf_a + _INVALID_WEIGHT)
                weight_b = (1.0 - time_a) * (conf_b + _INVALID_WEIGHT)
                share_a = (weight_a / (weight_a + weight_b))[..., None]
                blend = np.subtract(warped_a, warped_b)  # warped_b + share_a * (a - b), in place
                blend *= share_a
                blend += warped_b
                gap_frames.append((t, _to_uint8(blend)))
        for t in sorted(from_b):  # only before the first keyframe: B is the one side
            gap_frames.append((t, _to_uint8(from_b[t][0])))
        return gap_frames

    out = np.empty_like(frames_uint8)
    bounds = [None, *range(len(keys)), None]  # keyframe slot on each side of every gap
    done = 0
    with (
        tqdm(total=n_frames, desc="inbetweening (flow)", disable=not progress) as bar,
        ThreadPoolExecutor(max_workers=_GAP_THREADS) as pool,
    ):
        # Gaps between keyframes are independent: fill them at once (numpy and OpenCV release the
        # GIL on whole frames) and hand the frames out in order.
        for frames_of_gap in pool.map(gap, bounds[:-1], bounds[1:]):
            for t, frame_uint8 in frames_of_gap:
                out[t] = frame_uint8
                done += 1
                bar.update(1)
                if callback is not None:
                    callback(done, n_frames)
    return out


def crossfade(
    n_frames: int, keyframe_indices: Sequence[int], edited_keyframes_uint8: np.ndarray
) -> np.ndarray:
    """Baseline inbetweening: linear blend of the two neighbouring keyframes, ignoring motion.

    Args:
        n_frames: video length T >= 1.
        keyframe_indices: K increasing frame indices in [0, T-1].
        edited_keyframes_uint8: (K,H,W,3) uint8 RGB.

    Returns:
        (T,H,W,3) uint8; frames before the first / after the last keyframe repeat it.
    """
    if isinstance(n_frames, bool) or not isinstance(n_frames, int | np.integer) or n_frames < 1:
        raise InputError(f"The video must have at least 1 frame, got {n_frames!r}.")
    keys = _check_keys(n_frames, edited_keyframes_uint8.shape[1:3], keyframe_indices, edited_keyframes_uint8)
    # Position of every frame on the keyframe axis, e.g. 1.25 = a quarter of the way from key 1 to key 2.
    position = np.interp(np.arange(n_frames), keys, np.arange(len(keys)))
    lower = np.floor(position).astype(int)
    upper = np.minimum(lower + 1, len(keys) - 1)
    frac = (position - lower).astype(np.float32)[:, None, None, None]
    keys_f = edited_keyframes_uint8.astype(np.float32)
    blend = (1.0 - frac) * keys_f[lower] + frac * keys_f[upper]
    return np.clip(np.rint(blend), 0, 255).astype(np.uint8)
