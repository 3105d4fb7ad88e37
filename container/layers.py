"""What an image's layers hold: the proof that a build secret never became part of the image.

A secret mount is not committed, but a build step could still have copied the file (``cp``, pip's cache in
the image, ``ENV`` pointing at it). So every layer is read, not just the final filesystem: a file deleted in a
later layer is still shipped in the earlier one.
"""

from __future__ import annotations

import hashlib
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from container import podman

# Where the build mounts its secrets, and the variables that point pip at them: none of it may ship.
SECRET_DIR = "run/secrets/"
BUILD_ONLY_VARIABLES = ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CONFIG_FILE")


@dataclass(frozen=True)
class Finding:
    layer: str
    path: str
    why: str

    def __str__(self) -> str:
        return f"{self.path} in layer {self.layer[:19]}: {self.why}"


def _sha256(fileobj, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    while block := fileobj.read(chunk):
        digest.update(block)
    return digest.hexdigest()


def layer_files(archive: Path) -> Iterator[tuple[str, tarfile.TarFile, tarfile.TarInfo]]:
    """(layer name, layer tar, member) for every regular file of every layer of a docker-archive."""
    with tarfile.open(archive) as outer:
        for entry in outer:
            if not entry.isfile() or not entry.name.endswith(".tar"):
                continue
            with tarfile.open(fileobj=outer.extractfile(entry), mode="r|") as layer:
                for member in layer:
                    if member.isfile():
                        yield entry.name, layer, member


def find_secrets(image: str, secret_files: Sequence[Path]) -> list[Finding]:
    """Files in ``image``'s layers under /run/secrets, or with the same bytes as one of ``secret_files``;
    and build-only variables in its configuration."""
    wanted = {}
    for path in secret_files:
        data = Path(path).read_bytes()
        wanted.setdefault(len(data), {})[hashlib.sha256(data).hexdigest()] = str(path)
    findings = []
    with tempfile.TemporaryDirectory(prefix="image-layers-") as scratch:
        archive = Path(scratch) / "image.tar"
        podman.podman("image", "save", "--format", "docker-archive", "--output", str(archive), image)
        for layer_name, layer, member in layer_files(archive):
            path = member.name.removeprefix("./")
            if path.startswith(SECRET_DIR):
                findings.append(Finding(layer_name, "/" + path, "a file where the build mounts its secrets"))
            elif member.size in wanted:
                digest = _sha256(layer.extractfile(member))
                if digest in wanted[member.size]:
                    findings.append(Finding(layer_name, "/" + path, f"the bytes of {wanted[member.size][digest]}"))
    env = podman.image_inspect(image).get("Config", {}).get("Env") or []
    for variable in env:
        name = variable.partition("=")[0]
        if name in BUILD_ONLY_VARIABLES:
            findings.append(Finding("config", variable, "a build-only variable in the image's environment"))
    return findings
