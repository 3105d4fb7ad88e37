"""Primary/fallback routing: a request never fails because one backend did, or because its worker died.

The primary backend gets a bounded time to answer; if it raises, reports a failure or does not answer in
time, the same jobs go to the fallback backend. Only when no backend can answer does the caller get an
error, and that error is a 503 the client can retry, never a 500. Why a backend failed travels as a typed
``BackendFailure`` (the original error's class name), not as text to be parsed again.

A backend whose worker process died (a *crash*: the call ended without an answer, see ``is_crash``) is
different from one that answered with a failure or hung:

- the jobs are retried once (summarization is idempotent): on the other backend when one is configured and
  not down itself, else on the same backend as soon as its respawned worker answers its status again, within
  the request's deadline;
- the backend is marked *down* until its status answers again (polled in the background), and new requests
  go straight to the other backend meanwhile instead of queueing for the respawn. BentoML's arbiter keeps
  the worker's socket open while it respawns, so a call to a dead worker does not fail: it waits, up to the
  respawn and model load (measured by `make drill`: 12-37 s for the default model on two busy cores).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiohttp

from serving.protocol import BackendFailure, BackendName, GenerationJob, GenerationOutcome, GenerationResult

logger = logging.getLogger(__name__)

BackendCall = Callable[[list[GenerationJob]], Awaitable[list]]
StatusCall = Callable[[], Awaitable[object]]
TIMEOUT = "TimeoutError"  # error_type of a backend that did not answer within the primary timeout
STATUS_POLL_S = 0.25  # between status calls to a down backend that failed at once (not yet listening)
STATUS_TIMEOUT_S = 5.0  # one status call to a down backend; a respawning worker's call waits in its socket


class BackendUnavailable(RuntimeError):
    """Neither backend produced a result; ``failures`` says what each one did."""

    def __init__(self, message: str, failures: Sequence[BackendFailure]) -> None:
        super().__init__(message)
        self.failures = list(failures)


class BackendFailed(RuntimeError):
    """A backend answered, but with a failure for at least one job."""

    def __init__(self, failure: BackendFailure) -> None:
        super().__init__(f"{failure.error_type}: {failure.message}")
        self.failure = failure


def is_crash(exc: BaseException) -> bool:
    """The call ended without an answer from the backend's code: its worker process died or is not there.

    What BentoML's dependency client (aiohttp) raises then, measured by SIGKILLing a worker under load:
    ``ServerDisconnectedError`` for the calls in flight, ``ClientOSError`` (connection reset) for one
    being sent. Also a refused connection, a body cut short, and a bare 5xx from BentoML itself (the
    backend's own failures come back as ``BackendFailure`` data with a 200). Never a timeout: a hung
    backend is not retried on itself (``aiohttp.ServerTimeoutError`` is both a connection error and one).
    """
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError, BackendFailed)):
        return False
    if isinstance(exc, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, ConnectionError)):
        return True
    status = getattr(exc, "error_code", None)  # bentoml.exceptions.BentoMLException of a non-2xx answer
    return isinstance(status, int) and status >= 500 and status != 504


@dataclass
class Backend:
    name: BackendName
    call: BackendCall
    status: StatusCall | None = None  # answers once the backend's worker is up; how a down backend comes back


@dataclass
class Routed:
    results: list[GenerationResult]
    backend: BackendName
    fallback: bool
    primary_failure: BackendFailure | None = None
    retried: bool = False  # a first attempt crashed and these results are the retry's


class Router:
    """``deadline_s`` bounds a request's wait for a crashed backend to come back (the request timeout)."""

    def __init__(self, primary: Backend, fallback: Backend | None, primary_timeout_s: float,
                 on_fallback: Callable[[BackendFailure], None] | None = None, *, deadline_s: float = 120.0) -> None:
        if primary_timeout_s <= 0:
            raise ValueError(f"primary_timeout_s must be positive, got {primary_timeout_s}")
        if deadline_s <= 0:
            raise ValueError(f"deadline_s must be positive, got {deadline_s}")
        if fallback is not None and fallback.name == primary.name:
            raise ValueError(f"fallback backend must differ from the primary ({primary.name})")
        self.primary = primary
        self.fallback = fallback
        self.primary_timeout_s = primary_timeout_s
        self.deadline_s = deadline_s
        self.on_fallback = on_fallback
        self._down: dict[BackendName, _Down] = {}

    def down(self) -> dict[BackendName, BackendFailure]:
        """The backends marked down by a crash, with the crash that marked them."""
        return {name: down.failure for name, down in self._down.items()}

    async def generate(self, jobs: Sequence[GenerationJob], primary_timeout_s: float | None = None) -> Routed:
        """``primary_timeout_s``: this call's own, for one that is known to take longer (a long dialogue's
        windows); the router's by default."""
        jobs = list(jobs)
        primary_timeout_s = primary_timeout_s or self.primary_timeout_s
        deadline = time.monotonic() + self.deadline_s
        fallback = self.fallback
        if fallback is not None and self.primary.name in self._down and fallback.name not in self._down:
            # The primary's worker is respawning: do not queue behind it.
            failure = self._down[self.primary.name].failure
            self._fell_back(failure, "is down")
            return await self._retry_on_fallback(jobs, failure, deadline, retried=False)
        if self.primary.name in self._down:  # and no other backend to ask: wait for it, not its timeout
            await self._until_answering(self.primary, deadline)
        try:
            results = await asyncio.wait_for(self._call(self.primary, jobs), timeout=primary_timeout_s)
            return Routed(results, self.primary.name, fallback=False)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any primary failure is a reason to fall back
            failure = _failure(self.primary.name, exc, primary_timeout_s)
            crashed = is_crash(exc)
        if crashed:
            self._mark_down(self.primary, failure)
        if fallback is not None:  # even a down one: its call waits in the socket until its worker is back
            self._fell_back(failure, "failed")
            return await self._retry_on_fallback(jobs, failure, deadline, retried=crashed)
        if crashed:  # no other backend to ask: the same one, once its respawned worker answers
            return await self._retry_on_same(self.primary, jobs, failure, deadline)
        raise BackendUnavailable(f"{self.primary.name} backend failed ({_describe(failure)}) and no fallback "
                                 "backend is configured (SUMMARIZER_FALLBACK)", [failure])

    async def _retry_on_fallback(self, jobs: list[GenerationJob], failure: BackendFailure, deadline: float,
                                 retried: bool) -> Routed:
        fallback = self.fallback
        try:
            results = await self._call(fallback, jobs)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            second = _failure(fallback.name, exc, None)
            if is_crash(exc):
                self._mark_down(fallback, second)
                if not retried:  # this was the first attempt (the primary was down): one retry left
                    return await self._retry_on_same(fallback, jobs, second, deadline, primary_failure=failure)
            raise BackendUnavailable(f"{self.primary.name} backend failed ({_describe(failure)}) and fallback "
                                     f"{fallback.name} failed too ({_describe(second)})", [failure, second])
        return Routed(results, fallback.name, fallback=True, primary_failure=failure, retried=retried)

    async def _retry_on_same(self, backend: Backend, jobs: list[GenerationJob], failure: BackendFailure,
                             deadline: float, primary_failure: BackendFailure | None = None) -> Routed:
        """One retry of a crashed call on ``backend`` once it answers again, within ``deadline``."""
        first_failures = [f for f in (primary_failure, failure) if f is not None]
        down = self._down.get(backend.name)
        try:
            if down is not None:
                await asyncio.wait_for(asyncio.shield(down.back.wait()), max(0.0, deadline - time.monotonic()))
            logger.warning("retrying a batch of %d on %s after its worker crashed (%s)", len(jobs), backend.name,
                           _describe(failure))
            results = await asyncio.wait_for(self._call(backend, jobs), max(0.0, deadline - time.monotonic()))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            second = _failure(backend.name, exc, None)
            if isinstance(exc, asyncio.TimeoutError):
                second = BackendFailure(backend=backend.name, error_type=TIMEOUT,
                                        message=f"not back within the request's {self.deadline_s:g}s deadline")
            elif is_crash(exc):
                self._mark_down(backend, second)
            raise BackendUnavailable(f"{backend.name} backend crashed ({_describe(failure)}) and its retry failed "
                                     f"({_describe(second)})", [*first_failures, second])
        return Routed(results, backend.name, fallback=backend is not self.primary, primary_failure=primary_failure,
                      retried=True)

    async def _until_answering(self, backend: Backend, deadline: float) -> None:
        """Until a down ``backend`` answers its status again; BackendUnavailable past ``deadline``."""
        down = self._down.get(backend.name)
        if down is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(down.back.wait()), max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            raise BackendUnavailable(f"{backend.name} backend is down ({_describe(down.failure)}) and did not "
                                     f"answer again within the request's {self.deadline_s:g}s deadline",
                                     [down.failure]) from None

    def _fell_back(self, failure: BackendFailure, how: str) -> None:
        logger.warning("primary backend %s %s (%s); falling back to %s", self.primary.name, how, _describe(failure),
                       self.fallback.name)
        if self.on_fallback:
            self.on_fallback(failure)

    def _mark_down(self, backend: Backend, failure: BackendFailure) -> None:
        if backend.name in self._down:
            return
        logger.warning("%s backend crashed (%s): down until its status answers again", backend.name,
                       _describe(failure))
        down = self._down[backend.name] = _Down(failure, asyncio.Event())
        down.watcher = asyncio.get_running_loop().create_task(self._until_back(backend, down))

    async def _until_back(self, backend: Backend, down: _Down) -> None:
        """Ask the down backend's status until it answers, then take it back (the first crash's record)."""
        started = time.monotonic()
        try:
            while backend.status is not None:
                try:
                    await asyncio.wait_for(backend.status(), STATUS_TIMEOUT_S)
                    break
                except asyncio.TimeoutError:
                    continue  # the call waited in the respawning worker's socket: ask again
                except Exception:  # noqa: BLE001 - not listening yet, or died again
                    await asyncio.sleep(STATUS_POLL_S)
        finally:
            self._down.pop(backend.name, None)
            down.back.set()
        logger.warning("%s backend answers again after %.1fs", backend.name, time.monotonic() - started)

    @staticmethod
    async def _call(backend: Backend, jobs: list[GenerationJob]) -> list[GenerationResult]:
        outcomes = [_as_outcome(item) for item in await backend.call(jobs)]
        if len(outcomes) != len(jobs):
            raise BackendFailed(BackendFailure(backend=backend.name, error_type="WrongAnswerCount",
                                               message=f"{len(outcomes)} answers for {len(jobs)} jobs"))
        for outcome in outcomes:
            if outcome.failure is not None:
                raise BackendFailed(outcome.failure)
            if outcome.result is None:
                raise BackendFailed(BackendFailure(backend=backend.name, error_type="EmptyAnswer",
                                                   message="an answer with neither result nor failure"))
        return [outcome.result for outcome in outcomes]


@dataclass
class _Down:
    failure: BackendFailure
    back: asyncio.Event
    watcher: asyncio.Task | None = None


def failure_in(answers: Sequence[object]) -> BackendFailure | None:
    """The first failure among a backend's answers (dicts over HTTP, or GenerationOutcome), if any."""
    for item in answers:
        failure = item.failure if isinstance(item, GenerationOutcome) else (
            item.get("failure") if isinstance(item, dict) else None)
        if failure:
            return failure if isinstance(failure, BackendFailure) else BackendFailure.model_validate(failure)
    return None


def _failure(backend: BackendName, exc: Exception, timeout_s: float | None) -> BackendFailure:
    if isinstance(exc, BackendFailed):
        return exc.failure
    if isinstance(exc, asyncio.TimeoutError) and timeout_s is not None:
        return BackendFailure(backend=backend, error_type=TIMEOUT, message=f"no answer within {timeout_s:g}s")
    return BackendFailure(backend=backend, error_type=type(exc).__name__, message=str(exc))


def _describe(failure: BackendFailure) -> str:
    return failure.message if failure.error_type == TIMEOUT else f"{failure.error_type}: {failure.message}"


def _as_outcome(item: object) -> GenerationOutcome:
    # Dependency calls hand back plain dicts (HTTP) or models (in-process); normalise.
    return item if isinstance(item, GenerationOutcome) else GenerationOutcome.model_validate(item)
