"""Bit-identical CPU rebuilds (README "Rebuild it from data").

- the pin itself: which variables, kept lower where a host is capped lower, and that each takes effect in a
  stage process (ATen capability, oneDNN ISA, MKL's reproducibility branch, numpy's dispatch);
- bf16 autocast under the pin takes the path of a host without AVX-512;
- the real stages fetch, split, train_clip on a few sample images give byte-identical outputs under the pin
  and on a host restricted further (AVX-512/AMX hidden from glibc, numpy's AVX2 loops off, libjpeg-turbo on
  SSE2);
- a fresh clone rebuilds fetch, split, train_clip to the md5s its committed dvc.lock records.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from reprolab.determinism import CpuPinError, cpu_pin, pin_cpu
from tests.pipeline_repo import REPO, PipelineRepo

SAMPLES = REPO / "samples" / "art"
N_IMAGES = 24

# A host with less than this one, for every library that reads the CPU itself (the pin keeps the rest at AVX2)
AVX512_AND_ABOVE = ("AVX512F", "AVX512CD", "AVX512BW", "AVX512DQ", "AVX512VL", "AVX512_IFMA", "AVX512_VBMI",
                    "AVX512_VBMI2", "AVX512_VNNI", "AVX512_BITALG", "AVX512_VPOPCNTDQ", "AVX512_BF16",
                    "AVX512_FP16", "AMX_BF16", "AMX_TILE", "AMX_INT8")
RESTRICTED_HOST = {
    "GLIBC_TUNABLES": "glibc.cpu.hwcaps=" + ",".join(f"-{f}" for f in AVX512_AND_ABOVE),
    "NPY_DISABLE_CPU_FEATURES": "X86_V3",  # numpy below the cap: its baseline (SSE4.2) loops only
    "JSIMD_FORCESSE2": "1",                # libjpeg-turbo (Pillow's decoder) on SSE2 instead of AVX2
}
TINY_PARAMS = {
    "fetch": {"source": "samples", "endpoint_url": None, "min_image_side": 64,
              "max_description_chars": 20000},
    "split": {"salt": "reprolab-v1", "ratios": {"train": 0.6, "validation": 0.2, "test": 0.2}},
    "train_clip": {"dataset": "art",
                   "train": {"seed": 0, "threads": 2, "device": "cpu", "batch_size": 8, "heads_epochs": 2,
                             "epochs": 2, "patience": 3}},
}


# --- the pin -----------------------------------------------------------------------------------------------

def test_the_pin_caps_every_library_at_avx2():
    assert cpu_pin({}) == {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                           "MKL_ENABLE_INSTRUCTIONS": "AVX2", "MKL_CBWR": "AVX2,STRICT",
                           "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"}


def test_a_higher_setting_is_capped_and_a_lower_one_kept():
    pin = cpu_pin({"ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "avx512_core_amx",
                   "MKL_ENABLE_INSTRUCTIONS": "AVX", "MKL_CBWR": "COMPATIBLE",
                   "NPY_DISABLE_CPU_FEATURES": "X86_V3,X86_V4"})
    assert pin["ATEN_CPU_CAPABILITY"] == "avx2"
    assert pin["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert pin["MKL_ENABLE_INSTRUCTIONS"] == "AVX"
    assert pin["MKL_CBWR"] == "AVX2,STRICT"  # a code path, not a cap: always ours
    assert pin["NPY_DISABLE_CPU_FEATURES"] == "X86_V3 X86_V4 AVX512_ICL AVX512_SPR"


def test_an_unknown_isa_is_an_error_that_names_it():
    with pytest.raises(CpuPinError, match="ONEDNN_MAX_CPU_ISA='AVX9'"):
        cpu_pin({"ONEDNN_MAX_CPU_ISA": "AVX9"})


def test_a_stage_refuses_an_unknown_isa_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "stages.split"], cwd=tmp_path, capture_output=True, text=True,
                          env=stage_env(ONEDNN_MAX_CPU_ISA="AVX9"), timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: CPU pin: ONEDNN_MAX_CPU_ISA='AVX9' is not one of")
    assert "Traceback" not in proc.stderr


def test_pin_cpu_writes_the_mapping_it_is_given():
    env = {"PATH": "/bin"}
    pin = pin_cpu(env)
    assert env == {"PATH": "/bin", **pin}


PROBE = """
import os, stages, torch, numpy
from numpy._core._multiarray_umath import __cpu_features__
x = torch.randn(2, 16, 28, 28)
torch.nn.functional.conv2d(x, torch.randn(16, 16, 3, 3), padding=1)  # oneDNN
torch.randn(64, 64) @ torch.randn(64, 64)                             # MKL sgemm
print("ATEN", torch.backends.cpu.get_cpu_capability())
print("NUMPY_V4", __cpu_features__["X86_V4"])
"""


def stage_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA",
                                                             "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS",
                                                             "NPY_DISABLE_CPU_FEATURES")}
    return {**env, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **extra}


def cpu_has(flag: str) -> bool:
    return flag in Path("/proc/cpuinfo").read_text().split()


@pytest.mark.skipif(not cpu_has("avx2"), reason="the cap is AVX2: a host without it is not of this kind")
def test_every_setting_takes_effect_in_a_stage_process(tmp_path):
    """`import stages` alone (what `python -m stages.<name>` does first) pins ATen, oneDNN, MKL and numpy."""
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=tmp_path, capture_output=True, text=True,
                          env=stage_env(ONEDNN_VERBOSE="1", MKL_VERBOSE="1"), timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "ATEN AVX2" in out
    assert "NUMPY_V4 False" in out
    assert "onednn_verbose,v1,info,cpu,isa:Intel AVX2\n" in out
    kernels = [line for line in out.splitlines() if line.startswith("onednn_verbose,v1,primitive,exec")]
    assert kernels and not [k for k in kernels if "avx512" in k or "amx" in k]
    sgemm = [line for line in out.splitlines() if line.startswith("MKL_VERBOSE SGEMM")]
    assert sgemm and all("CNR:AVX2,STRICT" in line for line in sgemm)


BF16_PROBE = """
import hashlib, sys, stages, torch
torch.manual_seed(0)
torch.backends.mkldnn.enabled = sys.argv[1] == "on"
linear, x = torch.nn.Linear(576, 576), torch.randn(32, 576)
q, k, v = (torch.randn(2, 9, 40, 64) for _ in range(3))
with torch.autocast("cpu", dtype=torch.bfloat16):
    y = linear(x)
    attention = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
