"""ServingConfig: what each SUMMARIZER_* variable sets, what an invalid one says, and the routing it implies.

The service loads its configuration from the process environment (``ServingConfig.load()`` in service.py),
so most tests set variables there; ``load(environ)`` with a mapping is tested on its own.
"""

from __future__ import annotations

import os

import pytest

from serving.config import ENV_PREFIX, ConfigError, Faults, ServingConfig, env_name
from serving.protocol import BackendName, RequestLimits


@pytest.fixture
def environment(monkeypatch):
    """Set SUMMARIZER_* variables in a process environment that has no others, then load the config."""
    for key in list(os.environ):
        if key.startswith(ENV_PREFIX):
            monkeypatch.delenv(key)

    def load(**variables: str) -> ServingConfig:
        for key, value in variables.items():
            monkeypatch.setenv(key, value)
        return ServingConfig.load()
    return load


def config_error(environment, **variables: str) -> str:
    with pytest.raises(ConfigError) as raised:
        environment(**variables)
    return str(raised.value)


def test_defaults_work_on_a_laptop(environment):
    config = environment()
    assert config.model_tag == "dialogue-bart-small:latest"
    assert (config.primary, config.fallback, config.primary_timeout_s) == ("auto", "auto", 30.0)
    assert (config.max_dialogue_chars, config.max_list_items) == (20_000, 32)
    assert (config.max_batch_size, config.max_latency_ms) == (32, 20_000)
    assert (config.max_pending_requests, config.request_timeout_s) == (64, 120)
    assert (config.onnx_threads, config.torch_threads) == (0, 0)
    assert config.faults == Faults()


def test_model_tag_gets_latest_unless_it_has_a_version(environment):
    assert environment(SUMMARIZER_MODEL="bart-large-cnn").model_tag == "bart-large-cnn:latest"
    assert environment(SUMMARIZER_MODEL=" meeting-bart:v2 ").model_tag == "meeting-bart:v2"


def test_blank_model_tag_is_refused(environment):
    assert "SUMMARIZER_MODEL" in config_error(environment, SUMMARIZER_MODEL="   ")


def test_routing_variables_are_read_case_insensitively(environment):
    config = environment(SUMMARIZER_PRIMARY=" Torch ", SUMMARIZER_FALLBACK="NONE", SUMMARIZER_PRIMARY_TIMEOUT_S="2.5")
    assert (config.primary, config.fallback, config.primary_timeout_s) == ("torch", "none", 2.5)


def test_request_limit_variables_become_the_request_limits(environment):
    config = environment(SUMMARIZER_MAX_DIALOGUE_CHARS="500", SUMMARIZER_MAX_LIST_ITEMS="4")
    assert config.limits == RequestLimits(max_dialogue_chars=500, max_list_items=4)


def test_batching_and_traffic_variables_are_read(environment):
    config = environment(SUMMARIZER_MAX_BATCH_SIZE="1", SUMMARIZER_MAX_LATENCY_MS="250", SUMMARIZER_MAX_PENDING="3",
                         SUMMARIZER_REQUEST_TIMEOUT_S="9")
    assert (config.max_batch_size, config.max_latency_ms) == (1, 250)
    assert (config.max_pending_requests, config.request_timeout_s) == (3, 9)


def test_thread_variables_are_read(environment):
    config = environment(SUMMARIZER_ONNX_THREADS="3", SUMMARIZER_TORCH_THREADS="2")
    assert (config.onnx_threads, config.torch_threads) == (3, 2)


def test_fault_injection_is_parsed(environment):
    faults = environment(SUMMARIZER_INJECT_FAULT=" torch:hang,,onnx:error , torch:error").faults
    assert faults.hang == {BackendName.TORCH}
    assert faults.error == {BackendName.TORCH, BackendName.ONNX}


def test_empty_variables_take_the_default(environment):
    config = environment(SUMMARIZER_PRIMARY="", SUMMARIZER_MAX_PENDING="", SUMMARIZER_INJECT_FAULT="")
    assert (config.primary, config.max_pending_requests, config.faults) == ("auto", 64, Faults())


