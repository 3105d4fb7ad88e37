"""What the public service knows of its backends' health, kept up to date off the probe's path.

Kubernetes probes /readyz every few seconds with a timeout of about a second. Asking each backend at every
probe made readiness as slow as the busiest backend (3-5 s under 2x overload), so every busy pod would be
marked unready exactly when it is needed. Instead a background task asks the backends every
``interval_s``; a probe reads the last known state. A backend that does not answer in time keeps its last
known state (busy is not down); one that fails to answer (its worker died, or it never loaded) is not
loaded until it answers again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from serving.protocol import BackendName, BackendStatus

logger = logging.getLogger(__name__)

AskStatus = Callable[[], Awaitable[BackendStatus]]


class BackendHealth:
    def __init__(self, ask: dict[BackendName, AskStatus], routed: Iterable[BackendName], *,
                 interval_s: float = 2.0, timeout_s: float = 2.0) -> None:
        self.ask = dict(ask)
        self.routed = frozenset(routed)
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.statuses: dict[BackendName, BackendStatus] = {}
        self.refreshed_at: float | None = None
        self._task: asyncio.Task | None = None
        self._first_refresh = asyncio.Event()

    def ready(self) -> bool:
        """At least one backend that requests are routed to has its model loaded (last known state)."""
        return any(s.loaded and name in self.routed for name, s in self.statuses.items())

    async def ready_now(self) -> bool:
        """``ready()``, after the first refresh if none finished yet; starts the background refresh.

        One refresh loop however many probes arrive together: the task is created before any await (the
        probes that came during the first refresh used to start a loop each, and each asked the backends).
        """
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._refresh_forever())
        await self._first_refresh.wait()
        return self.ready()

    async def refresh(self) -> None:
        await asyncio.gather(*(self._refresh_one(name, ask) for name, ask in self.ask.items()))
        self.refreshed_at = time.monotonic()

    def known(self) -> list[BackendStatus]:
        return [self.statuses[name] for name in self.ask if name in self.statuses]

    async def _refresh_one(self, name: BackendName, ask: AskStatus) -> None:
        try:
            self.statuses[name] = BackendStatus.model_validate(_plain(await asyncio.wait_for(ask(), self.timeout_s)))
        except asyncio.TimeoutError:
            pass  # busy: keep what we knew
        except Exception:  # noqa: BLE001 - down or still starting: not loaded until it answers
            known = self.statuses.get(name)
            if known is not None and known.loaded:
                logger.warning("%s backend stopped answering its status; marked not loaded", name)
                self.statuses[name] = known.model_copy(update={"loaded": False})

    async def _refresh_forever(self) -> None:
        """Refresh at once, then every ``interval_s``."""
        while True:
            try:
                await self.refresh()
            except Exception:  # noqa: BLE001 - the loop must outlive any one refresh
                logger.exception("refreshing the backends' health failed")
            finally:
                self._first_refresh.set()  # a failed first refresh leaves "not ready", not a waiting probe
            await asyncio.sleep(self.interval_s)


def _plain(value):
    return value.model_dump() if hasattr(value, "model_dump") else value