y.float().sum().backward()
for t in (y, linear.weight.grad, attention):
    print(hashlib.sha256(t.detach().float().numpy().tobytes()).hexdigest())
"""


@pytest.mark.skipif(not cpu_has("avx2"), reason="the cap is AVX2: a host without it is not of this kind")
def test_bf16_autocast_under_the_pin_takes_the_path_of_a_host_without_avx512(tmp_path):
    """torch sends bf16 matmuls to oneDNN after checking the CPU itself (past every cap), which a host without
    AVX-512 never does. Under the pin this host must give the bytes of oneDNN switched off (finetune_mistral's
    `local.cpu_bf16`: a LoRA forward, backward and attention)."""
    digests = []
    for mkldnn in ("on", "off"):
        proc = subprocess.run([sys.executable, "-c", BF16_PROBE, mkldnn], cwd=tmp_path, capture_output=True,
                              text=True, env=stage_env(), timeout=300)
        assert proc.returncode == 0, proc.stderr
        digests.append(proc.stdout.split())
    assert len(digests[0]) == 3 and digests[0] == digests[1]


# --- same bytes under the pin and on a further-restricted host ---------------------------------------------

def tiny_workdir(root: Path) -> Path:
    """A pipeline folder with the first N_IMAGES sample images as its snapshot and tiny params."""
    data = root / "data" / "art"
    (data / "images").mkdir(parents=True)
    texts = json.loads((SAMPLES / "descriptions.json").read_text(encoding="utf-8"))
    names = sorted(texts, key=lambda s: int(s.split(".")[0]))[:N_IMAGES]
    (data / "descriptions.json").write_text(json.dumps({n: texts[n] for n in names}), encoding="utf-8")
    for name in names:
        shutil.copy(SAMPLES / "images" / name, data / "images" / name)
    (root / "params.yaml").write_text(yaml.safe_dump(TINY_PARAMS))
    return root


def run_stages(root: Path, env: dict[str, str]) -> dict[str, str]:
    """Run fetch, split, train_clip as `dvc repro` would; sha256 of every file they wrote."""
    for stage in ("fetch", "split", "train_clip"):
        proc = subprocess.run([sys.executable, "-m", f"stages.{stage}"], cwd=root, env=env,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"{stage}: {proc.stderr[-3000:]}"
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for top in ("corpus", "splits", "models", "reports") for p in sorted((root / top).rglob("*"))
            if p.is_file()}


@pytest.mark.slow
@pytest.mark.skipif(not cpu_has("avx2"), reason="the cap is AVX2: a host without it is not of this kind")
def test_stage_outputs_are_byte_identical_on_a_further_restricted_host(tmp_path):
    pinned = run_stages(tiny_workdir(tmp_path / "pinned"), stage_env())
    restricted = run_stages(tiny_workdir(tmp_path / "restricted"), stage_env(**RESTRICTED_HOST))
    assert "models/clip/open_clip_model.safetensors" in pinned
    assert "reports/clip/train_log/plots/metrics/train/loss.tsv" in pinned  # DVCLive's log, compared too
    differ = sorted(k for k in pinned.keys() | restricted.keys() if pinned.get(k) != restricted.get(k))
    assert not differ, f"outputs differ on the restricted host: {differ}"


# --- a fresh clone rebuilds the md5s of dvc.lock ------------------------------------------------------------

CHEAP_STAGES = ("fetch", "split", "train_clip")


def lock_outs(lock: dict, stage: str) -> dict[str, str]:
    return {out["path"]: out["md5"] for out in lock["stages"][stage]["outs"]}


@pytest.mark.slow
def test_a_fresh_clone_rebuilds_the_cheap_stages_to_the_md5s_in_dvc_lock(tmp_path):
    """As a newcomer would: clone, `make data` (the snapshot from samples/), `dvc repro` up to train_clip.

    Holds once dvc.lock was written by a pipeline run under the pin (any host of the kind)."""
    repo = PipelineRepo.clone(tmp_path / "clone")
    committed = repo.lock()
    repo.stage("snapshot")
    changed = repo.sh("git", "status", "--porcelain", "data.dvc").stdout
    assert not changed, "data.dvc does not record this commit's samples/: run `make data`, commit data.dvc"
    repo.dvc("repro", "--force", "train_clip")
    rebuilt = repo.lock()
    differ = {stage: sorted(path for path, md5 in lock_outs(committed, stage).items()
                            if lock_outs(rebuilt, stage).get(path) != md5) for stage in CHEAP_STAGES}
    assert not any(differ.values()), f"rebuilt outputs differ from the committed dvc.lock: {differ}"
