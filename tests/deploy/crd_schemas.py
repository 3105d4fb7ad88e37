"""Schemas for the two custom resources of deploy/, which Kubernetes' built-in schemas do not cover.

kubernetes-validate knows only the built-in kinds: for a ScaledObject (KEDA) or a PodMonitor (Prometheus
Operator) it finds no schema and only warns. Nothing is vendored here: the schemas come from cloudcoil's
model packages on PyPI, pydantic models generated from each project's CRDs (cloudcoil.models.keda 2.16.1,
cloudcoil.models.prometheus_operator 0.80.1; newer releases need Python 3.14). Their JSON schema is made
strict the way kubernetes-validate's strict schemas are: an object may hold only the fields its schema
names, so a misspelt field fails instead of being dropped by the API server.

KEDA's trigger metadata is a free map in the CRD; the Prometheus scaler's parameters are checked against
the names KEDA reads (pkg/scalers/prometheus_scaler.go, KEDA 2.20).
"""

from __future__ import annotations

import functools
from typing import Any

import jsonschema

PROMETHEUS_TRIGGER_REQUIRED = frozenset({"serverAddress", "query", "threshold"})
PROMETHEUS_TRIGGER_OPTIONAL = frozenset({
    "queryParameters", "activationThreshold", "namespace", "customHeaders", "ignoreNullValues", "unsafeSsl",
    "awsRegion", "timeout", "identityOwner"})


def _strict(schema: Any) -> Any:
    """The schema with ``additionalProperties: false`` on every object that lists its properties."""
    if isinstance(schema, dict):
        strict = {key: _strict(value) for key, value in schema.items()}
        if "properties" in strict and "additionalProperties" not in strict:
            strict["additionalProperties"] = False
        return strict
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


@functools.cache
def _validators() -> dict[tuple[str, str], jsonschema.Draft202012Validator]:
    from cloudcoil.models.keda.v1alpha1 import ScaledObject
    from cloudcoil.models.prometheus_operator.v1 import PodMonitor

    return {(model.model_fields["api_version"].default, model.model_fields["kind"].default):
            jsonschema.Draft202012Validator(_strict(model.model_json_schema(by_alias=True)))
            for model in (ScaledObject, PodMonitor)}


def covered(obj: dict) -> bool:
    return (obj.get("apiVersion"), obj.get("kind")) in _validators()


def problems(obj: dict) -> list[str]:
    """What is wrong with a ScaledObject or PodMonitor, one line each; empty when it is valid."""
    validator = _validators()[(obj["apiVersion"], obj["kind"])]
    found = [f"{'.'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}"
             for error in validator.iter_errors(obj)]
    if obj["kind"] == "ScaledObject":
        found += _prometheus_trigger_problems(obj)
    return found


def _prometheus_trigger_problems(scaled_object: dict) -> list[str]:
    found = []
    for i, trigger in enumerate(scaled_object["spec"].get("triggers", [])):
        if trigger.get("type") != "prometheus":
            continue
        names = set(trigger.get("metadata", {}))
        if missing := PROMETHEUS_TRIGGER_REQUIRED - names:
            found.append(f"spec.triggers.{i}.metadata: missing {sorted(missing)}")
        if unknown := names - PROMETHEUS_TRIGGER_REQUIRED - PROMETHEUS_TRIGGER_OPTIONAL:
            found.append(f"spec.triggers.{i}.metadata: unknown {sorted(unknown)}; the Prometheus scaler reads "
                         f"{sorted(PROMETHEUS_TRIGGER_REQUIRED | PROMETHEUS_TRIGGER_OPTIONAL)}")
    return found
