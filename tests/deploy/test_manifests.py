"""deploy/'s overlays as `kubectl apply -k` would send them: valid for a current Kubernetes, clean for
checkov (every skipped check explained in the manifest), and saying what the service needs: probes on
/readyz and /livez, a locked-down pod, measured resources, a drain that fits the grace period, and an
autoscaler on requests in flight per pod."""

from __future__ import annotations

import copy
import hashlib
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

from feedback.store import AnswerRecord, SQLiteStore, settings_json
from serving.config import ServingConfig
from serving.protocol import GenerationSettings
from tests.deploy import crd_schemas
from tests.deploy.checkov_runner import NO_REASON, run_checkov
from tests.deploy.manifests import Rendered
from tests.observability.prometheus_names import selectors

KUBERNETES_VERSION = "1.37.0"  # the newest kubernetes-validate 1.37 knows
IN_FLIGHT_METRIC = "bentoml_service_request_in_progress"
PUBLIC_SERVICE = "dialogue_summarizer"  # BentoML's runner_name label of the public service (service.py)
BART_LARGE_READY_S = 28  # issue 12: bart-large-cnn ready 28 s after start on 2 cores
REPLICA_SUMMARIES_PER_S = 28.7  # a CPU replica's capacity (python -m bench.capacity, README's capacity table)


def built_in(objects) -> list[dict]:
    return [o for o in objects if not crd_schemas.covered(o)]


def pod_spec(m: Rendered) -> dict:
    return m.one("Deployment")["spec"]["template"]["spec"]


def pod_labels(m: Rendered) -> dict:
    return m.one("Deployment")["spec"]["template"]["metadata"]["labels"]


def selects_pods(selector: dict, m: Rendered) -> bool:
    return bool(selector) and selector.items() <= pod_labels(m).items()


