"""container/layers.py on real images: built with buildah from scratch (no base image, no network), read back
through `podman image save`, as `make container-test` reads the CPU image."""

from __future__ import annotations

import shutil
import subprocess
import uuid

import pytest

from container.layers import find_secrets

pytestmark = pytest.mark.skipif(shutil.which("buildah") is None or shutil.which("podman") is None,
                                reason="buildah and podman not installed (Debian: apt-get install buildah podman; "
                                       ".ci/run installs them)")


def buildah(*args: str) -> str:
    result = subprocess.run(["buildah", *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture
def images():
    """Builds images layer by layer: ``build([{path: local file}, ...], env=[...])`` -> image name."""
    made: list[str] = []

    def build(layers: list[dict[str, str]], env: tuple[str, ...] = ()) -> str:
        name = f"localhost/layers-test-{uuid.uuid4().hex[:12]}"
        parent = "scratch"
        for number, files in enumerate(layers):
            container = buildah("from", parent)
            for destination, source in files.items():
                buildah("copy", container, source, destination)
            for variable in env:
                buildah("config", "--env", variable, container)
            tag = f"{name}:{number}"
            buildah("commit", "--rm", container, tag)
            made.append(tag)
            parent = tag
        return parent

    yield build
    subprocess.run(["podman", "rmi", "--force", *made], capture_output=True, timeout=120)


@pytest.fixture
def files(tmp_path):
    secret = tmp_path / "bundle.pem"
    secret.write_text("-----BEGIN CERTIFICATE-----\nMIIB-intercepting-proxy-ca\n-----END CERTIFICATE-----\n")
    twin = tmp_path / "twin.pem"  # the same size, other bytes: found only by size, it is no finding
    twin.write_text(secret.read_text().replace("proxy", "PROXY"))
    public = tmp_path / "public.txt"
    public.write_text("summaries\n")
    return secret, twin, public


def test_an_image_without_the_secret_has_no_finding(images, files):
    secret, twin, public = files
    image = images([{"/srv/public.txt": str(public)}, {"/etc/twin.pem": str(twin)}])
    assert find_secrets(image, [secret]) == []


def test_the_secret_is_found_in_the_layer_that_holds_it(images, files):
    secret, _, public = files
    image = images([{"/srv/public.txt": str(public)}, {"/opt/app/copied.pem": str(secret)},
                    {"/srv/more.txt": str(public)}])
    [finding] = find_secrets(image, [secret])
    assert finding.path == "/opt/app/copied.pem" and str(secret) in finding.why


def test_anything_under_run_secrets_and_build_only_variables_are_findings(images, files):
    _, _, public = files
    image = images([{"/run/secrets/token": str(public)}], env=("PIP_CERT=/run/secrets/ca-bundle",))
    found = {(f.path, f.why) for f in find_secrets(image, [])}
    assert ("/run/secrets/token", "a file where the build mounts its secrets") in found
    assert ("PIP_CERT=/run/secrets/ca-bundle", "a build-only variable in the image's environment") in found
