"""Content hashes of dataset images: what a cached LR, and a stored result, were computed from.

A file's identity is the sha256 of its bytes, never its name: a replaced image, or the same catalogue name
under another data root, must not reuse numbers made from other pixels. Files are hashed through the package's
one content-hash index (`asr_bench.hashing`), which remembers a hash across runs.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..hashing import INDEX_NAME, file_sha256  # noqa: F401 - the one content-hash index, named here too


def array_sha256(array: np.ndarray) -> str:
    """sha256 of an image array (shape, dtype and pixels): the identity of an image that has no file."""
    array = np.ascontiguousarray(array)
    header = f"{array.dtype.str}{array.shape}".encode()
    return hashlib.sha256(header + array.tobytes()).hexdigest()


def image_sha256(dataset: Any, image_id: str, index_dir: str | Path | None = None) -> str:
    """The HR image's content hash: its file's sha256, or (embedded images) the decoded pixels' hash."""
    path = dataset.hr_path(image_id)
    return file_sha256(path, index_dir) if path is not None else array_sha256(dataset.hr(image_id))


def dataset_fingerprint(dataset: Any, scales: tuple[Any, ...] | list[Any] = (),
                        index_dir: str | Path | None = None) -> dict[str, Any]:
    """{folder, files: {file name: sha256}, lr: {scale: {file name: sha256}}, digest} of a dataset.

    `files` are the HR images (embedded images: id -> hash of the pixels); `lr` the premade LR files that
    exist for the given scales (they change numbers too). `digest` covers names and hashes (files and lr),
    not the folder, so a copied dataset has the same digest; provenance keys add the folder if they want it.
    """
    from .catalogue import _integer_label

    files: dict[str, str] = {}
    for image_id in dataset.image_ids():
        path = dataset.hr_path(image_id)
        files[path.name if path is not None else image_id] = image_sha256(dataset, image_id, index_dir)
    lr: dict[str, dict[str, str]] = {}
    for scale in scales:
        label = _integer_label(scale)
        if label is None:
            continue
        found = {p.name: file_sha256(p, index_dir) for p in
                 (dataset.premade_lr_path(i, scale) for i in dataset.image_ids()) if p is not None}
        if found:
            lr[label] = found
    folder = str(dataset.layout.hr_dir.resolve()) if dataset.layout.hr_dir is not None else dataset.source
    digest = hashlib.sha256(json.dumps({"files": files, "lr": lr}, sort_keys=True).encode()).hexdigest()
    return {"folder": folder, "files": files, "lr": lr, "digest": digest}
