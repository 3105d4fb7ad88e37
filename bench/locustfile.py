"""Locust users and load shape for the summarizer's load test; run through ``python -m bench.loadtest``.

Every user posts one DialogSum dialogue to /summarize, waits for the answer (and ``think_s``), and posts the
next: a short dialogue or, with probability ``long_share``, a long one (split at the median length). On a
503 the user records the body's code (``serving.errors.ErrorBody``) and waits what ``Retry-After``
says, as a well-behaved client does.

The shape: ``start_users`` -> ``peak_users`` linearly over ``ramp_s`` seconds, ``hold_s`` at the peak, then
``overload_users`` (past the service's admission limit) for ``overload_s``, then stop.

Configuration comes as JSON in ``$LOADTEST_CONFIG`` (written by bench/loadtest.py); every request is
recorded (time, phase, users, kind, status, latency, Retry-After, tokens) and written as JSON to the
``events`` path when the test stops; bench/loadtest.py turns them into the report.
"""

from __future__ import annotations

import json
import os
import random
import time

import gevent
from locust import LoadTestShape, between, events, task
from locust.contrib.fasthttp import FastHttpUser
from pydantic import ValidationError

from serving.errors import ErrorBody

CONFIG = json.loads(os.environ.get("LOADTEST_CONFIG") or "{}")
START_USERS = int(CONFIG.get("start_users", 10))
PEAK_USERS = int(CONFIG.get("peak_users", 50))
RAMP_S = float(CONFIG.get("ramp_s", 180))
HOLD_S = float(CONFIG.get("hold_s", 60))
OVERLOAD_USERS = int(CONFIG.get("overload_users", 0))
OVERLOAD_S = float(CONFIG.get("overload_s", 60)) if OVERLOAD_USERS else 0.0
SPAWN_RATE = float(CONFIG.get("spawn_rate", 20))
LONG_SHARE = float(CONFIG.get("long_share", 0.3))
THINK_S = float(CONFIG.get("think_s", 0.0))
TIMEOUT_S = float(CONFIG.get("timeout_s", 120))
SEED = int(CONFIG.get("seed", 7))
EVENTS_PATH = CONFIG.get("events")

if CONFIG.get("dialogues"):
    with open(CONFIG["dialogues"], encoding="utf-8") as handle:
        DIALOGUES = json.load(handle)
else:  # a locust run without the harness: two toy dialogues
    DIALOGUES = {"short": ["Amanda: I baked cookies. Do you want some?\nJerry: Sure!"],
                 "long": ["Tom: Lunch at noon?\nAnna: OK, the usual place.\nTom: Great, I'll book a table.\n" * 8]}

RECORDS: list[dict] = []
STARTED = [time.time()]
_random = random.Random(SEED)


def phase_at(t: float) -> str:
    if t < RAMP_S:
        return "ramp"
    if t < RAMP_S + HOLD_S:
        return "hold"
    if t < RAMP_S + HOLD_S + OVERLOAD_S:
        return "overload"
    return "done"


def users_at(t: float) -> int:
    phase = phase_at(t)
    if phase == "ramp":
        return int(round(START_USERS + (PEAK_USERS - START_USERS) * t / RAMP_S)) if RAMP_S > 0 else PEAK_USERS
    if phase == "hold":
        return PEAK_USERS
    if phase == "overload":
        return OVERLOAD_USERS
    return 0


def refusal_reason(body: str | None) -> str | None:
    """The machine-readable reason of a 503 (``ErrorBody.code``: "overloaded" or "unavailable");
    None when the body is not an ErrorBody (a 503 the service's own code did not write)."""
    try:
        return ErrorBody.model_validate_json(body or "").code.value
    except ValidationError:
        return None


class RampThenOverload(LoadTestShape):
    def tick(self):
        t = self.get_run_time()
        if phase_at(t) == "done":
            return None
        return users_at(t), SPAWN_RATE


class DialogueUser(FastHttpUser):
    wait_time = between(THINK_S, THINK_S)
    network_timeout = TIMEOUT_S
    connection_timeout = 10.0

    @task
    def summarize(self) -> None:
        kind = "long" if _random.random() < LONG_SHARE else "short"
        text = _random.choice(DIALOGUES[kind])
        started = time.time()
        t = started - STARTED[0]
        record = {"t": round(t, 3), "phase": phase_at(t), "users": self.environment.runner.user_count,
                  "kind": kind}
        retry_after = None
        for attempt in range(2):
            with self.client.post("/summarize", json={"dialogue": text}, name=f"/summarize [{kind}]",
                                  catch_response=True) as resp:
                status = resp.status_code or 0
                if attempt == 0 and status == 0 and "closed" in str(resp.error) and time.time() - started < 0.05:
                    # a kept-alive connection the server had closed while this user slept (Retry-After):
                    # like urllib3 and browsers, send once more on a new connection; counted in the report
                    record["stale_connection_retried"] = True
                    resp.success()
                    continue
                self._record(resp, status, record, started)
                retry_after = record.get("retry_after")
                break
        RECORDS.append(record)
        if retry_after:
            try:
                gevent.sleep(min(float(retry_after), 30.0))
            except ValueError:
                pass

    @staticmethod
    def _record(resp, status: int, record: dict, started: float) -> None:
        record["latency_s"] = round(time.time() - started, 4)
        record["status"] = status
        if status == 200:
            try:
                body = resp.json()
                record["input_tokens"] = body.get("input_tokens", 0)
                record["output_tokens"] = body.get("output_tokens", 0)
            except ValueError:
                pass
            resp.success()
        elif status == 503:
            record["retry_after"] = resp.headers.get("Retry-After") if resp.headers else None
            record["body"] = (resp.text or "")[:300]
            record["reason"] = refusal_reason(resp.text)
            resp.success()  # judged by bench/loadtest.py: expected past capacity, if fast
        else:
            record["error"] = str(resp.error or (resp.text or "")[:300])[:300]
            resp.failure(record["error"] or f"HTTP {status}")


@events.test_start.add_listener
def _started(environment, **_kwargs) -> None:
    STARTED[0] = time.time()


def _dump(**_kwargs) -> None:
    if EVENTS_PATH:
        with open(EVENTS_PATH, "w", encoding="utf-8") as handle:
            json.dump({"started": STARTED[0], "config": CONFIG, "records": RECORDS}, handle)


events.test_stop.add_listener(_dump)
events.quitting.add_listener(_dump)
