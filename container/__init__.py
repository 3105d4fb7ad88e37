"""The CPU container image: build it from the gated Bento, run it the way the cpu overlay's pod runs, check it.

    make base-image        container/base-image.sh: Debian bookworm + python3 from debootstrap, into podman
    make container         python -m container build: `bentoml containerize` of the Bento (buildah by default)
    make container-test    python -m container test: the image offline, as a pod (deploy/overlays/cpu) runs it

Modules: podman (the podman commands), build (containerize), pod (the Deployment as `podman run` flags),
server (the image served by `podman run`), netns (reaching a container without a network), layers (what
the image's layers hold), checks (the container test), startup (the run-to-ready benchmark).
"""
