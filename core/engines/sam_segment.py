"""The learned segmenter of the object-aware drags: SAM (transformers' `SamModel`) prompted with one point.

`SamSegmenter.mask` gives SAM's mask for one positive point prompt at the drag start: the `SamProcessor`
resizes the image so its longest side is the model's input side, normalises and pads it, and scales the point
the same way; of SAM's three candidate masks the one with the best predicted IoU is kept and brought back to
the image's size by the processor's `post_process_masks` (logits > 0). Points are pixel-centre coordinates
(x, y), SAM's own convention. The image embedding (the ViT encoder, nearly all of the cost) of the last image
is kept, so the several drags on one picture encode it once.

`core.models.loading.load_sam` builds one from `Settings.sam_model`; `core.engines.objects.segment_object`
keeps the part under the point and applies the rules both segmenters share (grow/shrink, speck -> disc).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence

import numpy as np
import torch


class SamSegmenter:
    """SAM with its processor; :meth:`mask` is thread-safe.

    Args:
        model: a `transformers.SamModel` in eval mode, on the device it is to run on.
        processor: its `transformers.SamProcessor`.
    """

    def __init__(self, model, processor) -> None:
        self.model = model
        self.processor = processor
        self._lock = threading.Lock()
        self._last: tuple[bytes, torch.Tensor] | None = None  # (image digest, its embedding)

    def mask(self, image_uint8: np.ndarray, point_px: Sequence[float]) -> np.ndarray:
        """(H,W) bool: SAM's best-IoU mask for a positive point at `point_px` (x, y) of `image_uint8` (H,W,3)."""
        inputs = self.processor(
            images=image_uint8,
            input_points=[[[float(point_px[0]), float(point_px[1])]]],
            input_labels=[[1]],
            return_tensors="pt",
        )
        device, dtype = self.model.device, self.model.dtype
        with torch.inference_mode():
            output = self.model(
                image_embeddings=self._embedding(image_uint8, inputs["pixel_values"]),
                input_points=inputs["input_points"].to(device, dtype),
                input_labels=inputs["input_labels"].to(device),
                multimask_output=True,
            )
        best = int(output.iou_scores[0, 0].argmax())
        masks = self.processor.post_process_masks(
            output.pred_masks[:, :, best : best + 1].float().cpu(),
            inputs["original_sizes"],
            inputs["reshaped_input_sizes"],
        )
        return masks[0][0, 0].numpy()

    def _embedding(self, image_uint8: np.ndarray, pixel_values: torch.Tensor) -> torch.Tensor:
        """The image embedding of `image_uint8`, encoded once while it is the last image asked about."""
        digest = hashlib.blake2b(np.ascontiguousarray(image_uint8).data, digest_size=16)
        digest.update(repr(image_uint8.shape).encode())
        key = digest.digest()
        with self._lock:
            if self._last is None or self._last[0] != key:
                pixels = pixel_values.to(self.model.device, self.model.dtype)
                with torch.inference_mode():
                    self._last = key, self.model.get_image_embeddings(pixels)
            return self._last[1]