def test_every_field_has_the_variable_the_readme_documents():
    assert {env_name(field) for field in ServingConfig.model_fields} == {
        "SUMMARIZER_MODEL", "SUMMARIZER_PRIMARY", "SUMMARIZER_FALLBACK", "SUMMARIZER_PRIMARY_TIMEOUT_S",
        "SUMMARIZER_MAX_DIALOGUE_CHARS", "SUMMARIZER_MAX_LIST_ITEMS", "SUMMARIZER_MAX_BATCH_SIZE",
        "SUMMARIZER_MAX_LATENCY_MS", "SUMMARIZER_MAX_PENDING", "SUMMARIZER_REQUEST_TIMEOUT_S", "SUMMARIZER_API_WORKERS",
        "SUMMARIZER_MAX_BODY_BYTES", "SUMMARIZER_BODY_TIMEOUT_S",
        "SUMMARIZER_ONNX_THREADS", "SUMMARIZER_TORCH_THREADS", "SUMMARIZER_INJECT_FAULT",
        "SUMMARIZER_API_KEYS", "SUMMARIZER_API_KEYS_FILE", "SUMMARIZER_METRICS_REQUIRE_KEY",
        "SUMMARIZER_LONG_DIALOGUES", "SUMMARIZER_LONG_WINDOW_TOKENS",
        "SUMMARIZER_LONG_FROM_TOKENS",
        "SUMMARIZER_LONG_SUMMARY_TOKENS", "SUMMARIZER_LONG_MAX_ROUNDS", "SUMMARIZER_SECRETS_DIR",
        "SUMMARIZER_RATE_LIMIT_PER_MINUTE", "SUMMARIZER_CACHE", "SUMMARIZER_CACHE_URL", "SUMMARIZER_CACHE_MAX_ENTRIES",
        "SUMMARIZER_CACHE_MAX_BYTES", "SUMMARIZER_CACHE_TTL_S", "SUMMARIZER_CACHE_TIMEOUT_S", "SUMMARIZER_CACHE_BACKOFF_S",
        "SUMMARIZER_CACHE_MAX_VALUE_BYTES",
        "SUMMARIZER_FEEDBACK_URL", "SUMMARIZER_FEEDBACK_PATH",
        "SUMMARIZER_FEEDBACK_RETAIN_TEXT", "SUMMARIZER_FEEDBACK_RETENTION_DAYS",
        "SUMMARIZER_LANGUAGES", "SUMMARIZER_OTHER_LANGUAGES",
        "SUMMARIZER_LANGUAGE_MIN_CONFIDENCE", "SUMMARIZER_LANGUAGE_MIN_LETTERS", "SUMMARIZER_DRIFT_REFERENCE",
        "SUMMARIZER_DRIFT_WINDOW", "SUMMARIZER_DRIFT_MIN_DIALOGUES"}


def test_language_settings(environment):
    config = environment(SUMMARIZER_LANGUAGES=" en, DE ", SUMMARIZER_OTHER_LANGUAGES="Refuse")
    assert (config.languages, config.other_languages) == (("en", "de"), "refuse")
    defaults = ServingConfig.load({})
    assert (defaults.languages, defaults.other_languages, defaults.drift_reference) == (("en",), "warn", None)


# (variable, bad value, what the message must say is allowed)
INVALID = [
    ("SUMMARIZER_LANGUAGES", "english", "ISO 639-1 language codes"),
    ("SUMMARIZER_LANGUAGES", ",", "ISO 639-1 language codes"),
    ("SUMMARIZER_OTHER_LANGUAGES", "drop", "'warn', 'refuse' or 'ignore'"),
    ("SUMMARIZER_LANGUAGE_MIN_CONFIDENCE", "0.2", "greater than or equal to 0.5"),
    ("SUMMARIZER_DRIFT_WINDOW", "5", "greater than or equal to 10"),
    ("SUMMARIZER_PRIMARY", "gpu", "'auto', 'torch' or 'onnx'"),
    ("SUMMARIZER_FALLBACK", "cpu", "'auto', 'none', 'torch' or 'onnx'"),
    ("SUMMARIZER_PRIMARY_TIMEOUT_S", "0", "greater than or equal to 0.1"),
    ("SUMMARIZER_PRIMARY_TIMEOUT_S", "soon", "valid number"),
    ("SUMMARIZER_MAX_DIALOGUE_CHARS", "0", "greater than or equal to 1"),
    ("SUMMARIZER_MAX_LIST_ITEMS", "5000", "less than or equal to 1024"),
    ("SUMMARIZER_MAX_BATCH_SIZE", "2000", "less than or equal to 1024"),
    ("SUMMARIZER_MAX_LATENCY_MS", "1.5", "valid integer"),
    ("SUMMARIZER_MAX_LATENCY_MS", "5", "greater than or equal to 10"),
    ("SUMMARIZER_MAX_PENDING", "0", "greater than or equal to 1"),
    ("SUMMARIZER_REQUEST_TIMEOUT_S", "-1", "greater than or equal to 1"),
    ("SUMMARIZER_ONNX_THREADS", "-1", "greater than or equal to 0"),
    ("SUMMARIZER_TORCH_THREADS", "many", "valid integer"),
    ("SUMMARIZER_INJECT_FAULT", "torch:boom", "must be BACKEND:error or BACKEND:hang with BACKEND one of torch, onnx"),
    ("SUMMARIZER_INJECT_FAULT", "gpu:error", "e.g. 'torch:error'"),
    ("SUMMARIZER_FEEDBACK_RETAIN_TEXT", "sometimes", "valid boolean"),
    ("SUMMARIZER_FEEDBACK_RETENTION_DAYS", "-1", "greater than or equal to 0"),
]


