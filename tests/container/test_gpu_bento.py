"""The GPU recipe, checked without a GPU or an image registry: the GPU Bento (bentofile.gpu.yaml, built by
``bentoml build`` with the tiny BART), the Dockerfile BentoML's containerize renders for it from
container/Dockerfile.j2, and its lock file resolved by pip for the image (Linux x86_64, Ubuntu 24.04's
CPython 3.12) from PyPI without downloading a wheel."""

from __future__ import annotations

import filecmp
import platform
import re
from pathlib import Path

import bentoml
import pytest

from container.build import BuildOptions, containerfile, containerize_argv
from container.locks import RECIPES, cuda_packages, pins, resolve, stale_pins
from tests.container.dockerfiles import assert_no_build_tools, assert_secrets_mounted_for_downloads_only, instructions

GPU = RECIPES["gpu"]
# NVIDIA's smallest CUDA image on Ubuntu 24.04: the CUDA runtime, no cuBLAS/cuDNN (torch's wheels carry them).
CUDA_BASE = re.compile(r"ARG BASE_IMAGE=nvidia/cuda:(?P<cuda>\d+\.\d+)\.\d+-base-ubuntu24\.04\n"
                       r"FROM \$\{BASE_IMAGE\} AS base-container\n")
# What makes torch's CUDA build work: the CUDA runtime, cuBLAS and cuDNN as wheels (a CPU build has none).
CUDA_RUNTIME = "nvidia-cuda-runtime"
CUDA_LIBRARIES = {CUDA_RUNTIME, "nvidia-cublas", "nvidia-cudnn-cu13"}


@pytest.fixture(scope="module")
def gpu_bento(build_bento) -> str:
    return build_bento("bentofile.gpu.yaml")


@pytest.fixture(scope="module")
def bento_dir(gpu_bento, bentoml_home) -> Path:
    name, version = gpu_bento.split(":")
    return bentoml_home / "bentos" / name / version


@pytest.fixture(scope="module")
def dockerfile(gpu_bento) -> str:
    return containerfile(gpu_bento)


def cuda_of(version: str) -> str:
    return ".".join(version.split(".")[:2])


def test_the_gpu_image_is_on_the_cuda_base_of_torchs_cuda_version(dockerfile):
    base = CUDA_BASE.search(dockerfile)
    assert base, f"no nvidia/cuda:<version>-base-ubuntu24.04 BASE_IMAGE in:\n{dockerfile[:1500]}"
    assert re.findall(r"^FROM .*", dockerfile, re.M) == [  # one base; the Bento's files staged on it
        "FROM ${BASE_IMAGE} AS base-container", "FROM base-container AS bento-files", "FROM base-container"]
    # The base's CUDA is torch's: NVIDIA_REQUIRE_CUDA then stops a container on a driver too old for torch.
    assert base["cuda"] == cuda_of(pins(GPU.lock.read_text())[CUDA_RUNTIME])
    # BentoML's CUDA template empties NVIDIA_VISIBLE_DEVICES; nvidia/cuda's own setting (all) must stay.
    assert re.search(r"^ENV NVIDIA_", dockerfile, re.M) is None


def test_no_compiler_and_only_python_from_the_distribution(dockerfile):
    assert_no_build_tools(dockerfile)


def test_packages_install_from_the_lock_with_the_build_secrets_mounted_for_the_downloads_only(dockerfile, bento_dir):
    assert_secrets_mounted_for_downloads_only(dockerfile)
    installed = (bento_dir / "env" / "python" / "requirements.txt").read_text()
    assert pins(installed) == pins(GPU.lock.read_text())
    assert {"torch", "transformers", "onnxruntime", "tokenizers"} <= set(pins(installed))


def test_the_service_model_and_entrypoint_are_bentomls(dockerfile, bento_dir, tiny_model, gpu_bento):
    steps = instructions(dockerfile)
    entrypoint = "/home/bentoml/bento/env/docker/entrypoint.sh"
    assert steps[-3:] == [f"RUN chmod +x {entrypoint}", "USER bentoml", f'ENTRYPOINT [ "{entrypoint}" ]']
    assert "EXPOSE 3000" in steps and "COPY . /bento" in steps
    assert "COPY --from=bento-files --chown=bentoml:bentoml /bento ./" in steps
    shipped = Path(bentoml.__file__).parent / "_internal" / "container" / "frontend" / "dockerfile" / "entrypoint.sh"
    assert filecmp.cmp(bento_dir / "env" / "docker" / "entrypoint.sh", shipped, shallow=False)
    # containerize copies the Bento's models from the store into models/ of the build context, which
    # `COPY . /bento` stages for the image (with its PyTorch weights: this image has torch): it serves offline,
    # as the CPU image does.
    info = bentoml.get(gpu_bento).info
    assert info.service == "service:DialogueSummarizer"
    assert tiny_model in {str(model.tag) for model in info.all_models}


def test_the_gpu_lock_is_current():
    assert stale_pins(GPU) == []


@pytest.mark.skipif((platform.system(), platform.machine()) != ("Linux", "x86_64"),
                    reason="pip evaluates torch's CUDA markers on the host: the image's are Linux x86_64's")
def test_the_gpu_lock_resolves_for_linux_x86_64_with_torchs_cuda_build(tmp_path):
    """pip's resolver, dependencies included, for CPython 3.12 on manylinux x86_64, wheels only: every pin has
    a wheel there, no two pins conflict, and the lock misses no dependency (pip would add it)."""
    resolution = resolve(GPU, cache_dir=tmp_path / "pip-cache")
    assert resolution.installs == pins(GPU.lock.read_text())
    # The CUDA build: PyPI's torch for Linux x86_64 (the CPU build is 2.13.0+cpu, from PyTorch's own index)
    # and the CUDA libraries it depends on there.
    assert resolution.installs["torch"] == "2.13.0"
    assert re.fullmatch(r"torch-2\.13\.0-cp312-cp312-manylinux_2_\d+_x86_64\.whl", resolution.wheels["torch"])
    assert CUDA_LIBRARIES <= set(cuda_packages(resolution.installs))
    print(f"resolved {len(resolution.installs)} wheels in {resolution.seconds:.1f} s")


def test_the_gpu_build_takes_the_bentofiles_base_unless_given_another():
    default = containerize_argv(BuildOptions(bento="dialogue-summarizer-gpu:1", image="i:1"))
    assert not any(arg.startswith("build-arg=BASE_IMAGE=") for arg in default)
    mirror = "registry.example/nvidia/cuda:13.0.2-base-ubuntu24.04"
    given = containerize_argv(BuildOptions(bento="dialogue-summarizer-gpu:1", image="i:1", base_image=mirror))
    assert f"build-arg=BASE_IMAGE={mirror}" in given
