"""Applying the production profile: a deep merge into params.yaml that keeps comments and refuses typos."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from reprolab.errors import ConfigError
from reprolab.profiles import apply_profile

REPO = Path(__file__).resolve().parents[1]

BASE = """\
# the embedded default
fetch:
  source: samples   # local folder
  min_image_side: 64
split:
  ratios: {train: 0.7, validation: 0.15, test: 0.15}
"""


def test_profile_overrides_only_what_it_names(tmp_path):
    (tmp_path / "params.yaml").write_text(BASE)
    (tmp_path / "params.production.yaml").write_text("fetch:\n  source: s3://bucket/upstream\n")
    apply_profile("production", tmp_path / "params.yaml")
    text = (tmp_path / "params.yaml").read_text()
    params = yaml.safe_load(text)
    assert params["fetch"] == {"source": "s3://bucket/upstream", "min_image_side": 64}
    assert params["split"]["ratios"]["train"] == 0.7
    assert "# the embedded default" in text


def test_a_profile_section_that_does_not_exist_is_refused(tmp_path):
    (tmp_path / "params.yaml").write_text(BASE)
    (tmp_path / "params.production.yaml").write_text("fecth:\n  source: s3://bucket\n")
    with pytest.raises(ConfigError, match="'fecth'"):
        apply_profile("production", tmp_path / "params.yaml")
    assert (tmp_path / "params.yaml").read_text() == BASE


def test_a_missing_profile_is_a_clear_error(tmp_path):
    (tmp_path / "params.yaml").write_text(BASE)
    with pytest.raises(ConfigError, match="no profile 'staging'"):
        apply_profile("staging", tmp_path / "params.yaml")


def test_with_overrides_sets_dotted_keys_and_names_an_unknown_one():
    from reprolab.clip.experiment import TrainClipConfig
    from reprolab.config import with_overrides
    from reprolab.errors import ConfigError

    cfg = with_overrides(TrainClipConfig(), ["train.epochs=10", "model.lock_text=false"], "train_clip")
    assert cfg.train.epochs == 10 and cfg.model.lock_text is False
    assert TrainClipConfig().train.epochs != 10   # the original is untouched
    with pytest.raises(ConfigError, match="train_clip has no key 'train.epoch'"):
        with_overrides(TrainClipConfig(), ["train.epoch=10"], "train_clip")
    with pytest.raises(ConfigError, match="no key 'train'"):
        with_overrides(TrainClipConfig(), ["train"], "train_clip")
    with pytest.raises(ConfigError, match="overrides"):
        with_overrides(TrainClipConfig(), ["train.epochs=many"], "train_clip")


def test_the_production_profile_names_a_multilingual_text_embedder(tmp_path):
    """Issue 13: questions in other languages than the documents' need a multilingual embedder in production."""
    from reprolab.config import load_section
    from reprolab.rag.build import IndexConfig

    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    shutil.copy(REPO / "params.production.yaml", tmp_path / "params.production.yaml")
    apply_profile("production", tmp_path / "params.yaml")
    production = load_section("index", IndexConfig, tmp_path / "params.yaml")
    embedded = load_section("index", IndexConfig, REPO / "params.yaml")
    assert "multilingual" in production.rag.text_embedder
    assert production.rag.text_embedder != embedded.rag.text_embedder
    assert production.rag.answer == embedded.rag.answer  # only the embedder is overridden