def cpus(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def gibibytes(quantity: str) -> float:
    units = {"Gi": 1.0, "Mi": 1 / 1024}
    return float(quantity[:-2]) * units[quantity[-2:]]


# What the Secrets a user creates hold, as the components' comments tell them (stand-ins: no real password).
SHARED_STATE_SECRET = "dialogue-summarizer-shared-state"
STAND_IN_SECRETS = {SHARED_STATE_SECRET: {
    "SUMMARIZER_FEEDBACK_URL": "postgresql://summarizer:stand-in@postgres.databases:5432/summarizer",
    "SUMMARIZER_CACHE_URL": "redis://:stand-in@redis.databases:6379/0"}}


def secret_sources(volume: dict) -> list[dict]:
    """The Secrets a volume shows, a secret volume's or a projected volume's ({name, items, optional})."""
    if "secret" in volume:
        secret = volume["secret"]
        return [{"name": secret["secretName"], "items": secret["items"], "optional": secret.get("optional", False)}]
    return [source["secret"] | {"optional": source["secret"].get("optional", False)}
            for source in volume.get("projected", {}).get("sources", []) if "secret" in source]


def serving_config(m: Rendered, secrets: dict[str, dict[str, str]] = STAND_IN_SECRETS) -> ServingConfig:
    """The service's settings from the ConfigMap; files on Secret volumes are stood in for by local ones, with
    what ``secrets`` holds or else a generated key (the API keys), at the paths the Secret's items give them.
    A key that ``secrets`` lacks is left out where the volume marks it optional, as the kubelet does."""
    config = dict(m.config())
    volumes = {v["name"]: v for v in pod_spec(m)["volumes"]}
    for mount in m.container()["volumeMounts"]:
        sources = secret_sources(volumes[mount["name"]])
        if not sources:
            continue
        local = Path(tempfile.mkdtemp(prefix="secret-"))
        for source in sources:
            data = secrets.get(source["name"])
            for item in source["items"]:
                if data is None:
                    value = f"# {item['key']} of {source['name']}\n{uuid.uuid4().hex}\n"
                elif item["key"] in data:
                    value = data[item["key"]]
                else:
                    assert source["optional"], f"the pod would not start without {item['key']} in {source['name']}"
                    continue
                (local / item["path"]).write_text(value)
        for name, value in config.items():
            if value == mount["mountPath"] or value.startswith(mount["mountPath"] + "/"):
                config[name] = str(local) + value[len(mount["mountPath"]):]
    return ServingConfig.load(config)


def prometheus_trigger(m: Rendered) -> dict:
    [trigger] = [t for t in m.one("ScaledObject")["spec"]["triggers"] if t["type"] == "prometheus"]
    return trigger


# --- validity --------------------------------------------------------------------------------------------


def test_built_in_kinds_are_valid_for_a_current_kubernetes_strictly(manifests):
    errors, without_schema = [], set()
    for obj in built_in(manifests.objects):
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except ValidationError as exc:
            errors.append(f"{obj['kind']}: {'.'.join(map(str, exc.path))}: {exc.message}")
        except SchemaNotFoundError:
            without_schema.add(obj["kind"])
    assert not errors, "\n".join(errors)
    # Every kind is checked by one validator or the other: nothing new slips through unvalidated.
    assert not without_schema, f"no schema for {without_schema}: add them to tests/deploy/crd_schemas.py"
    assert {"Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy", "ConfigMap"} <= manifests.kinds()


def test_custom_resources_match_their_crds(manifests):
    custom = [o for o in manifests.objects if crd_schemas.covered(o)]
    assert sorted(o["kind"] for o in custom) == ["PodMonitor", "ScaledObject"]
    for obj in custom:
        assert crd_schemas.problems(obj) == [], obj["kind"]


def test_both_validators_reject_a_misspelt_field(rendered):
    """Strict really is strict: a typo that the API server would refuse or drop fails here."""
    deployment = copy.deepcopy(rendered["cpu"].one("Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"periodSeconds": 5}
    with pytest.raises(ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    scaled_object = copy.deepcopy(rendered["cpu"].one("ScaledObject"))
    scaled_object["spec"]["maxReplicaCont"] = 3
    scaled_object["spec"]["triggers"][0]["metadata"]["treshold"] = "32"
    found = crd_schemas.problems(scaled_object)
    assert any("maxReplicaCont" in p for p in found) and any("treshold" in p for p in found), found


def test_checkov_fails_nothing_that_the_manifests_do_not_explain(rendered, tmp_path):
    for name, m in rendered.items():
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump_all(m.objects))
    report = run_checkov(tmp_path)
    assert not report.failed, "checkov failed, with no checkov.io/skip annotation explaining why:\n" + "\n".join(
        f"{f.check_id} {f.name}: {f.resource} in {f.file}" for f in report.failed)
    for finding in report.skipped:
        assert finding.reason != NO_REASON and len(finding.reason) > 40, \
            f"{finding.check_id} on {finding.resource} is skipped without a reason: use checkov.io/skipN: ID=why"
    # It did look at every rendering's Deployment: its security checks passed there.
    for name in rendered:
        passed = {f.check_id for f in report.passed if f.file.endswith(f"/{name}.yaml")
                  and f.resource.startswith("Deployment.")}
        assert {"CKV_K8S_8", "CKV_K8S_9", "CKV_K8S_20", "CKV_K8S_22", "CKV_K8S_23", "CKV_K8S_28", "CKV_K8S_31",
                "CKV_K8S_37", "CKV_K8S_38"} <= passed, name


def test_settings_are_valid_for_the_service(manifests):
    config = serving_config(manifests)  # raises ConfigError naming each bad SUMMARIZER_* variable
    assert config.model_tag == manifests.config()["SUMMARIZER_MODEL"]
    # One ONNX Runtime thread per CPU of the pod's limit, not per core of the node.
    assert config.onnx_threads == cpus(manifests.container()["resources"]["limits"]["cpu"])


# --- probes and shutdown ---------------------------------------------------------------------------------


def test_probes_ask_the_service_routes_with_room_for_a_busy_pod(manifests):
    container = manifests.container()
    http_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert http_ports == {"http": 3000}
    paths = {probe: (container[probe]["httpGet"]["path"], container[probe]["httpGet"]["port"])
             for probe in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert paths == {"startupProbe": ("/readyz", "http"), "readinessProbe": ("/readyz", "http"),
                     "livenessProbe": ("/livez", "http")}
    readiness, liveness, startup = (container[p] for p in ("readinessProbe", "livenessProbe", "startupProbe"))
    assert readiness["timeoutSeconds"] > 1  # Kubernetes' default of 1 s is what marked busy pods unready
    # A pod is restarted only after answering nothing for as long as a request may take.
    config = serving_config(manifests)
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= config.request_timeout_s
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 4 * BART_LARGE_READY_S


def test_shutdown_waits_for_the_longest_request(manifests):
    spec = pod_spec(manifests)
    pre_stop_s = manifests.container()["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pre_stop_s >= 5  # endpoints, kube-proxy and ingress controllers need a moment to drop the pod
    assert spec["terminationGracePeriodSeconds"] >= pre_stop_s + serving_config(manifests).request_timeout_s


# --- security and writable paths -------------------------------------------------------------------------


def test_pod_runs_locked_down(manifests):
    spec = pod_spec(manifests)
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == 1034
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = manifests.container()["securityContext"]
    assert container["allowPrivilegeEscalation"] is False and container["readOnlyRootFilesystem"] is True
    assert container["capabilities"] == {"drop": ["ALL"]}
    assert spec["automountServiceAccountToken"] is False
    account = manifests.one("ServiceAccount")
    assert spec["serviceAccountName"] == account["metadata"]["name"]
    assert account["automountServiceAccountToken"] is False
    namespace = manifests.one("Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert {o["metadata"].get("namespace") for o in manifests.objects if o["kind"] != "Namespace"} == \
        {namespace["metadata"]["name"]}


def test_every_writable_path_is_a_bounded_volume(manifests):
    volumes = {v["name"]: v for v in pod_spec(manifests)["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in manifests.container()["volumeMounts"] if not m.get("readOnly")}
    assert all("sizeLimit" in volumes[name]["emptyDir"] for name in mounts.values())
    env = {e["name"]: e.get("value") for e in manifests.container()["env"]} | manifests.config()
    writable = ["/tmp", env["BENTOML_HOME"], env["XDG_CACHE_HOME"], env["SUMMARIZER_FEEDBACK_PATH"]]
    for path in writable:
        assert any(path == m or path.startswith(m + "/") for m in mounts), f"{path} is not on a volume"


# --- resources -------------------------------------------------------------------------------------------


def test_requests_equal_limits(manifests):
    resources = manifests.container()["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys()
    assert resources["requests"] == resources["limits"]  # Guaranteed QoS: see the overlays' resources.yaml


def test_gpu_overlay_requests_a_gpu_on_gpu_nodes(rendered):
    gpu, cpu = rendered["gpu"], rendered["cpu"]
    assert gpu.container()["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert any(t["key"] == "nvidia.com/gpu" and t["effect"] == "NoSchedule" for t in pod_spec(gpu)["tolerations"])
    assert pod_spec(gpu)["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert gpu.container()["image"].startswith("dialogue-summarizer-gpu:")
    assert (gpu.config()["SUMMARIZER_PRIMARY"], gpu.config()["SUMMARIZER_FALLBACK"]) == ("auto", "auto")
    # PyTorch with CUDA beside the ONNX fallback needs more host memory than ONNX Runtime alone.
    assert gibibytes(gpu.container()["resources"]["limits"]["memory"]) > \
        gibibytes(cpu.container()["resources"]["limits"]["memory"])
    assert "nvidia.com/gpu" not in cpu.container()["resources"]["limits"]
    assert "tolerations" not in pod_spec(cpu) and cpu.config()["SUMMARIZER_PRIMARY"] == "onnx"


def test_bart_large_cnn_component_serves_that_model_with_more_memory(rendered):
    large, small = rendered["cpu+bart-large-cnn"], rendered["cpu"]
    assert large.config()["SUMMARIZER_MODEL"] == "bart-large-cnn:latest"
    # bench.large_model: all processes 2.5 GB PSS after summaries, +0.8 GB during a batch of 4, +0.9 GB
    # while prepacking at start (README "Fit at bart-large-cnn scale")
    memory = gibibytes(large.container()["resources"]["limits"]["memory"])
    assert memory >= (2.52 + 0.9) * 1e9 / 2**30
    assert memory > gibibytes(small.container()["resources"]["limits"]["memory"])
    # A batch of long summaries takes longer than BentoML's default batching deadline and the primary timeout:
    # both are raised, within the request timeout
    config = serving_config(large)
    assert config.max_batch_size <= 4 and 60_000 <= config.max_latency_ms <= config.request_timeout_s * 1000
    assert 60 <= config.primary_timeout_s <= config.request_timeout_s
    # Slow summaries: a smaller queue, so that a request can wait its turn within the request timeout.
    assert serving_config(large).max_pending_requests < serving_config(small).max_pending_requests


# --- autoscaling -----------------------------------------------------------------------------------------


def test_api_keys_component_mounts_the_secret_the_service_reads(rendered):
    with_keys, without = rendered["cpu+api-keys"], rendered["cpu"]
    assert serving_config(without).key_source() is None  # off by default
    config = with_keys.config()
    [mount] = [m for m in with_keys.container()["volumeMounts"] if m["name"] == "api-keys"]
    [volume] = [v for v in pod_spec(with_keys)["volumes"] if v["name"] == "api-keys"]
    # A directory mount, never subPath: only then does the kubelet update the file when the Secret changes.
    assert mount["readOnly"] is True and "subPath" not in mount
    assert volume["secret"]["optional"] is False and volume["secret"]["defaultMode"] == 0o440
    [item] = volume["secret"]["items"]
    assert config["SUMMARIZER_API_KEYS_FILE"] == f"{mount['mountPath']}/{item['path']}"
    assert len(serving_config(with_keys).key_source().keys()) == 1
    # Keys are files, not environment variables (those show in `kubectl describe` and crash dumps).
    assert not any("secretKeyRef" in str(e) for e in with_keys.container().get("env", []))
    # Everything else is the cpu overlay's: Prometheus still scrapes /metrics without a key.
    assert "SUMMARIZER_METRICS_REQUIRE_KEY" not in config
    assert {k: v for k, v in config.items() if k != "SUMMARIZER_API_KEYS_FILE"} == without.config()


def answer_bytes(directory: Path, answers: int = 5_000) -> float:
    """Bytes the SQLite feedback store's file takes per answer recorded without its text (438 for 100,000)."""
    store = SQLiteStore(directory / "feedback.sqlite3")
    settings = settings_json(GenerationSettings(num_beams=4, max_new_tokens=128, min_new_tokens=8,
                                                length_penalty=1.0, no_repeat_ngram_size=3))
    digest = hashlib.sha256(b"dialogue").hexdigest()
    for _ in range(0, answers, 1000):
        store.record([AnswerRecord(uuid.uuid4().hex, 1.8e9, "dialogue-bart-small:q7bfkwq2ygq4rp5b", "/summarize_batch",
                                   settings, "onnx", digest, digest, 512, 142, True, False) for _ in range(1000)])
    store.close()  # checkpoints the WAL into the file
    return sum(f.stat().st_size for f in directory.iterdir()) / answers


def test_feedback_without_shared_state_stays_in_the_pod_on_a_volume_it_cannot_outgrow(rendered, tmp_path):
    m = rendered["cpu"]
    config = serving_config(m)
    assert config.feedback_url is None and config.cache_url is None  # no database needed to apply the base
    # The SQLite file on a volume of its own: it cannot fill BENTOML_HOME's (the /metrics counters).
    [mount] = [mt for mt in m.container()["volumeMounts"] if str(config.feedback_path.parent) == mt["mountPath"]]
    [volume] = [v for v in pod_spec(m)["volumes"] if v["name"] == mount["name"]]
    env = {e["name"]: e.get("value") for e in m.container()["env"]}
    assert not str(config.feedback_path).startswith(env["BENTOML_HOME"] + "/")
    # A volume past its sizeLimit gets the pod evicted: the retention keeps the file well below it even at a
    # replica's full capacity (29 summaries/s, README's capacity table), pruned about hourly.
    limit = gibibytes(volume["emptyDir"]["sizeLimit"]) * 2**30
    assert config.feedback_retention_days >= 1 and not config.feedback_retain_text
    kept_s = config.feedback_retention_days * 86_400 + 3600
    # x 1.5: pages freed by pruning are reused, not always filled; 64 MiB for the WAL between checkpoints.
    assert kept_s * REPLICA_SUMMARIES_PER_S * answer_bytes(tmp_path) * 1.5 + 64 * 2**20 <= limit


def test_shared_state_component_gives_the_service_the_urls_from_the_secret(rendered):
    shared, without = rendered["cpu+shared-state"], rendered["cpu"]
    urls = STAND_IN_SECRETS[SHARED_STATE_SECRET]
    config = serving_config(shared)
    assert config.feedback_url.get_secret_value() == urls["SUMMARIZER_FEEDBACK_URL"]
    assert config.cache_url.get_secret_value() == urls["SUMMARIZER_CACHE_URL"]
    assert config.feedback_retention_days >= 30  # a database keeps answers for their fine-tuning export
    # Redis is optional: without it in the Secret each API worker caches in its memory.
    feedback_only = serving_config(shared, {SHARED_STATE_SECRET: {"SUMMARIZER_FEEDBACK_URL": urls["SUMMARIZER_FEEDBACK_URL"]}})
    assert feedback_only.cache_url is None and feedback_only.feedback_url is not None
    # PostgreSQL is not: a pod without it would record into its own file, unseen by the others.
    with pytest.raises(AssertionError, match="would not start without SUMMARIZER_FEEDBACK_URL"):
        serving_config(shared, {SHARED_STATE_SECRET: {"SUMMARIZER_CACHE_URL": urls["SUMMARIZER_CACHE_URL"]}})
    # Files on a directory mount of the Secret, readable by the service's group only; no Secret in the repository,
    # no secret in the environment.
    [mount] = [mt for mt in shared.container()["volumeMounts"] if mt["name"] == "shared-state"]
    [volume] = [v for v in pod_spec(shared)["volumes"] if v["name"] == "shared-state"]
    assert mount["readOnly"] is True and "subPath" not in mount
    assert volume["projected"]["defaultMode"] == 0o440
    assert shared.config()["SUMMARIZER_SECRETS_DIR"] == mount["mountPath"]
    assert "Secret" not in shared.kinds()
    assert not any("secretKeyRef" in str(e) for e in shared.container().get("env", []))
    changed = {k for k in shared.config().keys() | without.config().keys()
               if shared.config().get(k) != without.config().get(k)}
    assert changed == {"SUMMARIZER_SECRETS_DIR", "SUMMARIZER_FEEDBACK_RETENTION_DAYS"}


def egress_tcp_ports(m: Rendered) -> set[int]:
    return {p["port"] for rule in m.one("NetworkPolicy")["spec"]["egress"] for p in rule["ports"]
            if p.get("protocol", "TCP") == "TCP"}


def test_network_policy_lets_pods_reach_the_shared_state_only_with_the_component(rendered):
    ports = {urlsplit(url).port for url in STAND_IN_SECRETS[SHARED_STATE_SECRET].values()}
    assert ports == {5432, 6379}  # the servers' default ports, which the component's comment says to change
    assert ports <= egress_tcp_ports(rendered["cpu+shared-state"])
    assert not ports & egress_tcp_ports(rendered["cpu"])
    # Added to the base's rules, not in place of them: DNS and the collector are still reachable.
    assert rendered["cpu"].one("NetworkPolicy")["spec"]["egress"] == \
        rendered["cpu+shared-state"].one("NetworkPolicy")["spec"]["egress"][:-1]


def test_autoscaler_scales_the_deployment_on_requests_in_flight_per_pod(manifests):
    spec = manifests.one("ScaledObject")["spec"]
    deployment = manifests.one("Deployment")
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                      "name": deployment["metadata"]["name"]}
    assert "replicas" not in deployment["spec"]  # the HPA owns the count
    assert not {t["type"] for t in spec["triggers"]} <= {"cpu", "memory"}, "CPU alone cannot see the load"
    trigger = prometheus_trigger(manifests)
    assert trigger["metricType"] == "AverageValue"  # the query's total divided by the replicas: per pod
    metrics = {s.metric for s in selectors(trigger["metadata"]["query"])}
    assert IN_FLIGHT_METRIC in metrics
    [in_flight] = [s for s in selectors(trigger["metadata"]["query"]) if s.metric == IN_FLIGHT_METRIC]
    assert ("runner_name", "=", PUBLIC_SERVICE) in {(m.label, m.op, m.value) for m in in_flight.matchers}
    # The target is a quarter of the admission limit: room for four times the load while new pods start.
    assert float(trigger["metadata"]["threshold"]) == serving_config(manifests).max_pending_requests / 4
    assert spec["minReplicaCount"] >= 2 and spec["maxReplicaCount"] > spec["minReplicaCount"]
    # No metric is an error (then the fallback count), not "no load".
    assert trigger["metadata"]["ignoreNullValues"] == "false"
    assert spec["fallback"]["replicas"] > spec["minReplicaCount"]


def test_autoscaler_query_reads_what_the_podmonitor_scrapes(manifests):
    monitor = manifests.one("PodMonitor")
    namespace, name = monitor["metadata"]["namespace"], monitor["metadata"]["name"]
    for selector in selectors(prometheus_trigger(manifests)["metadata"]["query"]):
        labels = {m.label: m.value for m in selector.matchers if m.op == "="}
        # The operator's job label is namespace/PodMonitor name; a renamed namespace must update the query.
        assert (labels.get("namespace"), labels.get("job")) == (namespace, f"{namespace}/{name}"), selector
    assert selects_pods(monitor["spec"]["selector"]["matchLabels"], manifests)
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] in {p["name"] for p in manifests.container()["ports"]}
    assert endpoint["path"] == "/metrics" and endpoint["honorLabels"] is True


# --- what selects the pods ----------------------------------------------------------------------------------


def test_service_budget_and_network_policy_select_the_pods(manifests):
    port_names = {p["name"] for p in manifests.container()["ports"]}
    service = manifests.one("Service")["spec"]
    assert service["type"] == "ClusterIP" and selects_pods(service["selector"], manifests)
    assert {p["targetPort"] for p in service["ports"]} <= port_names
    budget = manifests.one("PodDisruptionBudget")["spec"]
    assert budget["maxUnavailable"] == 1 and selects_pods(budget["selector"]["matchLabels"], manifests)
    policy = manifests.one("NetworkPolicy")["spec"]
    assert selects_pods(policy["podSelector"]["matchLabels"], manifests)
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    assert [p["port"] for rule in policy["ingress"] for p in rule["ports"]] == ["http"]
    # The OTLP endpoint the pods export to is reachable through the egress rules.
    otlp_port = int(manifests.config()["OTEL_EXPORTER_OTLP_ENDPOINT"].rsplit(":", 1)[1])
    assert manifests.config()["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
    assert {53, otlp_port} <= {p["port"] for rule in policy["egress"] for p in rule["ports"]}
    for constraint in pod_spec(manifests)["topologySpreadConstraints"]:
        assert selects_pods(constraint["labelSelector"]["matchLabels"], manifests)
