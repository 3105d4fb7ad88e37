"""``bentoml containerize`` of a Bento (the CPU or the GPU one), with the base image and the build secrets as
options.

BentoML renders the Dockerfile from the bentofile's template (container/Dockerfile.j2) and hands it to
the backend's build command; the options below reach that command through ``--opt``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from container import podman

BACKENDS = ("buildah", "podman", "docker")
# buildah and podman: chroot isolation and the host's network make a build work where the builder itself
# runs in a container (no nested namespaces, no bridge to set up); --layers keeps one layer per instruction,
# so a rebuild after a code change reuses the installed packages and a push sends only what changed.
LOCAL_BUILDER_OPTIONS = ("isolation=chroot", "network=host", "layers")
SECRET_EXAMPLES = {"ca-bundle": "CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt (a PEM bundle)",
                   "pip-conf": "PIP_CONF=/etc/pip.conf (with index-url = https://pypi.example.internal/simple)"}


@dataclass(frozen=True)
class BuildOptions:
    bento: str
    image: str
    base_image: str | None = None   # None: the bentofile's docker.base_image, the template's default
    backend: str = "buildah"
    ca_bundle: Path | None = None
    pip_conf: Path | None = None


def secret_files(options: BuildOptions) -> dict[str, Path]:
    """The build secrets by id (the ids Dockerfile.j2 mounts), each checked to be a readable file."""
    given = {"ca-bundle": options.ca_bundle, "pip-conf": options.pip_conf}
    secrets = {}
    for secret_id, path in given.items():
        if path is None:
            continue
        path = Path(path).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"the {secret_id} build secret {path} is not a file; give an existing "
                                    f"file, e.g. {SECRET_EXAMPLES[secret_id]}")
        secrets[secret_id] = path
    return secrets


def containerfile(bento: str) -> str:
    """The Dockerfile ``bentoml containerize`` builds ``bento`` with (BentoML renders it from the Bento)."""
    import bentoml

    with tempfile.TemporaryDirectory(prefix="containerfile-") as scratch, contextlib.chdir("/"):
        # chdir: see build() (bentoml/BentoML#5566).
        bentoml.container.get_containerfile(bento, output_path=f"{scratch}/Dockerfile", enable_buildkit=False)
        return Path(scratch, "Dockerfile").read_text()


def containerize_argv(options: BuildOptions) -> list[str]:
    if options.backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {options.backend!r}")
    bentoml = str(Path(sys.executable).with_name("bentoml"))
    argv = [bentoml, "containerize", options.bento, "--backend", options.backend, "--image-tag", options.image]
    if options.base_image:
        argv += ["--opt", f"build-arg=BASE_IMAGE={options.base_image}"]
    if options.backend != "docker":
        for option in LOCAL_BUILDER_OPTIONS:
            argv += ["--opt", option]
    for secret_id, path in secret_files(options).items():
        argv += ["--opt", f"secret=id={secret_id},src={path}"]
    return argv


def build(options: BuildOptions) -> float:
    """Build the image; returns the seconds it took. Raises when the build fails or leaves no image."""
    argv = containerize_argv(options)
    print("$ " + " ".join(argv), flush=True)
    started = time.perf_counter()
    # The build's own output goes straight to the terminal: it is long, and it is what explains a failure.
    # cwd "/": BentoML >= 1.4.36 refuses a dockerfile_template outside the working directory, and at
    # containerize time the template lies in a temporary copy of the Bento (bentoml/BentoML#5566).
    code = subprocess.run(argv, cwd="/", env={**os.environ, "BENTOML_DO_NOT_TRACK": "true"}).returncode
    seconds = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"bentoml containerize exited with {code} after {seconds:.0f} s (its output is above)")
    if options.backend != "docker" and not podman.image_exists(options.image):
        raise RuntimeError(f"bentoml containerize succeeded but podman has no image {options.image}")
    return seconds

