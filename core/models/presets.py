"""Model presets: named models built in code, with no download.

- ``tiny``: deterministic random-weight tiny components at the sizes of diffusers' own pipeline tests
  (:func:`tiny_sd_components`, :func:`tiny_svd_components`), ControlNets shaped like them
  (:func:`tiny_controlnet`, :func:`tiny_svd_controlnet`, zero-initialised outputs) and a tiny SAM
  (:func:`tiny_sam`), for tests and for trying the apps offline; their outputs are noise.
- ``mini``: the SD and SVD trained from scratch on synthetic 64 px scenes (:func:`mini_components`), loaded
  from ``assets/models/mini/{sd,svd}`` (``make prove`` writes them); toy-domain models, not SD/SVD.
- The offline CLIP tokenizer (:func:`offline_clip_tokenizer`): a byte-level vocabulary generated in code.

A preset is a name a model setting can hold instead of a hub id or folder (``KINEMA_SD_MODEL=tiny``):
:data:`PRESETS` maps each name to its builders by kind, and the loaders of :mod:`core.models.loading` call
:func:`build_preset`. A new preset is one more entry there.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch

from core.errors import ModelNotAvailable

ModelKind = Literal["sd", "svd"]
TINY = "tiny"


# -- the offline CLIP tokenizer --------------------------------------------------------------------


def _byte_to_unicode() -> dict[int, str]:
    """The reversible byte -> printable-character table of byte-level BPE vocabularies."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, shifted = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + shifted)
            shifted += 1
    return table


def write_offline_clip_tokenizer(folder: str | Path, model_max_length: int = 77) -> Path:
    """Write a CLIP tokenizer (vocab.json, merges.txt, configs) that needs no download.

    The vocabulary holds every byte symbol, alone and as a word ending (``</w>``), plus CLIP's start and
    end tokens: 514 ids. With no merges every word is spelled out byte by byte, which is all tiny random
    text encoders need. Returns the folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    symbols = list(_byte_to_unicode().values())
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": i + len(symbols) for i, s in enumerate(symbols)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": model_max_length}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def offline_clip_tokenizer(model_max_length: int = 77):
    """A ``CLIPTokenizer`` built from :func:`write_offline_clip_tokenizer` (vocabulary size 514)."""
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        return CLIPTokenizer.from_pretrained(write_offline_clip_tokenizer(tmp, model_max_length))


# -- tiny components (diffusers' own pipeline-test sizes) ------------------------------------------


def clip_text_encoder(tokenizer, **sizes):
    """A random-weight ``CLIPTextModel`` of ``sizes`` whose special tokens and length fit ``tokenizer``."""
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        max_position_embeddings=tokenizer.model_max_length,
        **sizes,
    )
    return CLIPTextModel(config).eval()


def tiny_sd_components(seed: int = 0) -> dict:
    """Components of a tiny SD1.5-shaped pipeline (UNet 32/64 channels, VAE factor 2), deterministic by seed."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64),
            layers_per_block=2,
            sample_size=32,
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
        )
        vae = AutoencoderKL(
            block_out_channels=(32, 64),
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            latent_channels=4,
            sample_size=64,
        )
        tokenizer = offline_clip_tokenizer()
        text_encoder = clip_text_encoder(
            tokenizer,
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=5,
            vocab_size=1000,
        )
    return {
        "unet": unet.eval(),
        "vae": vae.eval(),
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "scheduler": sd_scheduler(),
        "safety_checker": None,
        "feature_extractor": None,
        "image_encoder": None,
        "requires_safety_checker": False,
    }


def sd_scheduler():
    """The ``DDIMScheduler`` of SD1.5's noise schedule (epsilon prediction), as the tiny and mini SD use it."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,  # as SD1.5 ships it; img2img pipelines warn about and rewrite any other value
    )


def svd_scheduler():
    """The ``EulerDiscreteScheduler`` config SVD(-XT) ships with."""
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        interpolation_type="linear",
        num_train_timesteps=1000,
        prediction_type="v_prediction",
        sigma_max=700.0,
        sigma_min=0.002,
        steps_offset=1,
        timestep_spacing="leading",
        timestep_type="continuous",
        use_karras_sigmas=True,
    )


def tiny_svd_components(seed: int = 0) -> dict:
    """Components of a tiny SVD-shaped pipeline (spatio-temporal UNet 32/64, VAE factor 2), deterministic."""
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNetSpatioTemporalConditionModel(
            block_out_channels=(32, 64),
            layers_per_block=2,
            sample_size=32,
            in_channels=8,
            out_channels=4,
            down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
            up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
            cross_attention_dim=32,
            num_attention_heads=8,
            projection_class_embeddings_input_dim=96,
            addition_time_embed_dim=32,
        )
        vae = AutoencoderKLTemporalDecoder(
            block_out_channels=(32, 64),
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 2,
            latent_channels=4,
        )
        image_encoder = CLIPVisionModelWithProjection(
            CLIPVisionConfig(
                hidden_size=32,
                projection_dim=32,
                num_hidden_layers=5,
                num_attention_heads=4,
                # diffusers' SVD pipeline feeds the image encoder 224x224 pixels.
                image_size=224,
                intermediate_size=37,
                patch_size=16,
            )
        )
    return {
        "unet": unet.eval(),
        "vae": vae.eval(),
        "image_encoder": image_encoder.eval(),
        "scheduler": svd_scheduler(),
        "feature_extractor": CLIPImageProcessor(crop_size=224, size=224),
    }


def tiny_controlnet():
    """A ControlNet shaped like the tiny SD UNet (zero-initialised outputs, like a fresh one), its condition
    embedding downsampling by the tiny VAE's factor (2), so that it runs in the tiny SD pipelines."""
    from diffusers import ControlNetModel

    tiny = tiny_sd_components()
    downsamplings = len(tiny["vae"].config.block_out_channels) - 1
    channels = tuple(16 * 2**i for i in range(downsamplings + 1))  # one stride-2 block per VAE halving
    return ControlNetModel.from_unet(tiny["unet"], conditioning_embedding_out_channels=channels).eval()


