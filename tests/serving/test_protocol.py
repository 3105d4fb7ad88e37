"""Wire models: request limits as schema constraints with readable errors, settings resolution, engine names."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from serving.protocol import (BackendName, Device, EngineName, GenerationOptions, GenerationSettings, RequestLimits,
                              SummarizeBatchRequest, SummarizeRequest, request_models)

LIMITS = RequestLimits(max_dialogue_chars=50, max_list_items=3)
Single, Batch = request_models(LIMITS)
DEFAULTS = GenerationSettings(num_beams=4, max_new_tokens=128, min_new_tokens=0, length_penalty=1.0,
                              no_repeat_ngram_size=3)


def errors(model, body: dict) -> list[tuple[str, str]]:
    """(location, message) of each problem pydantic finds in ``body``."""
    with pytest.raises(ValidationError) as raised:
        model.model_validate(body)
    return [(".".join(str(part) for part in e["loc"]), e["msg"]) for e in raised.value.errors()]


def test_valid_requests_pass():
    assert Single.model_validate({"dialogue": "A: hi\nB: hello"}).generation is None
    batch = Batch.model_validate({"dialogues": ["A: hi"] * 3, "generation": {"num_beams": 2, "length_penalty": 1}})
    assert batch.generation == GenerationOptions(num_beams=2, length_penalty=1.0)
    assert Single.model_validate({"dialogue": "x" * 50}).dialogue == "x" * 50  # the limit itself is allowed


# (model, body, location, words the message must contain)
BAD = [
    (Single, {"dialogue": ""}, "dialogue", "empty or whitespace only"),
    (Single, {"dialogue": " \n\t "}, "dialogue", "empty or whitespace only"),
    (Single, {"dialogue": "x" * 51}, "dialogue", "51 characters; the limit is 50 (SUMMARIZER_MAX_DIALOGUE_CHARS)"),
    (Single, {"dialogue": 42}, "dialogue", "valid string"),
    (Single, {"dialogue": b"A: hi"}, "dialogue", "valid string"),
    (Single, {}, "dialogue", "Field required"),
    (Single, {"dialogue": "A: hi", "temperature": 0.5}, "temperature", "Extra inputs are not permitted"),
    (Single, {"dialogue": "A: hi", "generation": {"beams": 2}}, "generation.beams", "Extra inputs are not permitted"),
    (Single, {"dialogue": "A: hi", "generation": "fast"}, "generation", "valid dictionary"),
    (Batch, {"dialogues": []}, "dialogues", "empty list; send between 1 and 3 dialogues"),
    (Batch, {"dialogues": ["A: hi"] * 4}, "dialogues", "4 items; the limit is 3 (SUMMARIZER_MAX_LIST_ITEMS)"),
    (Batch, {"dialogues": ["A: hi", "  "]}, "dialogues", "dialogues[1]: dialogue is empty or whitespace only"),
    (Batch, {"dialogues": ["A: hi", "y" * 51]}, "dialogues", "dialogues[1]: dialogue has 51 characters"),
    (Batch, {"dialogues": ["A: hi", 7]}, "dialogues.1", "valid string"),
    (Batch, {"dialogues": "A: hi"}, "dialogues", "valid list"),
    (Batch, {"dialogues": ("A: hi",)}, "dialogues", "valid list"),  # strict: a list, as JSON sends
]


@pytest.mark.parametrize("model,body,location,message", BAD, ids=[f"{loc}: {msg[:30]}" for _, _, loc, msg in BAD])
def test_a_bad_request_names_the_field_and_says_what_is_allowed(model, body, location, message):
    found = errors(model, body)
    assert any(loc == location and message in msg for loc, msg in found), found


# (setting, bad value, words of the message); every setting's both bounds and its type
BAD_GENERATION = [
    ("num_beams", 0, "greater than or equal to 1"), ("num_beams", 9, "less than or equal to 8"),
    ("num_beams", "4", "valid integer"), ("num_beams", 2.0, "valid integer"), ("num_beams", True, "valid integer"),
    ("max_new_tokens", 0, "greater than or equal to 1"), ("max_new_tokens", 513, "less than or equal to 512"),
    ("min_new_tokens", -1, "greater than or equal to 0"), ("min_new_tokens", 513, "less than or equal to 512"),
    ("length_penalty", -0.1, "greater than or equal to 0"), ("length_penalty", 5.5, "less than or equal to 5"),
    ("length_penalty", float("nan"), "finite number"), ("length_penalty", "high", "valid number"),
    ("no_repeat_ngram_size", -1, "greater than or equal to 0"), ("no_repeat_ngram_size", 11, "less than or equal to 10"),
]


@pytest.mark.parametrize("setting,value,message", BAD_GENERATION, ids=[f"{s}={v!r}" for s, v, _ in BAD_GENERATION])
def test_an_out_of_range_generation_setting_is_named_with_its_range(setting, value, message):
    found = errors(Single, {"dialogue": "A: hi", "generation": {setting: value}})
    assert found == [(f"generation.{setting}", found[0][1])] and message in found[0][1], found


def test_min_new_tokens_above_max_new_tokens_stops_at_max_new_tokens():
    """Accepted, not refused: a cross-field rule has no JSON Schema form, and the published schema accepts exactly
    what the service accepts (schemathesis' positive_data_acceptance); generation stops at max_new_tokens."""
    options = GenerationOptions.model_validate({"min_new_tokens": 50, "max_new_tokens": 10})
    assert DEFAULTS.resolve(options).min_new_tokens == DEFAULTS.resolve(options).max_new_tokens == 10


@pytest.mark.parametrize("blank", ["\x1c", "\ufeff", "\x85", "\u3000 \t", "\xa0"])
def test_whitespace_is_the_same_characters_for_the_schema_and_the_check(blank):
    """pydantic's Rust regex, JSON Schema's ECMA regex and str.strip() disagree about \\s: both sides use one set."""
    import re

    from serving.protocol import NOT_WHITESPACE
    assert re.search(NOT_WHITESPACE, blank) is None and re.search(NOT_WHITESPACE, blank + "a")
    assert any("empty or whitespace only" in message for _, message in errors(Single, {"dialogue": blank}))
    assert Single.model_validate({"dialogue": blank + "A: hi"})


def test_the_json_schema_publishes_the_limits():
    single = Single.model_json_schema()
    dialogue = single["properties"]["dialogue"]
    assert (dialogue["type"], dialogue["minLength"], dialogue["maxLength"]) == ("string", 1, 50)
    assert single["additionalProperties"] is False and single["required"] == ["dialogue"]
    dialogues = Batch.model_json_schema()["properties"]["dialogues"]
    assert (dialogues["minItems"], dialogues["maxItems"]) == (1, 3)
    assert (dialogues["items"]["minLength"], dialogues["items"]["maxLength"]) == (1, 50)
    generation = single["$defs"]["GenerationOptions"]
    assert generation["additionalProperties"] is False
    ranges = {name: next((b["minimum"], b["maximum"]) for b in spec["anyOf"] if "minimum" in b)
              for name, spec in generation["properties"].items()}
    assert ranges == {"num_beams": (1, 8), "max_new_tokens": (1, 512), "min_new_tokens": (0, 512),
                      "length_penalty": (0.0, 5.0), "no_repeat_ngram_size": (0, 10)}


def test_the_module_level_models_have_the_default_limits():
    assert SummarizeRequest.model_json_schema()["properties"]["dialogue"]["maxLength"] == 20_000
    assert SummarizeBatchRequest.model_json_schema()["properties"]["dialogues"]["maxItems"] == 32
    other, _ = request_models(RequestLimits(max_dialogue_chars=7))
    assert other.model_json_schema()["properties"]["dialogue"]["maxLength"] == 7, "limits are per call"
    assert Single.model_json_schema()["properties"]["dialogue"]["maxLength"] == 50


def test_resolve_without_options_keeps_the_defaults():
    assert DEFAULTS.resolve(None) == DEFAULTS
    assert DEFAULTS.resolve(GenerationOptions()) == DEFAULTS


def test_resolve_overrides_only_what_the_request_sets():
    resolved = DEFAULTS.resolve(GenerationOptions(num_beams=1, length_penalty=2.0))
    assert resolved == DEFAULTS.model_copy(update={"num_beams": 1, "length_penalty": 2.0})
    zeros = DEFAULTS.resolve(GenerationOptions(no_repeat_ngram_size=0, min_new_tokens=0))
    assert zeros.no_repeat_ngram_size == 0, "0 is a value, not 'unset'"


def test_resolve_keeps_min_new_tokens_within_a_smaller_max_new_tokens():
    strict = DEFAULTS.model_copy(update={"min_new_tokens": 20})
    assert strict.resolve(GenerationOptions(max_new_tokens=5)).min_new_tokens == 5
    assert DEFAULTS.resolve(GenerationOptions(min_new_tokens=200)).min_new_tokens == 128


def test_resolved_settings_are_hashable_and_equal_by_value():
    a = DEFAULTS.resolve(GenerationOptions(num_beams=2))
    b = DEFAULTS.resolve(GenerationOptions(num_beams=2))
    assert a == b and hash(a) == hash(b) and len({a, b, DEFAULTS}) == 2
    with pytest.raises(ValidationError):
        a.num_beams = 3  # frozen: a job's settings cannot change under it


@pytest.mark.parametrize("engine,backend,device", [
    (EngineName.TORCH_CUDA, BackendName.TORCH, Device.CUDA),
    (EngineName.TORCH_CPU, BackendName.TORCH, Device.CPU),
    (EngineName.ONNX_CPU, BackendName.ONNX, Device.CPU),
])
def test_an_engine_name_is_a_backend_on_a_device(engine, backend, device):
    assert (engine.backend, engine.device) == (backend, device)
    assert EngineName.of(backend, device) is engine
    assert EngineName.of(backend.value, device.value) is engine  # plain strings, as they arrive over HTTP


@pytest.mark.parametrize("backend,device", [(BackendName.ONNX, Device.CUDA), (BackendName.TORCH, Device.NONE)])
def test_no_engine_exists_for_other_combinations(backend, device):
    with pytest.raises(ValueError):
        EngineName.of(backend, device)
