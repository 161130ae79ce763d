"""What changes a result is defined once (the config schema's `result` keys) and both the resume key and the
case provenance read it; provenance records a hash of the source of the method, encoder and ops that ran."""
from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import torch

from asr_bench.config import FIELDS, RESULT_CASE, RESULT_VALUE, parse_config, results_key
from asr_bench.engine import provenance
from asr_bench.engine.cases import Case
from asr_bench.config import MethodEntry
from asr_bench.protocols import get_protocol

REPO = Path(__file__).resolve().parent.parent


def identity(config, case):
    fingerprint = {"folder": "/data/tiny", "digest": "d" * 16}
    return provenance.result_identity(case, config, torch.device("cpu"), get_protocol("gsasr"), "c" * 64, fingerprint)


def a_case(**changes):
    return replace(Case(MethodEntry("bicubic", "none", label="bicubic"), "tiny", 2.0), **changes)


def test_the_key_holds_every_schema_key_that_changes_a_result():
    config = parse_config({"methods": ["bicubic"]}, default_name="t")
    found = identity(config, a_case())
    declared = {f.key for f in FIELDS if f.result in (RESULT_VALUE, RESULT_CASE)}
    assert set(found) == declared - set(provenance.SHOWN_BY)
    assert set(provenance.SHOWN_BY.values()) <= set(found)
    for key, value in results_key(config, "cpu").items():          # the resume key's values, as given
        assert found[key] == value or key == "protocol"
    assert found["protocol"]["name"] == "gsasr"                      # the protocol's meaning, not only its name


def test_a_result_value_key_changes_the_identity():
    base = parse_config({"methods": ["bicubic"]}, default_name="t")
    other = parse_config({"methods": ["bicubic"], "tiling": {"tile": 32}}, default_name="t")
    assert identity(base, a_case()) != identity(other, a_case())
    assert identity(base, a_case()) != identity(base, a_case(precision="bf16"))
    assert identity(base, a_case()) == identity(base, a_case())


def independent_sha(root: Path, suffixes=(".py",)) -> str:
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.suffix in suffixes and "__pycache__" not in p.parts):
        digest.update(str(file.relative_to(root)).encode() + b"\0")
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def test_method_and_encoder_sources_are_hashed_from_their_files():
    code = provenance.method_sources("liif", "edsr-baseline")
    folder = REPO / "asr_bench" / "methods" / "liif"
    assert Path(code["method"]["path"]) == folder and code["method"]["sha256"] == independent_sha(folder)
    file = REPO / "asr_bench" / "encoders" / "edsr.py"
    assert Path(code["encoder"]["path"]) == file
    assert code["encoder"]["sha256"] != code["method"]["sha256"]


def test_op_sources_cover_the_op_package_and_its_compiled_sources():
    ops = provenance.op_sources({"meta_upscale": "torch", "rasterize": "cpp"})
    assert Path(ops["meta_upscale"]["path"]) == REPO / "asr_bench" / "ops" / "meta_upscale"
    assert ops["meta_upscale"]["sha256"] == independent_sha(REPO / "asr_bench" / "ops" / "meta_upscale")
    assert ops["rasterize"]["csrc_sha256"] == independent_sha(REPO / "asr_bench" / "csrc" / "rasterize",
                                                              (".cpp", ".cu", ".h", ".cuh"))


def test_a_changed_source_file_changes_its_hash(tmp_path):
    unit = tmp_path / "plugin_method.py"
    unit.write_text("A = 1\n")
    first = provenance.source_sha256(str(unit))
    unit.write_text("A = 2\n")
    provenance.source_sha256.cache_clear()
    assert provenance.source_sha256(str(unit)) != first
