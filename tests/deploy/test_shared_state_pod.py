"""The pod as deploy/components/shared-state configures it, run without a cluster: a real ``bentoml serve``
with the environment the rendered Deployment and ConfigMap give the container, its Secret as the kubelet
mounts it (a file per entry, through ``..data`` symlinks) holding the URLs of a real PostgreSQL and a real
redis-server. What one replica answers, every other replica sees: the answer is in PostgreSQL, where another
pod's POST /feedback finds it, and the summary is in Redis, where another pod's lookup finds it."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from client import SummarizerClient
from feedback.store import PostgresStore
from harness import bentoml_serve
from tests.cache.redis_server import NOT_INSTALLED, REDIS_SERVER, RedisServer
from tests.deploy.test_manifests import SHARED_STATE_SECRET, pod_spec, secret_sources
from tests.deploy.test_pod_runtime import container_environment

DIALOGUE = "Customer: My parcel never arrived.\nAgent: I have sent a new one today, with tracking."


def mount_secret(directory: Path, data: dict[str, str], items: list[dict]) -> None:
    """A Secret's items as the kubelet writes them: in a timestamped directory, linked through ..data."""
    version = directory / "..2026_12_02_18_00_00.000000001"
    version.mkdir(parents=True)
    for item in items:
        if item["key"] in data:
            (version / item["path"]).write_text(data[item["key"]])
            (directory / item["path"]).symlink_to(f"..data/{item['path']}")
    (directory / "..data").symlink_to(version.name)


@pytest.fixture(scope="module")
def replica(rendered, tiny_model, bentoml_home, postgres, tmp_path_factory):
    if REDIS_SERVER is None:
        pytest.skip(NOT_INSTALLED)
    m = rendered["cpu+shared-state"]
    root = tmp_path_factory.mktemp("shared-state-pod")
    cache = RedisServer(root).start()
    try:
        volumes = {"tmp": root / "tmp", "bentoml-home": bentoml_home, "feedback": root / "feedback",
                   "shared-state": root / "shared-state"}
        for name in ("tmp", "feedback"):
            volumes[name].mkdir()
        urls = {"SUMMARIZER_FEEDBACK_URL": postgres.url, "SUMMARIZER_CACHE_URL": cache.url}
        [volume] = [v for v in pod_spec(m)["volumes"] if v["name"] == "shared-state"]
        mount_secret(volumes["shared-state"], urls,
                     [item for source in secret_sources(volume) if source["name"] == SHARED_STATE_SECRET
                      for item in source["items"]])
        env = container_environment(m, volumes)
        assert not {"SUMMARIZER_FEEDBACK_URL", "SUMMARIZER_CACHE_URL"} & env.keys()  # files, not variables
        env = {name: value for name, value in env.items() if not name.startswith("OTEL_EXPORTER_")}
        env |= {"HOME": str(root), "TMPDIR": str(volumes["tmp"]), "SUMMARIZER_MODEL": tiny_model,
                "SUMMARIZER_ONNX_THREADS": "1", "SUMMARIZER_API_WORKERS": "1"}
        with bentoml_serve(root / "serve.log", env) as server:
            yield server, postgres.url, cache.url, volumes["feedback"]
    finally:
        cache.stop(grace_s=5)


def test_what_one_replica_answers_the_others_find_in_postgresql_and_redis(replica):
    server, feedback_url, cache_url, feedback_volume = replica
    with SummarizerClient(server.url) as client:
        first = client.summarize(DIALOGUE)
        again = client.summarize(DIALOGUE)
        assert (first.cached, again.cached) == (False, True)
        # Another replica's POST /feedback: its store is the same database, and knows this answer.
        other_pod = PostgresStore(feedback_url)
        try:
            assert other_pod.answer(first.request_id) is not None
            _, replaced = other_pod.submit(first.request_id, "good", None, None)
            assert not replaced
        finally:
            other_pod.close()
        assert client.feedback(first.request_id, "bad", corrected_summary="A new parcel is on its way.").replaced
    # Another replica's cache lookup: the entry is in Redis, not only in this pod's memory.
    with redis.Redis.from_url(cache_url) as other_cache:
        assert other_cache.dbsize() >= 1
    # And nothing in the pod's own SQLite volume: no answer is kept where only this pod would see it.
    assert list(feedback_volume.iterdir()) == []
