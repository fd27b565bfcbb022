"""core.precision.decode_finite: a finite decode is returned untouched; an fp16 overflow is redone in float32."""

from __future__ import annotations

import torch

from core.precision import decode_finite


class Decoder(torch.nn.Module):
    """Doubles its input 20 times: overflows fp16 (max 65504) for inputs above ~0.06, not float32."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(2.0))
        self.calls: list[torch.dtype] = []

    @property
    def dtype(self) -> torch.dtype:
        return self.scale.dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(self.dtype)
        for _ in range(20):
            x = x * self.scale
        return x


def test_finite_half_decode_runs_once():
    decoder = Decoder().half()
    x = torch.full((2,), 0.01)
    out = decode_finite(decoder, lambda: decoder(x.to(decoder.dtype)))
    assert decoder.calls == [torch.float16] and out.dtype == torch.float16
    assert torch.equal(out, x.half() * 2**20)


def test_half_overflow_is_decoded_again_in_float32_and_the_decoder_goes_back(caplog):
    decoder = Decoder().half()
    x = torch.tensor([0.01, 1.0])
    assert not torch.isfinite(decoder(x.half())).all()  # the overflow this guards against
    decoder.calls.clear()
    out = decode_finite(decoder, lambda: decoder(x.to(decoder.dtype)))
    assert decoder.calls == [torch.float16, torch.float32]
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    torch.testing.assert_close(out, x * 2**20)
    assert decoder.dtype == torch.float16
    assert "decoding again in float32" in caplog.text


def test_float32_decoders_are_not_second_guessed():
    decoder = Decoder()
    out = decode_finite(decoder, lambda: decoder(torch.tensor([float("nan")])))
    assert decoder.calls == [torch.float32] and torch.isnan(out).all()
