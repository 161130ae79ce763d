"""How GSASR checkpoints are recognised: two files, an encoder and a Fea2GS decoder (`gs_embedding`), whose
shapes give the decoder's width, window, blocks and RoPE (the enhanced family; the paper's has none). A decoder
alone is refused with the fix."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from asr_bench.detection import Detection, Detector, choose
from asr_bench.encoders import read_encoder
from asr_bench.errors import UserError
from asr_bench.shapes import StateDict, count


def parts(spec: Any, parts: Mapping[str, StateDict], where: str) -> Detection | None:
    if not {"encoder", "decoder"} <= set(parts):
        return None
    dec_sd = parts["decoder"]
    if "gs_embedding" not in dec_sd:
        raise UserError(f"{where}: the decoder part has no 'gs_embedding'; it is not a GSASR Fea2GS decoder.")
    enc = read_encoder(parts["encoder"], f"{where} (encoder part)")
    seeds, channel = dec_sd["gs_embedding"].shape
    dec = {
        "channel": channel, "window_size": round(seeds ** 0.5),
        "rope": any(k.endswith("rope_freqs") for k in dec_sd),
        "num_crossattn_blocks": count(dec_sd, r"window_crossattn_blocks\.(\d+)\."),
        "num_crossattn_layers": count(dec_sd, r"window_crossattn_blocks\.0\.blocks\.(\d+)\."),
        "num_selfattn_blocks": count(dec_sd, r"gs_selfattn_blocks\.(\d+)\."),
    }
    family = "enhanced" if dec["rope"] else "paper"

    def decoder_matches(preset: Any) -> bool:
        declared = (preset.method_kwargs or {}).get("decoder", {})
        return all(dec[k] == v for k, v in declared.items() if k in dec)

    found = choose(spec, enc, where, f"{where}: GSASR {family} decoder ({channel} ch, window "
                   f"{dec['window_size']}, {dec['num_crossattn_blocks']} cross-attention blocks), {enc.text}",
                   decoder_matches)
    return Detection(found.method, found.encoder, found.preset, found.reason, {**enc.hyper, "decoder": dec})


def state(spec: Any, sd: StateDict, facts: Any, where: str, container: str) -> Detection | None:
    if "gs_embedding" in sd:
        raise UserError(f"{where} is a GSASR decoder alone; GSASR ships two files: pass the folder holding "
                        "encoder.pth and decoder.pth, or checkpoint={'encoder': ..., 'decoder': ...}.")
    return None


DETECTOR = Detector("an encoder.pth + decoder.pth pair, the decoder with gs_embedding", state=state, parts=parts)
