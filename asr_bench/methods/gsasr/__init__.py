"""GSASR (Chen et al., ICCV 2025, "Generalized and Efficient 2D Gaussian Splatting for Arbitrary-scale
Super-Resolution"): an encoder, the Fea2GS decoder (16 Gaussians per LR pixel) and a rasterizer. The network is
in `net.py`, the decoder in `decoder.py`, rendering in `render.py`, the official tiling in `tiling.py`; facts in
docs/methods/gsasr.md.

Official checkpoints are two files, encoder.pth and decoder.pth, each `{'params_ema': state_dict}`:
`checkpoint={"encoder": path_or_dict, "decoder": path_or_dict}` or the folder holding both.
"""
from __future__ import annotations

from asr_bench.checkpoints import Weights, add_prefix
from asr_bench.encoders import build_encoder, encoder_state_from_official
from asr_bench.errors import UserError
from asr_bench.methods.spec import MethodSpec, Option, Preset
from asr_bench.weightfiles import WeightFile

from .compiled import CHOICES
from .detect import DETECTOR
from .decoder import Fea2GS
from .net import GSASR

ENCODERS = ("edsr-baseline", "rdn", "swinir", "hat")
PAPER = ("Chen et al., Generalized and Efficient 2D Gaussian Splatting for Arbitrary-scale Super-Resolution, "
         "ICCV 2025 (arXiv 2501.06838). https://github.com/ChrisDud0257/GSASR")
HF = "https://huggingface.co/mutou0308/GSASR/resolve/main/"
PAPER_DECODER = {"channel": 180, "rope": False}
ENHANCED = {"channel": 192, "rope": True}
PAIR_HINT = ("pass a folder with encoder.pth and decoder.pth, or checkpoint={'encoder': ..., 'decoder': ...} "
             "(HF mutou0308/GSASR).")


def pair(folder: str, drive: str, **extra: str) -> tuple[WeightFile, ...]:
    """encoder.pth + decoder.pth of one Hugging Face folder (the README's Google Drive folder as the mirror)."""
    return tuple(WeightFile(f"{role}.pth", urls=(f"{HF}{folder}/{role}.pth",
                                                 f"https://drive.google.com/drive/folders/{drive}"),
                            license="Apache-2.0", paper=PAPER, extra={"role": role, "folder": folder, **extra})
                 for role in ("encoder", "decoder"))


PRESETS = (
    Preset("gsasr.edsr-baseline-paper", "edsr-baseline", {"global_skip": False}, {"decoder": PAPER_DECODER},
           multiple=12, weights=pair("GSASR_paper/EDSR", "1rSnM1HOBaI6TpfJ0XkXhHZcjjRnS95Sb"),
           description="paper model, HF mutou0308/GSASR GSASR_paper/EDSR"),
    Preset("gsasr.rdn-paper", "rdn", {}, {"decoder": PAPER_DECODER}, multiple=12,
           weights=pair("GSASR_paper/RDN", "1xR5JoiLG6Muav-C8XGpE4sTr2bleBxPU"),
           description="paper model, HF GSASR_paper/RDN"),
    Preset("gsasr.swinir-paper", "swinir", {"out_features": 64}, {"decoder": PAPER_DECODER}, multiple=24,
           weights=pair("GSASR_paper/SWIN", "1Zv2ijlkyU0UdNz9XDvAu9HHaiUVmhkR0"),
           description="paper model, HF GSASR_paper/SWIN (denominator lcm(8, 12) = 24)"),
    Preset("gsasr.edsr-baseline-enhanced", "edsr-baseline", {"global_skip": False},
           {"decoder": ENHANCED, "amp": True}, multiple=12,
           weights=pair("GSASR_enhenced_ultra/EDSR_DIV2K", "1R6ZCdAd6t_2CCpjCK67F9nag9jitMhI6", train="DIV2K")
           + pair("GSASR_enhenced_ultra/EDSR_DF2K", "16TV2yJt_lfNqJnATtJnEkHV1KoBuW8ww", train="DF2K"),
           description="enhanced model (RoPE), HF GSASR_enhenced_ultra/EDSR_DIV2K or EDSR_DF2K"),
    Preset("gsasr.rdn-enhanced", "rdn", {}, {"decoder": {**ENHANCED, "num_crossattn_blocks": 2}, "amp": True},
           multiple=12,
           weights=pair("GSASR_enhenced_ultra/RDN_DIV2K", "1guSg28c8gvrTkCvTmNbzqf9vWJfLv58Q", train="DIV2K")
           + pair("GSASR_enhenced_ultra/RDN_DF2K", "1vkBvsiiNqTFKmPtNjPlqMn_mh_ClUrKE", train="DF2K"),
           description="enhanced model (RoPE), HF GSASR_enhenced_ultra/RDN_DIV2K or RDN_DF2K"),
    Preset("gsasr.swinir-enhanced", "swinir", {"out_features": 64},
           {"decoder": {**ENHANCED, "num_crossattn_blocks": 2, "num_crossattn_layers": 4, "window_size": 16},
            "amp": True}, multiple=16,
           weights=pair("GSASR_enhenced_ultra/SWIN_DIV2K", "1kVLkOs4KrXlXsPsh0oqvey2dvT6TxqH-", train="DIV2K")
           + pair("GSASR_enhenced_ultra/SWIN_DF2K", "1ql6dktVUlQFIoPSJkEuvvMPz9TlacMdy", train="DF2K"),
           description="enhanced model (RoPE, window 16), HF GSASR_enhenced_ultra/SWIN_DIV2K or SWIN_DF2K"),
    Preset("gsasr.hatl-ultra", "hat", {"large": True, "rope": True, "embed_dim": 192, "squeeze_factor": 32,
                                       "out_features": 64},
           {"decoder": {**ENHANCED, "num_crossattn_blocks": 4, "num_crossattn_layers": 4, "num_selfattn_blocks": 8,
                        "num_selfattn_layers": 6, "window_size": 16}, "amp": True}, multiple=16,
           weights=tuple(WeightFile(f"{role}.pth", urls=(f"{HF}GSASR_enhenced_ultra/HATL_SA1B/{role}.pth",),
                                    license="Apache-2.0", paper=PAPER,
                                    extra={"role": role, "folder": "GSASR_enhenced_ultra/HATL_SA1B"})
                         for role in ("encoder", "decoder")),
           description="ultra model: HAT-L with RoPE (192 dims, 12 groups, window 16) trained on SA-1B, "
                       "HF GSASR_enhenced_ultra/HATL_SA1B (denominator lcm(16, 16) = 16)"),
)


