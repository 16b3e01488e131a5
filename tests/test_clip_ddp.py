"""The CLIP loop data-parallel: two CPU processes on gloo give the loss, gradients and weights of one process
on the full batch (ClipLoss gathers features across ranks; DDP averages the gradients)."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from reprolab.clip.data import PairSet
from reprolab.clip.features import CachedInputs, Towers
from reprolab.clip.train import Ranks, TrainConfig, adamw, clip_loss, train

N, BATCH = 24, 8  # 24 pairs, global batch 8 = 4 per rank
CFG = TrainConfig(seed=0, threads=1, batch_size=BATCH, lr=1e-2, weight_decay=0.1, warmup_fraction=0.25,
                  patience=10, hflip=False, device="cpu")


def synthetic() -> tuple[Towers, CachedInputs]:
    torch.manual_seed(0)
    towers = Towers(torch.nn.Linear(8, 4), torch.nn.Linear(6, 4), torch.nn.Parameter(torch.tensor(2.0)))
    pairs = PairSet([str(i) for i in range(N)], torch.zeros(N, 1), [f"caption {i}" for i in range(N)],
                    torch.zeros(N, 1), torch.arange(N))
    g = torch.Generator().manual_seed(1)
    images = torch.randn(N, 8, generator=g)
    return towers, CachedInputs(pairs, images, None, images[:, :6] + 0.5 * torch.randn(N, 6, generator=g))


def one_step_gradients(towers: Towers, data: CachedInputs, ranks: Ranks) -> tuple[float, dict]:
    """Loss and gradients of one global batch (its first BATCH rows), this rank taking its share."""
    rows = ranks.share(list(range(BATCH)))
    net = DistributedDataParallel(towers) if ranks.world_size > 1 else towers
    loss_fn = clip_loss(ranks)
    loss = loss_fn(*net(data.images[rows], data.texts[rows]))
    loss.backward()
    total = loss.detach().clone()
    if ranks.world_size > 1:
        dist.all_reduce(total)
        total /= ranks.world_size
    grads = {n: p.grad.clone() for n, p in towers.named_parameters()}
    towers.zero_grad(set_to_none=True)
    return float(total), grads


def run(ranks: Ranks) -> dict:
    torch.set_num_threads(1)
    towers, data = synthetic()
    loss, grads = one_step_gradients(towers, data, ranks)
    optimizer = adamw([(list(towers.parameters()), CFG.lr)], CFG.weight_decay)
    history = train("ddp", towers, towers, data, data, optimizer, 3, CFG, torch.device("cpu"), ranks=ranks)
    return {"loss": loss, "grads": grads, "history": history, "state": towers.state_dict()}


def _worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        result = run(Ranks.current())
        torch.save(result, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_match_one_process_on_the_full_batch(tmp_path):
    single = run(Ranks())
    # fork: the children reuse the imported torch and open_clip (spawn re-imports them, ~20 s)
    mp.start_processes(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True,
                       start_method="fork")
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]

    for r in ranks:
        assert abs(r["loss"] - single["loss"]) < 1e-5
        for name, grad in single["grads"].items():
            torch.testing.assert_close(r["grads"][name], grad, atol=1e-6, rtol=1e-5, msg=name)
        for name, tensor in single["state"].items():
            torch.testing.assert_close(r["state"][name], tensor, atol=1e-5, rtol=1e-4, msg=name)
        assert [round(h["train_loss"], 5) for h in r["history"]] == \
               [round(h["train_loss"], 5) for h in single["history"]]
    assert single["history"][-1]["train_loss"] < single["history"][0]["train_loss"]  # it learned something


def test_ranks_share_a_global_batch_contiguously():
    batch = list(range(10, 17))  # 7 rows: the odd one out is dropped so every rank gathers the same shape
    assert Ranks(0, 2).share(batch) == [10, 11, 12]
    assert Ranks(1, 2).share(batch) == [13, 14, 15]
    assert Ranks().share(batch) == batch


def test_without_torchrun_the_stage_runs_as_rank_0_of_1():
    from reprolab.clip.train import join_torchrun

    assert join_torchrun({}) == Ranks() and join_torchrun({"WORLD_SIZE": "1"}) == Ranks()
    assert not dist.is_initialized()
