"""CLIP training on a few real sample images: falling loss, identical weights twice, batches, model dir reload."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from reprolab.clip.data import PairSet, build_pairs, caption_batches
from reprolab.clip.embedding import ClipEmbedder
from reprolab.clip.model import ClipModelConfig, build_model, image_transform, save_model_dir, tokenizer_for
from reprolab.clip.features import at_cut, at_heads, tower_split
from reprolab.clip.train import TrainConfig, adamw, seed_everything, train

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples" / "art"
N_IMAGES = 8


def sample_records(n: int = N_IMAGES) -> list[dict]:
    texts = json.loads((SAMPLES / "descriptions.json").read_text(encoding="utf-8"))
    names = sorted(texts, key=lambda s: int(s.split(".")[0]))[:n]
    return [{"id": f"art/{name}", "image": f"images/{name}", "text": texts[name].strip()} for name in names]


TINY = TrainConfig(seed=0, threads=2, batch_size=4, heads_epochs=3, heads_lr=1e-3, epochs=3, lr=1e-3,
                   head_lr=1e-3, patience=10, warmup_fraction=0.0, feature_crop=0.6)
MODEL = ClipModelConfig(lock_image=True, image_unlocked_groups=1)


def tiny_run(records: list[dict]):
    """Build, cache and train on the given pairs (validation = train: this checks mechanics, not skill)."""
    seed_everything(TINY.seed, TINY.threads)
    model, model_cfg, preprocess = build_model(MODEL)
    pairs = build_pairs(records, SAMPLES, image_transform(preprocess), tokenizer_for(model_cfg))
    split, cpu = tower_split(model), torch.device("cpu")
    towers, cut = at_cut(model, split, pairs, cpu, flips=True)
    heads, pooled = at_heads(model, split, cut, cpu)
    history = train("heads", model, heads, pooled, pooled, adamw([(list(heads.parameters()), TINY.heads_lr)], 0.1),
                    TINY.heads_epochs, TINY, cpu)
    history += train("finetune", model, towers, cut, cut, adamw([(list(towers.parameters()), TINY.lr)], 0.1),
                     TINY.epochs, TINY, cpu, augment=True)
    return model, model_cfg, preprocess, history


@pytest.fixture(scope="module")
def trained():
    return tiny_run(sample_records())


@pytest.mark.slow
def test_training_on_a_few_images_lowers_the_loss(trained):
    _, _, _, history = trained
    heads = [r["train_loss"] for r in history if r["stage"] == "heads"]
    finetune = [r["train_loss"] for r in history if r["stage"] == "finetune"]
    assert heads[-1] < heads[0] * 0.8
    assert finetune[-1] < heads[0]
    assert all(np.isfinite(r["train_loss"]) for r in history)


@pytest.mark.slow
def test_two_cpu_trainings_give_identical_weights(trained):
    again, _, _, _ = tiny_run(sample_records())
    first = trained[0].state_dict()
    for name, tensor in again.state_dict().items():
        assert torch.equal(tensor, first[name]), name


@pytest.mark.slow
def test_saved_dir_reloads_bit_identically_in_a_fresh_process(trained, tmp_path):
    model, model_cfg, preprocess, _ = trained
    save_model_dir(model, model_cfg, preprocess, tmp_path / "clip", {"test": True})
    images = [str(SAMPLES / "images" / f"{i}.jpg") for i in range(3)]
    texts = ["an old man with a beard", "a girl in a red dress"]
    here = ClipEmbedder.from_dir(tmp_path / "clip")
    img, txt = here.encode_images(images), here.encode_texts(texts)
    assert img.dtype == txt.dtype == np.float32
    assert img.shape == (3, here.dim) and txt.shape == (2, here.dim)
    np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1.0, atol=1e-5)
    script = (
        "import sys, numpy as np, torch; torch.set_num_threads(2)\n"
        "from reprolab.clip.embedding import ClipEmbedder\n"
        f"e = ClipEmbedder.from_dir({str(tmp_path / 'clip')!r})\n"
        f"np.save(sys.argv[1], e.encode_images({images!r})); np.save(sys.argv[2], e.encode_texts({texts!r}))\n"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "i.npy"), str(tmp_path / "t.npy")],
                   check=True, cwd=tmp_path, capture_output=True)
    assert np.array_equal(np.load(tmp_path / "i.npy"), img)
    assert np.array_equal(np.load(tmp_path / "t.npy"), txt)
    # the trained model, not the packaged initial heads, is what came back
    with torch.no_grad():
        model.eval()
        direct = model.encode_text(tokenizer_for(model_cfg)(texts), normalize=True).numpy()
    np.testing.assert_allclose(direct, txt, atol=1e-5)


def test_batches_never_repeat_a_caption_or_an_image():
    captions = ["a cat", "A  cat", "a dog", "a bird", "a fish", "a cow"]
    owner = torch.tensor([0, 1, 2, 3, 3, 4])  # captions 3 and 4 describe one image; 0 and 1 read the same
    pairs = PairSet([f"{i}" for i in range(5)], torch.zeros(5, 3, 2, 2), captions, torch.zeros(6, 4), owner)
    for seed in range(20):
        batches = caption_batches(pairs, 4, torch.Generator().manual_seed(seed))
        for batch in batches:
            texts = [" ".join(captions[i].lower().split()) for i in batch]
            assert len(set(texts)) == len(texts)
            assert len({int(owner[i]) for i in batch}) == len(batch)
        assert sum(len(b) for b in batches) >= 5  # at most a lone caption is dropped


def test_caption_views_split_long_descriptions_into_extra_captions_of_the_same_image():
    from reprolab.clip.data import caption_views, with_caption_views

    text = "A man rides a horse. Behind him a castle burns!\nThe caption reads: Fin."
    views = caption_views(text, max_views=4)
    assert views[0] == "Behind him a castle burns! The caption reads: Fin."  # the tail a length cut hides
    assert "A man rides a horse." in views and "Behind him a castle burns!" in views
    assert caption_views("He rides. Ok.\nThe caption reads: Fin.") == ["The caption reads: Fin."]  # < 3 words out
    assert caption_views("One short sentence only.") == []  # nothing beyond the full text
    assert len(caption_views(text, max_views=2)) == 2

    pairs = PairSet(["a", "b"], torch.zeros(2, 3, 2, 2), [text, "A dog."], torch.zeros(2, 4, dtype=torch.long),
                    torch.tensor([0, 1]))
    augmented = with_caption_views(pairs, lambda texts: torch.ones(len(texts), 4, dtype=torch.long), 4)
    assert augmented.captions[:2] == pairs.captions  # the full descriptions stay first
    assert augmented.pixels is pairs.pixels
    assert augmented.caption_image.tolist() == [0, 1] + [0] * (len(augmented) - 2)
    assert augmented.tokens.shape == (len(augmented), 4)
    for batch in caption_batches(augmented, 4, torch.Generator().manual_seed(0)):
        assert len({int(augmented.caption_image[i]) for i in batch}) == len(batch)
