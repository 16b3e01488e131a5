"""Hash splits: deterministic, close to the ratios, and stable when data grows."""

from __future__ import annotations

import pytest

from reprolab.config import load_section
from reprolab.data.split import SplitConfig, split_by_hash, split_of
from reprolab.errors import ConfigError

CFG = SplitConfig()


def records(n, prefix="r"):
    return [{"id": f"{prefix}/{i}"} for i in range(n)]


def test_split_is_deterministic_and_near_the_ratios():
    parts = split_by_hash(records(5000), CFG)
    again = split_by_hash(list(reversed(records(5000))), CFG)
    assert parts == again
    shares = {k: len(v) / 5000 for k, v in parts.items()}
    for name, ratio in CFG.ratios.items():
        assert abs(shares[name] - ratio) < 0.03, shares


def test_new_data_never_moves_an_existing_record():
    old = records(2000)
    before = {r["id"]: split_of(r["id"], CFG) for r in old}
    grown = split_by_hash(old + records(3000, prefix="next-month"), CFG)
    after = {r["id"]: name for name, part in grown.items() for r in part}
    assert all(after[i] == s for i, s in before.items())


def test_the_salt_changes_the_assignment():
    ids = [r["id"] for r in records(500)]
    other = SplitConfig(salt="another")
    assert sum(split_of(i, CFG) != split_of(i, other) for i in ids) > 100


@pytest.mark.parametrize("ratios", [{"train": 0.8, "test": 0.2}, {"train": 0.7, "validation": 0.2, "test": 0.2}])
def test_bad_ratios_are_a_config_error_naming_the_key(tmp_path, ratios):
    params = tmp_path / "params.yaml"
    params.write_text(f"split:\n  ratios: {ratios}\n")
    with pytest.raises(ConfigError, match=r"split\.ratios"):
        load_section("split", SplitConfig, params)


def test_unknown_keys_are_refused(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("split:\n  slat: typo\n")
    with pytest.raises(ConfigError, match=r"split\.slat"):
        load_section("split", SplitConfig, params)