def tiny_svd_controlnet():
    """A flow ControlNet shaped like the tiny SVD UNet and VAE, zero convs: the tiny SVD pipeline's output
    unchanged."""
    from core.controlnet_svd import SVDFlowControlNet

    tiny = tiny_svd_components()
    vae_scale_factor = 2 ** (len(tiny["vae"].config.block_out_channels) - 1)
    return SVDFlowControlNet.from_unet(tiny["unet"], vae_scale_factor=vae_scale_factor).eval()


# The tiny SAM's input side: the processor resizes the longest image side to this and pads to a square of it.
TINY_SAM_SIDE = 64


def tiny_sam(seed: int = 0) -> dict:
    """A tiny random ``SamModel`` (ViT of 2 layers at 64 px in 8 px patches: 8x8 embeddings, 32x32 masks) and
    its ``SamProcessor`` (resize to 64, pad to 64x64), deterministic by seed: ``{"model", "processor"}``."""
    from transformers import SamConfig, SamModel, SamProcessor

    patch = {"image_size": TINY_SAM_SIDE, "patch_size": 8}
    config = SamConfig(
        vision_config={"hidden_size": 16, "output_channels": 8, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "window_size": 4, "global_attn_indexes": [1], "num_pos_feats": 4, "mlp_dim": 16, **patch},
        prompt_encoder_config={"hidden_size": 8, "mask_input_channels": 4, **patch},
        mask_decoder_config={"hidden_size": 8, "mlp_dim": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                             "iou_head_hidden_dim": 8},
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SamModel(config).eval()
    # Through a processor config, as a downloaded SAM has one: transformers picks the image processor class
    # that this installation provides (torchvision or PIL backend).
    processor_config = {
        "image_processor_type": "SamImageProcessor",
        "processor_class": "SamProcessor",
        "size": {"longest_edge": TINY_SAM_SIDE},
        "pad_size": {"height": TINY_SAM_SIDE, "width": TINY_SAM_SIDE},
    }
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "preprocessor_config.json").write_text(json.dumps(processor_config))
        processor = SamProcessor.from_pretrained(tmp, local_files_only=True)
    return {"model": model, "processor": processor}


# -- mini components (trained from scratch on synthetic scenes) -----------------------------------

MINI = "mini"
MINI_FOLDER = Path(__file__).resolve().parents[2] / "assets" / "models" / "mini"
MINI_TRAIN_COMMAND = "make prove"


def mini_components(kind: ModelKind) -> dict:
    """The stock ``kind`` pipeline's components loaded from ``assets/models/mini/KIND`` (float32, CPU): the
    mini SD / SVD that ``python -m core.training.base_model`` trains from scratch on the synthetic scenes of
    :mod:`core.data.synthetic` (64 px, toy-domain models that prove the training code). Raises
    ModelNotAvailable when the folder is missing."""
    from core.models.loading import load_components

    folder = MINI_FOLDER / kind
    if not (folder / "model_index.json").is_file():
        raise ModelNotAvailable(
            f"The mini {kind.upper()} weights are not available (no model_index.json in {folder}): run "
            f"'{MINI_TRAIN_COMMAND}' to train them, or use the '{TINY}' preset for offline random test weights."
        )
    return load_components(kind, str(folder))


# -- presets by name -------------------------------------------------------------------------------

PresetKind = Literal["sd", "svd", "controlnet", "svd_controlnet", "sam"]
# preset name -> kind -> builder: the stock pipeline's components ("sd", "svd"), the model ("controlnet",
# "svd_controlnet"), or the model and its processor ("sam"), float32 on the CPU, deterministic
PRESETS: dict[str, dict[PresetKind, Callable[[], Any]]] = {
    TINY: {
        "sd": tiny_sd_components,
        "svd": tiny_svd_components,
        "controlnet": tiny_controlnet,
        "svd_controlnet": tiny_svd_controlnet,
        "sam": tiny_sam,
    },
    MINI: {"sd": lambda: mini_components("sd"), "svd": lambda: mini_components("svd")},
}


def is_preset(model: str) -> bool:
    """Whether a model setting names a preset rather than a hub id or a folder."""
    return model in PRESETS


def build_preset(model: str, kind: PresetKind) -> Any:
    """Preset ``model``'s ``kind``, freshly built: a dict of pipeline components, a ControlNet model, or SAM's
    ``{"model", "processor"}``.

    Raises ModelNotAvailable for a kind the preset has no model of (``mini`` has no ControlNets)."""

    if kind not in PRESETS[model]:
        raise ModelNotAvailable(
            f"The '{model}' preset has no {kind} model (it has {', '.join(PRESETS[model])}); choose another "
            f"model or '{TINY}'."
        )
    return PRESETS[model][kind]()
