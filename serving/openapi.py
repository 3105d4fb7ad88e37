"""The published OpenAPI document (GET /docs.json): BentoML's, corrected to say what the service really does.

BentoML 1.4 builds the document from the IO descriptors, and loses or misstates three things:
- ``MethodSpec.openapi_request`` flattens each request property's ``anyOf`` to its first member: ``generation``
  (Optional) loses its ``null`` and its ``$ref`` keeps a sibling ``default``; the request schemas are therefore
  taken from the request models here, pydantic's JSON Schema turned into OpenAPI 3.0 (``nullable``), with every
  constraint (minLength, maxLength, pattern, minItems, maxItems, additionalProperties false, setting ranges);
  the summarize routes' answers likewise (``Summary.long_dialogue`` is Optional), from ``ANSWER_MODELS``;
- every API gets BentoML's generic 400/404/500 ``{"error", "detail": string}`` schemas, which no answer of ours
  has: each route lists instead the error statuses it can give, each with the ErrorBody schema;
- BentoML's APIs answer POST only: GET /model is a route of ours (service.py) and is described here;
- with API keys on (serving/auth.py), the bearer scheme, each protected operation's ``security`` and its 401
  (and 429 with a rate limit) are added, so clients and schemathesis' ignored_auth check see them.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel

from serving.auth import METRICS_PATH, PROBE_PATHS
from serving.errors import ErrorBody
from serving.protocol import Summary, SummaryBatch

REF = "#/components/schemas/{model}"
# The summarize routes' answers, described from their models as the requests are (BentoML's inline copy
# flattens an Optional field to its first member: Summary.long_dialogue would not admit its null).
ANSWER_MODELS: dict[str, type[BaseModel]] = {"/summarize": Summary, "/summarize_batch": SummaryBatch}

# Every route: BodyLimits (408, 413), BentoML's request timeout (504), a bug (500).
_EVERY_ROUTE = {
    408: "The request body did not arrive whole within SUMMARIZER_BODY_TIMEOUT_S (code body_timeout).",
    413: "The request body is over the route's byte limit (code body_too_large).",
    500: "A bug of the service (code internal); the message never carries the exception.",
    504: "No answer within SUMMARIZER_REQUEST_TIMEOUT_S (code timeout).",
}
_SUMMARIZE = {
    400: "Invalid request: code invalid_request (``field`` names the offending field), unknown_field (``allowed`` "
         "lists the fields allowed there) or invalid_json.",
    415: "The body is not application/json (code unsupported_media_type).",
    503: "Overloaded (code overloaded, Retry-After: 1) or no backend could answer (code unavailable, "
         "Retry-After: 5).",
}

# Only with SUMMARIZER_OTHER_LANGUAGES=refuse (serving/inspection.py); by default such a dialogue is answered
# with a "language" warning.
_LANGUAGE_REFUSED = ("A dialogue is in a language the service is configured to refuse (code unsupported_language; "
                     "``field`` names the dialogue, ``allowed`` lists the accepted ISO 639-1 codes).")


def published_spec(service, request_models: Mapping[str, type[BaseModel]], model_info: type[BaseModel], *,
                   api_keys: bool = False, protect_metrics: bool = False, rate_limited: bool = False,
                   route_errors: Mapping[str, Mapping[int, str]] | None = None,
                   refused_languages: bool = False) -> dict:
    """BentoML's OpenAPI document of ``service`` with the corrections above; ``request_models`` by route;
    ``route_errors`` the error statuses a route gives besides (or instead of) the summarize routes' ones;
    refused_languages that a dialogue in another language is refused (422); the other arguments say how
    serving/auth.py's ApiKeyAuth is configured (off by default)."""
    spec = service.openapi_spec.asdict()
    for item in spec["paths"].values():
        for operation in item.values():
            operation["responses"] = {str(status): answer for status, answer in operation["responses"].items()}
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for name in ("InvalidArgument", "NotFound", "InternalServerError"):  # BentoML's; no answer has them
        schemas.pop(name, None)
    answers = {route: model for route, model in ANSWER_MODELS.items() if route in spec["paths"]}
    for model in (ErrorBody, model_info, *request_models.values(), *answers.values()):
        schemas.update(_components(model))
    paths = spec["paths"]
    for route, model in answers.items():
        paths[route]["post"]["responses"]["200"]["content"] = {
            "application/json": {"schema": {"$ref": REF.format(model=model.__name__)}}}
    for route, model in request_models.items():
        operation = paths[route]["post"]
        operation["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": {"$ref": REF.format(model=model.__name__)}}}}
        own = (route_errors or {}).get(route)  # a route of its own (POST /feedback) is not a summarize route
        refusals = {422: _LANGUAGE_REFUSED} if refused_languages and own is None else {}
        statuses = {**_EVERY_ROUTE, **_SUMMARIZE, **refusals, **(own or {})}
        operation["responses"] = {"200": operation["responses"]["200"], **_errors(statuses)}
    paths["/model"] = {"get": {
        "tags": ["Service APIs"], "operationId": "model",
        "description": "The served model, its generation defaults and context, the routing and each backend's "
                       "status.",
        "responses": {"200": {"description": "Successful Response", "content": {
            "application/json": {"schema": {"$ref": REF.format(model=model_info.__name__)}}}},
            **_errors(_EVERY_ROUTE)}}}
    for route, item in paths.items():
        if route not in request_models and route != "/model":
            for operation in item.values():
                extra = {503: "Not ready (code unavailable)."} if route == "/readyz" else {}
                operation["responses"] = {**operation.get("responses", {}), **_errors({**_EVERY_ROUTE, **extra})}
    if api_keys:
        _describe_api_keys(spec, protect_metrics, rate_limited)
    return spec