def test_a_feedback_url_that_is_not_postgresql_is_refused_without_printing_it(environment):
    message = config_error(environment, SUMMARIZER_FEEDBACK_URL="mysql://admin:s3cret@db/feedback")
    assert "SUMMARIZER_FEEDBACK_URL=<hidden>" in message and "postgresql://USER:PASSWORD@HOST" in message
    assert "s3cret" not in message


@pytest.mark.parametrize("variable,value,allowed", INVALID, ids=[f"{v}={x}" for v, x, _ in INVALID])
def test_an_invalid_value_names_the_variable_the_value_and_what_is_allowed(environment, variable, value, allowed):
    message = config_error(environment, **{variable: value})
    assert f"{variable}={value!r}" in message
    assert allowed in message


def test_every_invalid_variable_gets_its_own_line(environment):
    message = config_error(environment, SUMMARIZER_PRIMARY="gpu", SUMMARIZER_MAX_PENDING="0",
                           SUMMARIZER_INJECT_FAULT="onnx:slow", SUMMARIZER_MAX_LIST_ITEMS="32")
    lines = message.splitlines()
    assert lines[0] == "invalid serving configuration:"
    assert sorted(line.strip().split("=")[0] for line in lines[1:]) == [
        "SUMMARIZER_INJECT_FAULT", "SUMMARIZER_MAX_PENDING", "SUMMARIZER_PRIMARY"]


def test_a_mapping_without_summarizer_variables_gives_the_defaults(environment):
    assert ServingConfig.load({"HOME": "/root", "SUMMARIZER_MODEL": ""}) == environment()


def test_a_mapping_with_aliased_variables_is_read(environment):
    config = ServingConfig.load({"SUMMARIZER_MODEL": "m", "SUMMARIZER_MAX_PENDING": "5",
                                 "SUMMARIZER_INJECT_FAULT": "onnx:hang"})
    assert (config.model_tag, config.max_pending_requests, config.faults.hang) == ("m:latest", 5, {BackendName.ONNX})
    with pytest.raises(ConfigError, match="SUMMARIZER_MAX_PENDING='0'"):
        ServingConfig.load({"SUMMARIZER_MAX_PENDING": "0"})


def test_a_mapping_sets_every_variable(environment):
    config = ServingConfig.load({"SUMMARIZER_PRIMARY": "torch", "SUMMARIZER_PRIMARY_TIMEOUT_S": "2",
                                 "SUMMARIZER_MAX_LIST_ITEMS": "3"})
    assert (config.primary, config.primary_timeout_s, config.max_list_items) == ("torch", 2.0, 3)


def test_a_mapping_is_not_mixed_with_the_process_environment(environment, monkeypatch):
    monkeypatch.setenv("SUMMARIZER_MAX_LIST_ITEMS", "3")
    assert ServingConfig.load({}).max_list_items == 32


TORCH, ONNX = BackendName.TORCH, BackendName.ONNX
# (primary, fallback, cuda visible) -> (primary backend, fallback backend)
ROUTING = [
    ("auto", "auto", True, (TORCH, ONNX)),
    ("auto", "auto", False, (ONNX, None)),
    ("auto", "none", True, (TORCH, None)),
    ("auto", "torch", False, (ONNX, TORCH)),
    ("auto", "onnx", True, (TORCH, ONNX)),
    ("auto", "onnx", False, (ONNX, None)),  # the fallback may not be the primary
    ("torch", "auto", False, (TORCH, ONNX)),
    ("torch", "none", True, (TORCH, None)),
    ("torch", "onnx", False, (TORCH, ONNX)),
    ("torch", "torch", True, (TORCH, None)),
    ("onnx", "auto", True, (ONNX, None)),
    ("onnx", "torch", True, (ONNX, TORCH)),
    ("onnx", "torch", False, (ONNX, TORCH)),
    ("onnx", "none", False, (ONNX, None)),
    ("onnx", "onnx", True, (ONNX, None)),
]


