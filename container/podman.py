"""The podman commands the container build and test use, with the options every run needs."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence

# runc, and explicit file and process limits: crun and podman's default (unlimited) limits are refused on
# hosts that run podman inside a container (CI runners, this project's machines); both work everywhere.
RUNTIME = "runc"
RUN_LIMITS = ("--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096")


class PodmanError(RuntimeError):
    pass


def podman_binary() -> str:
    found = shutil.which("podman")
    if found is None:
        raise PodmanError("podman not found: install it (Debian: apt-get install podman buildah) or run the "
                          "image with Docker as README 'Build and ship' shows")
    return found


def podman(*args: str, timeout_s: float = 600) -> str:
    """``podman ARGS``; its standard output, or PodmanError with its standard error."""
    argv = [podman_binary(), "--runtime", RUNTIME, *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    if result.returncode != 0:
        raise PodmanError(f"{' '.join(argv)} exited with {result.returncode}: {result.stderr.strip()}")
    return result.stdout


def image_exists(image: str) -> bool:
    try:
        podman("image", "exists", image)
    except PodmanError:
        return False
    return True


def image_inspect(image: str) -> dict:
    """``podman image inspect``: Id, Size (bytes, uncompressed), Config (Env, User, Entrypoint), History."""
    [found] = json.loads(podman("image", "inspect", image))
    return found


def container_pid(name: str) -> int | None:
    """The host PID of the container's main process; None while it is not running."""
    try:
        pid = int(podman("container", "inspect", "--format", "{{.State.Pid}}", name).strip() or 0)
    except PodmanError:
        return None
    return pid or None


def run_argv(image: str, name: str, options: Sequence[str], command: Sequence[str] = ()) -> list[str]:
    """``podman run`` in the foreground (its exit status is the container's), removed when it exits."""
    return [podman_binary(), "--runtime", RUNTIME, "run", "--rm", "--name", name, *RUN_LIMITS, *options,
            image, *command]


def stop(name: str, grace_s: int) -> None:
    """SIGTERM to the container's main process, SIGKILL after ``grace_s`` (what the kubelet does)."""
    podman("stop", "--time", str(grace_s), name, timeout_s=grace_s + 60)


def remove(name: str) -> None:
    """Remove the container if it is still there (a clean-up that never fails)."""
    subprocess.run([podman_binary(), "--runtime", RUNTIME, "rm", "--force", "--ignore", name],
                   capture_output=True, timeout=120)
