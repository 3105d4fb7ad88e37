"""The container images: the CPU image built from the gated Bento, run the way the cpu overlay's pod runs it and
checked; the GPU image's recipe (bentofile.gpu.yaml: same template, nvidia/cuda base, its own lock).

    make base-image        container/base-image.sh: Debian bookworm + python3 from debootstrap, into podman
    make container         python -m container build: `bentoml containerize` of the Bento (buildah by default)
    make container-test    python -m container test: the image offline, as a pod (deploy/overlays/cpu) runs it
    make container-gpu     python -m container build of the GPU Bento (make dockerfile-gpu: only render it)
    make lock-cpu|lock-gpu python -m container lock; python -m container resolve checks a lock with pip

Modules: podman (the podman commands), build (containerize), locks (the lock files: uv writes them, pip
resolves them), pod (the Deployment as `podman run` flags), server (the image served by `podman run`), netns
(reaching a container without a network), layers (what the image's layers hold), checks (the container
test), startup (the run-to-ready benchmark).
"""
