"""How LIIF-repo checkpoints are recognised: `encoder.*` + `imnet.*`. The LIIF repo's container holds LIIF or its
Meta-SR re-implementation, told apart by the MLP (Meta-SR's takes 3 inputs, in 2 layers); its `name` must agree,
and a container of another model of that repo (LTE, ...) is named as unsupported. `read_liif_repo` is shared
with Meta-SR's detector."""
from __future__ import annotations

from typing import Any

from asr_bench.detection import Detection, Detector, choose
from asr_bench.encoders import EncoderRead, UnsupportedFamily, read_encoder
from asr_bench.errors import UserError
from asr_bench.shapes import StateDict, count, has_prefix, inside_prefix, without_prefixes

FROM_THE_REPO = ("liif", "metasr")


def read_liif_repo(sd: StateDict, facts: Any, where: str, container: str) -> tuple[str, EncoderRead, str] | None:
    """(method by its MLP, encoder, reason) of a LIIF-repo state dict; None where the keys are not one."""
    if not (has_prefix(sd, "encoder.") and has_prefix(sd, "imnet.")):
        return None
    enc = read_encoder(without_prefixes(inside_prefix(sd, "encoder."), "sub_mean.", "add_mean."), where)
    first = sd.get("imnet.layers.0.weight")
    linear = count(sd, r"imnet\.layers\.(\d+)\.weight$")
    by_keys = "metasr" if first is not None and first.shape[1] == 3 and linear == 2 else "liif"
    method = facts.get("name") or by_keys
    if method not in FROM_THE_REPO:
        raise UnsupportedFamily(f"{where}: unsupported family {method} (a LIIF-repo container of a '{method}' model); "
                                f"supported from the LIIF repo: {', '.join(FROM_THE_REPO)}.")
    if method != by_keys:
        raise UserError(f"{where} says it is a '{method}' model but its MLP ({linear} layers, input "
                        f"{None if first is None else first.shape[1]}) is {by_keys}'s; the file is inconsistent.")
    named = (facts.get("args") or {}).get("encoder_spec", {}).get("name")
    if named is not None and named != enc.name:
        raise UserError(f"{where} names encoder '{named}' but its encoder.* keys are {enc.text}; the file is inconsistent.")
    mlp = f"MLP {first.shape[1] if first is not None else '?'} in, {linear} layers"
    return method, enc, f"{container}: LIIF-repo {method}, encoder.* = {enc.text}, {mlp}"


def liif_repo_preset(preset: Any) -> bool:
    """Presets of the LIIF repo's variant (Meta-SR also has the official Meta-RDN)."""
    return (preset.method_kwargs or {}).get("variant", "liif") == "liif"


def state(spec: Any, sd: StateDict, facts: Any, where: str, container: str) -> Detection | None:
    found = read_liif_repo(sd, facts, where, container)
    if found is None or found[0] != spec.name:
        return None
    _, enc, reason = found
    return choose(spec, enc, where, reason, liif_repo_preset)


DETECTOR = Detector("encoder.* + imnet.*, the LIIF repo's container, with a LIIF MLP", state=state)