def build(encoder: str, preset: Preset | None, weights: Weights | None, dmax: float = 0.1, tile: int | None = None,
          tile_overlap: int = 8, tile_crop: int = 4, amp: bool | None = None, backend: str = "auto",
          head_chunk: int | None = None, compile: bool | str = "auto",  # noqa: A002 - the option's name
          tile_workers: int = 1) -> GSASR:
    """The preset fixes encoder args, decoder shape and denominator; the options only how it runs."""
    if preset is None:
        raise UserError(f"GSASR has no preset for encoder '{encoder}'; use one of: "
                        f"{', '.join(p.name for p in PRESETS)}.")
    enc = build_encoder(preset.encoder, **preset.encoder_kwargs)
    decoder_args = {**preset.method_kwargs["decoder"], **({"head_chunk": head_chunk} if head_chunk else {})}
    dec = Fea2GS(inchannel=getattr(enc, "out_channels", 64), **decoder_args)
    return GSASR(enc, dec, preset.multiple, dmax=dmax, amp=preset.method_kwargs.get("amp", False) if amp is None else amp,
                 tile=tile, tile_overlap=tile_overlap, tile_crop=tile_crop, backend=backend,
                 compile=compile, tile_workers=tile_workers)


def convert(model: GSASR, weights: Weights) -> dict:
    """The pair: encoder keys in GSASR's naming, decoder keys as they are; a paper/enhanced mix-up is named."""
    decoder = weights.part("decoder", PAIR_HINT)
    enhanced_file = any(k.endswith("rope_freqs") for k in decoder)
    if enhanced_file != model.decoder.rope:
        family = "enhanced" if enhanced_file else "paper"
        raise UserError(f"GSASR decoder checkpoint is a {family} model but the preset is not; "
                        f"use one of: {', '.join(p.name for p in PRESETS if p.name.endswith(family))}.")
    encoder = encoder_state_from_official(model.encoder, weights.part("encoder", PAIR_HINT), "gsasr")
    return {**add_prefix(encoder, "encoder."), **add_prefix(decoder, "decoder.")}


METHODS = [
    MethodSpec(
        name="gsasr",
        builder=build,
        convert=convert,
        encoders=ENCODERS,
        presets=PRESETS,
        multiple=12,
        tiling="internal",
        dtypes=("fp32", "bf16", "fp16"),   # run by tests/test_precision.py (the decoder's output is rendered in fp32)
        options={
            "dmax": Option("half-width of each Gaussian's box in NDC (official 0.1)"),
            "tile": Option("official tiled inference: LR tile side, a multiple of the denominator (e.g. 480)"),
            "tile_overlap": Option("LR pixels shared by neighbouring tiles (official 8)"),
            "tile_crop": Option("SR pixels skipped on a tile's shared edges (official 4)"),
            "tile_workers": Option("CPU: tiles rendered at a time, one thread each (1: one tile on all threads; "
                                   "same output; no stage breakdown when > 1)"),
            "amp": Option("bf16 autocast on CUDA (the enhanced presets' default, as officially)", (True, False)),
            "backend": Option("rasterizer backend", ("auto", "cuda", "cpp", "torch")),
            "head_chunk": Option("tokens per head-MLP call in the decoder (bounds memory)"),
            "compile": Option("torch.compile the decoder, compiling booked as one-time setup; 'auto' = only where "
                              "measured faster (nowhere yet: a tie on CPU)", CHOICES),
        },
        description="2-D Gaussian splatting decoder (Fea2GS) + exact CUDA-equivalent rasterizer",
        citation=PAPER,
        detector=DETECTOR,
    )
]
