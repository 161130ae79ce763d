"""Each encoder's spec reads its own network back: built on the meta device (shapes only), its state dict is
recognised by the spec's `ShapeReader` as that encoder, with the constructor arguments it was built with; a
variant is read as the variant, not as the default (the property detection rests on, spandrel-style)."""
from __future__ import annotations

import pytest
import torch

from asr_bench.encoders import build_encoder, encoder_spec, encoder_specs, list_encoders, read_encoder, schemes_for


def meta_state(name: str, **kwargs) -> dict:
    with torch.device("meta"):
        return build_encoder(name, **kwargs).state_dict()


@pytest.mark.parametrize("name", list_encoders())
def test_each_encoder_is_read_back_as_itself(name):
    read = read_encoder(meta_state(name), name)
    assert read.name == name
    assert encoder_spec(name).builds(read, {})


# (encoder, builder kwargs, what the shapes must say, written from the encoders' docs, not from the readers)
VARIANTS = [
    ("hat", {"large": True}, {"depths": (6,) * 12}),
    ("hat", {"rope": True}, {"rope": True}),
    ("swinir", {"out_features": 64}, {"out_features": 64}),
    ("rdn", {"config": "A"}, {"D": 20, "C": 6, "G": 32}),
    ("rcan", {"n_resgroups": 3}, {"n_resgroups": 3, "n_resblocks": 20}),
    ("mambair", {"d_state": 8}, {"d_state": 8}),
    ("smfanet", {"n_blocks": 4}, {"n_blocks": 4}),
]


@pytest.mark.parametrize("name,kwargs,expected", VARIANTS, ids=[f"{n}-{'-'.join(k)}" for n, k, _ in VARIANTS])
def test_a_variant_is_read_as_the_variant(name, kwargs, expected):
    read = read_encoder(meta_state(name, **kwargs), name)
    assert read.name == name
    assert {k: read.hyper[k] for k in expected} == expected
    assert encoder_spec(name).builds(read, kwargs)
    assert not encoder_spec(name).builds(read, {})


def test_every_spec_declares_what_detection_and_loading_need():
    for spec in encoder_specs():
        assert spec.reader is not None and spec.network is not None and spec.schemes, spec.name
        with torch.device("meta"):
            module = spec.builder()
        assert sorted(spec.schemes) == schemes_for(module)
