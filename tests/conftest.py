"""Shared fixtures: tiny synthetic dark footage written as real video files."""
from pathlib import Path

import pytest

from dlkdd.config import GenerateConfig

ROOT = Path(__file__).resolve().parents[1]


def tiny_generate_config(**kw) -> GenerateConfig:
    base = dict(classes=["Drink", "Jump", "Sit"], train_per_class=2, val_per_class=1, test_per_class=1,
                num_frames=10, width=64, height=48)
    return GenerateConfig(**{**base, **kw})


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A 3-class synthetic dataset (12 clips) on disk; returns its manifest path."""
    from dlkdd.data.synthetic import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("raw"), tiny_generate_config(), seed=7)