def _describe_api_keys(spec: dict, protect_metrics: bool, rate_limited: bool) -> None:
    spec["components"]["securitySchemes"] = {"apiKey": {
        "type": "http", "scheme": "bearer", "description": "An API key: Authorization: Bearer <key>."}}
    statuses = {401: "No API key, or not a valid one (code unauthorized, WWW-Authenticate: Bearer)."}
    if rate_limited:
        statuses[429] = "Past this key's request rate (code rate_limited, Retry-After)."
    for route, item in spec["paths"].items():
        if route in PROBE_PATHS or (route == METRICS_PATH and not protect_metrics):
            continue
        for operation in item.values():
            operation["security"] = [{"apiKey": []}]
            operation["responses"] = {**operation["responses"], **_errors(statuses)}


def _errors(statuses: Mapping[int, str]) -> dict:
    return {str(status): {"description": description, "content": {
        "application/json": {"schema": {"$ref": REF.format(model="ErrorBody")}}}}
        for status, description in sorted(statuses.items())}


def _components(model: type[BaseModel]) -> dict[str, dict]:
    """``model`` and the models it uses, as OpenAPI 3.0 component schemas."""
    schema = model.model_json_schema(ref_template=REF)
    found = {name: _openapi30(definition) for name, definition in schema.pop("$defs", {}).items()}
    found[model.__name__] = _openapi30(schema)
    return found


def _openapi30(node):
    """pydantic's JSON Schema (2020-12) in OpenAPI 3.0's dialect: ``anyOf [X, {type: null}]`` -> X nullable."""
    if isinstance(node, list):
        return [_openapi30(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _openapi30(value) for key, value in node.items()}
    options = node.get("anyOf")
    if options and {"type": "null"} in options:
        rest = [option for option in options if option != {"type": "null"}]
        node.pop("anyOf")
        if len(rest) == 1 and "$ref" in rest[0]:
            node["allOf"] = rest  # OpenAPI 3.0 ignores a $ref's siblings: nullable goes beside an allOf
        elif len(rest) == 1:
            node.update(rest[0])
        else:
            node["anyOf"] = rest
        node["nullable"] = True
    return node
