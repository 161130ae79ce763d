"""Datasets, image I/O and MATLAB-bicubic resizing.

    from asr_bench.data import imresize, read_image, write_image, to_tensor, to_uint8
    from asr_bench.data import list_datasets, resolve_dataset
"""
from __future__ import annotations

from .catalogue import Dataset, list_datasets, resolve_dataset
from .fingerprint import dataset_fingerprint, file_sha256
from .images import IMAGE_SUFFIXES, quantize, read_image, to_tensor, to_uint8, write_image
from .imresize import imresize

__all__ = [
    "Dataset", "IMAGE_SUFFIXES", "dataset_fingerprint", "file_sha256", "imresize", "list_datasets", "quantize", "read_image", "resolve_dataset",
    "to_tensor", "to_uint8", "write_image",
]