@pytest.mark.parametrize("primary,fallback,cuda,expected", ROUTING,
                         ids=[f"{p}-{f}-{'cuda' if c else 'cpu'}" for p, f, c, _ in ROUTING])
def test_routing_for_each_setting_and_machine(environment, primary, fallback, cuda, expected):
    config = environment(SUMMARIZER_PRIMARY=primary, SUMMARIZER_FALLBACK=fallback)
    assert config.routing(cuda_available=cuda) == expected


def test_two_api_workers_by_default_each_counting_its_own_admission_limit():
    assert ServingConfig.load({}).api_workers == 2
    config = ServingConfig.load({"SUMMARIZER_MAX_PENDING": "5", "SUMMARIZER_API_WORKERS": "3"})
    assert (config.api_workers, config.pod_admission_limit) == (3, 15)
    with pytest.raises(ConfigError, match="SUMMARIZER_API_WORKERS='0': Input should be greater than or equal to 1"):
        ServingConfig.load({"SUMMARIZER_API_WORKERS": "0"})


def test_the_response_cache_is_on_in_memory_by_default_and_switched_off_by_name(environment):
    config = environment()
    assert config.cache and config.cache_url is None
    assert (config.cache_max_entries, config.cache_max_bytes, config.cache_ttl_s) == (10_000, 32 << 20, 86_400)
    for off in ("off", "false", "0"):
        assert environment(SUMMARIZER_CACHE=off).cache is False
    url = "rediss://:pa55word@cache.internal:6380/2"
    assert environment(SUMMARIZER_CACHE_URL=url).cache_url.get_secret_value() == url


def test_a_cache_url_that_is_not_redis_is_refused_without_printing_it(environment):
    message = config_error(environment, SUMMARIZER_CACHE_URL="http://user:pa55word@cache.internal:6379")
    assert "SUMMARIZER_CACHE_URL=<hidden>: must be a Redis URL" in message and "pa55word" not in message
    assert "SUMMARIZER_CACHE_TIMEOUT_S='0'" in config_error(environment, SUMMARIZER_CACHE_TIMEOUT_S="0")
    assert "SUMMARIZER_CACHE='maybe'" in config_error(environment, SUMMARIZER_CACHE="maybe")


def test_settings_are_read_from_files_in_the_secrets_directory(environment, tmp_path):
    """A mounted Kubernetes Secret: one file per setting, named like its variable (a trailing newline is
    dropped); a variable in the environment wins over a file."""
    # As the kubelet mounts a Secret: the files in a timestamped directory, reached through ..data symlinks.
    version = tmp_path / "..2026_12_02_17_00_00.123456"
    version.mkdir()
    (version / "SUMMARIZER_FEEDBACK_URL").write_text("postgresql://summarizer:s3cret@postgres:5432/feedback\n")
    (version / "SUMMARIZER_CACHE_URL").write_text("redis://:s3cret@redis:6379/0")
    (tmp_path / "..data").symlink_to(version.name)
    for name in ("SUMMARIZER_FEEDBACK_URL", "SUMMARIZER_CACHE_URL"):
        (tmp_path / name).symlink_to(f"..data/{name}")
    config = environment(SUMMARIZER_SECRETS_DIR=str(tmp_path), SUMMARIZER_CACHE_URL="redis://other:6379/1")
    assert config.feedback_url.get_secret_value() == "postgresql://summarizer:s3cret@postgres:5432/feedback"
    assert config.cache_url.get_secret_value() == "redis://other:6379/1"
    assert ServingConfig.load({"SUMMARIZER_SECRETS_DIR": str(tmp_path)}).cache_url.get_secret_value() == \
        "redis://:s3cret@redis:6379/0"


def test_an_invalid_setting_in_the_secrets_directory_names_its_file_never_a_secret(environment, tmp_path):
    (tmp_path / "SUMMARIZER_FEEDBACK_URL").write_text("mysql://admin:s3cret@db/feedback")
    (tmp_path / "SUMMARIZER_MAX_PENDING").write_text("0")
    message = config_error(environment, SUMMARIZER_SECRETS_DIR=str(tmp_path))
    assert "SUMMARIZER_FEEDBACK_URL=<hidden>" in message and "s3cret" not in message
    assert f"SUMMARIZER_MAX_PENDING=<file {tmp_path / 'SUMMARIZER_MAX_PENDING'}>" in message


def test_a_secrets_directory_that_is_not_one_is_refused(environment, tmp_path):
    message = config_error(environment, SUMMARIZER_SECRETS_DIR=str(tmp_path / "missing"))
    assert "SUMMARIZER_SECRETS_DIR=" in message and "must be a directory" in message
