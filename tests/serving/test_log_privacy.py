"""serving/log_privacy.py: BentoML's log record of a refused request keeps the route and the error types,
not the values. (The real service's logs, searched for a canary: tests/observability/test_privacy.py.)"""

from __future__ import annotations

import logging

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from serving import log_privacy

SECRET = "Zorblat-secret-dialogue"


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dialogue: int


def test_a_refused_request_is_logged_without_its_values(caplog):
    log_privacy.install()
    log_privacy.install()  # once is enough: no second filter
    logger = logging.getLogger(log_privacy.BENTOML_REQUEST_LOGGER)
    assert sum(isinstance(f, log_privacy.RefusedRequestFilter) for f in logger.filters) == 1
    with caplog.at_level(logging.INFO, logger=log_privacy.BENTOML_REQUEST_LOGGER):
        with pytest.raises(ValidationError) as raised:
            Body.model_validate({"dialogue": SECRET, SECRET: 1})
        try:
            raise RuntimeError("wrapped") from raised.value
        except RuntimeError:
            logger.error("Exception on %s [%s]", "/summarize", "POST", exc_info=True)
        try:
            raise ValueError("a bug of ours")
        except ValueError:
            logger.error("Exception on %s [%s]", "/model", "POST", exc_info=True)
    refused, bug = caplog.records
    assert refused.levelno == logging.INFO and refused.exc_info is None
    assert refused.getMessage() == ("request refused: /summarize [POST] (2 validation errors: extra_forbidden, "
                                    "int_parsing; values not logged)")
    assert SECRET not in caplog.text
    assert bug.levelno == logging.ERROR and bug.exc_info is not None  # other failures keep their traceback
