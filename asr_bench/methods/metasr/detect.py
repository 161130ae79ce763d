"""How Meta-SR checkpoints are recognised: the official Meta-RDN bare state dict (`P2W.meta_block.*` and the
learned mean shifts), or the LIIF repo's container with Meta-SR's MLP (read as LIIF's detector reads it)."""
from __future__ import annotations

from typing import Any

from asr_bench.detection import Detection, Detector, choose
from asr_bench.encoders import read_encoder
from asr_bench.methods.liif.detect import liif_repo_preset, read_liif_repo
from asr_bench.shapes import StateDict, without_prefixes

META_RDN_KEY = "P2W.meta_block.0.weight"


def state(spec: Any, sd: StateDict, facts: Any, where: str, container: str) -> Detection | None:
    if META_RDN_KEY in sd:
        enc = read_encoder(without_prefixes(sd, "P2W.", "sub_mean.", "add_mean."), where)
        return choose(spec, enc, where, f"{container}: Meta-RDN (P2W.meta_block + learned mean shift), {enc.text}",
                      lambda p: (p.method_kwargs or {}).get("variant") == "official")
    found = read_liif_repo(sd, facts, where, container)
    if found is None or found[0] != spec.name:
        return None
    _, enc, reason = found
    return choose(spec, enc, where, reason, liif_repo_preset)


DETECTOR = Detector("P2W.meta_block.* (Meta-RDN), or the LIIF repo's encoder.* + imnet.* with a 3-input MLP",
                    state=state)
