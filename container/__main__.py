"""python -m container build|test --help

    python -m container build --bento dialogue-summarizer:latest --image dialogue-summarizer:latest \\
        --base-image localhost/dialogue-summarizer-base:bookworm [--ca-bundle PEM] [--pip-conf FILE]
    python -m container build --bento dialogue-summarizer-gpu:latest --image dialogue-summarizer-gpu:latest \\
        [--backend docker] [--ca-bundle PEM] [--pip-conf FILE]       (the GPU image, on nvidia/cuda)
    python -m container dockerfile --bento dialogue-summarizer:latest     (what containerize builds)
    python -m container lock --recipe cpu|gpu      (requirements-<recipe>.lock.txt from requirements-<recipe>.txt)
    python -m container resolve --recipe cpu|gpu   (pip's resolver on the lock for the image: Linux x86_64)
    python -m container startup --image dialogue-summarizer:latest --starts 5   (run-to-ready benchmark)
    python -m container test --image dialogue-summarizer:latest [--ca-bundle PEM] [--pip-conf FILE] [--network host]

Exit status: 0 done (every check passed), 1 a check failed, 2 the build or the test could not run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from harness.process import REPO_ROOT

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m container", description="The container images: build "
                                     "one from a Bento, run the CPU image offline and check it, lock and resolve "
                                     "the images' packages.")
    sub = parser.add_subparsers(dest="command", required=True)

    def secrets(p: argparse.ArgumentParser, verb: str) -> None:
        p.add_argument("--ca-bundle", type=Path, help=f"PEM CA bundle pip trusts during the build ({verb})")
        p.add_argument("--pip-conf", type=Path, help=f"pip.conf for the build, e.g. a package mirror ({verb})")

    p = sub.add_parser("build", help="bentoml containerize the Bento into an image")
    p.add_argument("--bento", default="dialogue-summarizer:latest", help="Bento tag (default: %(default)s)")
    p.add_argument("--image", default="dialogue-summarizer:latest", help="image tag (default: %(default)s)")
    p.add_argument("--base-image", help="FROM image, e.g. python:3.11-slim-bookworm (default: the bentofile's "
                   "docker.base_image; the GPU Bento's is nvidia/cuda:13.0.2-base-ubuntu24.04)")
    p.add_argument("--backend", default="buildah", help="buildah, podman or docker (default: %(default)s)")
    secrets(p, "a build secret, never in a layer")
    p = sub.add_parser("dockerfile", help="print the Dockerfile bentoml containerize builds the Bento with")
    p.add_argument("--bento", default="dialogue-summarizer:latest", help="Bento tag (default: %(default)s)")
    for name, text in (("lock", "write the recipe's lock file with uv (needs PyPI)"),
                       ("resolve", "pip install --dry-run of the recipe's lock for Linux x86_64 (needs PyPI)")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--recipe", choices=("cpu", "gpu"), default="cpu", help="(default: %(default)s)")
    p = sub.add_parser("test", help="run the image offline as the cpu overlay's pod, and check it")
    p.add_argument("--image", default="dialogue-summarizer:latest", help="image tag (default: %(default)s)")
    p.add_argument("--log-dir", type=Path, help="logs and report.json (default: runs/container/<time>)")
    p.add_argument("--network", choices=("none", "host"), default="none",
                   help="none: the container has no network, and the test joins its namespace (root); host: "
                        "the host's network, on a free port (default: %(default)s)")
    secrets(p, "the image's layers are searched for it")
    p = sub.add_parser("startup", help="benchmark: seconds from podman run to ready, over several starts")
    p.add_argument("--image", default="dialogue-summarizer:latest", help="image tag (default: %(default)s)")
    p.add_argument("--starts", type=int, default=5, help="how many starts (default: %(default)s)")
    p.add_argument("--network", choices=("none", "host"), default="none", help="as for test (default: %(default)s)")
    return parser


def cmd_build(args) -> int:
    from container import build, podman

    options = build.BuildOptions(bento=args.bento, image=args.image, base_image=args.base_image,
                                 backend=args.backend, ca_bundle=args.ca_bundle, pip_conf=args.pip_conf)
    seconds = build.build(options)
    size = f", {podman.image_inspect(args.image)['Size'] / 1e6:.0f} MB" if args.backend != "docker" else ""
    base = args.base_image or "the bentofile's base image"
    print(f"built {args.image} from {args.bento} on {base} in {seconds:.0f} s{size}")
    return 0


def cmd_dockerfile(args) -> int:
    from container.build import containerfile

    print(containerfile(args.bento), end="")
    return 0


def cmd_lock(args) -> int:
    from container.locks import recipe, write_lock

    write_lock(recipe(args.recipe))
    return 0


def cmd_resolve(args) -> int:
    from container.locks import cuda_packages, recipe, resolve

    locked = recipe(args.recipe)
    resolution = resolve(locked)
    cuda = cuda_packages(resolution.installs)
    print(f"{locked.lock.name}: {len(resolution.installs)} wheels for CPython {locked.python_version} on Linux "
          f"x86_64, resolved by pip in {resolution.seconds:.1f} s; torch "
          f"{resolution.installs.get('torch', 'absent')}, {len(cuda)} CUDA packages")
    return 0


def cmd_test(args) -> int:
    from container.checks import run_checks

    log_dir = args.log_dir or REPO_ROOT / "runs" / "container" / time.strftime("%Y%m%d-%H%M%S")
    secret_files = [path for path in (args.ca_bundle, args.pip_conf) if path is not None]
    report = run_checks(args.image, log_dir, secret_files, network=args.network)
    figures = report.figures
    print(f"image {args.image}: {figures.get('image_size_mb', '?')} MB; run to ready "
          f"{figures.get('run_to_ready_s', '?')} s; logs and report.json in {log_dir}")
    if report.failures:
        print(f"{len(report.failures)} check(s) failed", file=sys.stderr)
        return 1
    return 0


def cmd_startup(args) -> int:
    from container.startup import measure_starts, summary

    if args.starts < 1:
        raise ValueError(f"--starts must be at least 1, e.g. 5; got {args.starts}")
    log_dir = REPO_ROOT / "runs" / "container" / f"startup-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"{args.image}: {summary(measure_starts(args.image, args.starts, log_dir, args.network))}")
    return 0


COMMANDS = {"build": cmd_build, "dockerfile": cmd_dockerfile, "lock": cmd_lock, "resolve": cmd_resolve,
            "test": cmd_test, "startup": cmd_startup}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from container.podman import PodmanError

    try:
        return COMMANDS[args.command](args)
    except (PodmanError, FileNotFoundError, ValueError, RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
