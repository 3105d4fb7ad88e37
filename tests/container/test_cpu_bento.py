"""What `make container` builds, checked without building it: the CPU Bento (bentofile.yaml, built by
``bentoml build`` with the tiny BART) and the Dockerfile BentoML's containerize renders for it from
container/Dockerfile.j2. The image itself is built and run by `make container-test`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from container.build import BuildOptions, containerfile, containerize_argv
from container.locks import pins
from tests.container.dockerfiles import assert_no_build_tools, assert_secrets_mounted_for_downloads_only

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCK = REPO_ROOT / "requirements-cpu.lock.txt"
# Never in the CPU image: PyTorch (the CUDA build on PyPI), and what would pull it in.
HEAVY = {"torch", "transformers", "optimum", "optimum-onnx", "accelerate"}


@pytest.fixture(scope="module")
def cpu_bento(build_bento) -> str:
    return build_bento("bentofile.yaml")


@pytest.fixture(scope="module")
def dockerfile(cpu_bento) -> str:
    return containerfile(cpu_bento)


def test_the_image_builds_on_the_base_image_argument_without_a_compiler(dockerfile):
    # The FROM line takes the build argument, so one Bento builds on any base; the default is a public one.
    assert "ARG BASE_IMAGE=python:3.11-slim-bookworm\nFROM ${BASE_IMAGE} AS base-container" in dockerfile
    # the base, then the Bento's files pruned in a stage of their own, then the image from the base's stage
    assert re.findall(r"^FROM .*", dockerfile, re.M) == [
        "FROM ${BASE_IMAGE} AS base-container", "FROM base-container AS bento-files", "FROM base-container"]
    assert "COPY --from=bento-files --chown=bentoml:bentoml /bento ./" in dockerfile
    assert_no_build_tools(dockerfile)


def test_packages_install_with_the_build_secrets_mounted_for_the_downloads_only(dockerfile):
    assert_secrets_mounted_for_downloads_only(dockerfile)


def test_the_bento_installs_the_lock_and_nothing_that_brings_pytorch(cpu_bento, bentoml_home):
    name, version = cpu_bento.split(":")
    installed = (bentoml_home / "bentos" / name / version / "env" / "python" / "requirements.txt").read_text()
    assert pins(installed) == pins(LOCK.read_text())
    assert not HEAVY & set(pins(installed)), "the CPU image would install PyTorch or a library that needs it"
    assert not [p for p in pins(installed) if p.startswith("nvidia-") and p != "nvidia-ml-py"], \
        "CUDA wheels in the CPU image"


def test_the_lock_satisfies_requirements_cpu():
    """A change to requirements-cpu.txt without `make lock-cpu` fails here, not in an image build."""
    locked = pins(LOCK.read_text())
    for line in (REPO_ROOT / "requirements-cpu.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        name = requirement.name.lower()
        assert name in locked, f"{name} is in requirements-cpu.txt but not in the lock: run make lock-cpu"
        assert requirement.specifier.contains(locked[name]), \
            f"the lock has {name}=={locked[name]}, requirements-cpu.txt asks {requirement.specifier}: make lock-cpu"


def test_containerize_gets_the_base_image_and_secrets(tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    argv = containerize_argv(BuildOptions(bento="b:1", image="i:1", base_image="localhost/base:1", ca_bundle=bundle))
    options = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--opt"]
    assert "build-arg=BASE_IMAGE=localhost/base:1" in options
    assert f"secret=id=ca-bundle,src={bundle}" in options
    assert not any(o.startswith("secret=id=pip-conf") for o in options)
    with pytest.raises(FileNotFoundError, match="PIP_CONF=/etc/pip.conf"):
        containerize_argv(BuildOptions(bento="b:1", image="i:1", base_image="b", pip_conf=tmp_path / "missing"))
    with pytest.raises(ValueError, match="buildah, podman, docker"):
        containerize_argv(BuildOptions(bento="b:1", image="i:1", base_image="b", backend="kaniko"))
