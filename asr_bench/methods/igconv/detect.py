"""How IGConv and IGConv+ checkpoints are recognised: a hyper-network head (`<head>.query_kernel.*`) under the
name each encoder's official model gives it (`head_key` of the presets), IGConv+ with the IGSample `skip.*`;
RCAN's learnable mean shifts are the method's too. `max_s` shows in no tensor (`SHAPELESS`)."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from asr_bench.detection import Detection, Detector, choose, method_presets
from asr_bench.encoders import encoder_matches, read_encoder
from asr_bench.errors import UserError
from asr_bench.shapes import StateDict, has_prefix, without_prefixes

SHAPELESS = {"max_s": "the hyper-network's largest scale code; r = 2 / min(s, max_s), so outputs differ only "
                      "above x4"}


def head_key(preset: Any) -> str:
    return (preset.method_kwargs or {}).get("head_key", "upsample")


def detector(plus: bool, presets: Iterable[Any]) -> Detector:
    """The detector of IGConv (`plus` False) or IGConv+; `presets` give the head names to look for."""
    heads = tuple(dict.fromkeys(head_key(p) for p in presets))

    def state(spec: Any, sd: StateDict, facts: Any, where: str, container: str) -> Detection | None:
        head = next((h for h in heads if f"{h}.query_kernel.0.weight" in sd), None)
        if head is None or has_prefix(sd, "skip.") != plus:
            return None
        mean = has_prefix(sd, "sub_mean.", "add_mean.")      # RCAN's learnable mean shifts
        enc = read_encoder(without_prefixes(sd, f"{head}.", "skip.", "sub_mean.", "add_mean."),
                           f"{where} ({spec.name} head '{head}.*')")
        official = sorted({head_key(p) for _, p in method_presets(spec) if encoder_matches(enc, p)})
        if official and head not in official:
            raise UserError(f"{where}: an {spec.name} head named '{head}.*' on {enc.text}; the official {enc.name} "
                            f"models name it '{official[0]}.*', so this file matches no preset.")
        reason = (f"{container}: {spec.name} ({'with' if plus else 'no'} IGSample skip, head '{head}.*'), {enc.text}"
                  + (", learnable mean shifts" if mean else ""))
        return choose(spec, enc, where, reason,
                      lambda p: head_key(p) == head and bool((p.method_kwargs or {}).get("mean_convs")) == mean)

    keys = f"a query_kernel head: {'/'.join(heads)}" + (", with skip.*" if plus else ", no skip.*")
    return Detector(keys, state=state, shapeless=SHAPELESS)

