"""BackendHealth: readiness from the last known backend state, refreshed off the probe's path."""

from __future__ import annotations

import asyncio
import time

from serving.health import BackendHealth
from serving.protocol import BackendName, BackendStatus, Device, Role

TORCH, ONNX = BackendName.TORCH, BackendName.ONNX


def status(name: BackendName, loaded: bool = True) -> BackendStatus:
    return BackendStatus(backend=name, loaded=loaded, role=Role.PRIMARY if loaded else Role.IDLE,
                         device=Device.CPU if loaded else Device.NONE, model="m:1")


class Backend:
    """A backend's status call whose behaviour the test changes: answer, hang, or fail."""

    def __init__(self, name: BackendName, loaded: bool = True) -> None:
        self.name, self.loaded, self.mode, self.calls = name, loaded, "answer", 0

    async def __call__(self) -> BackendStatus:
        self.calls += 1
        if self.mode == "hang":
            await asyncio.sleep(60)
        if self.mode == "fail":
            raise ConnectionError("worker gone")
        return status(self.name, self.loaded)


def health(torch: Backend, onnx: Backend, routed=(ONNX,), **kw) -> BackendHealth:
    return BackendHealth({TORCH: torch, ONNX: onnx}, routed=routed, **kw)


def test_ready_only_when_a_routed_backend_is_loaded():
    async def run():
        idle_torch, onnx = Backend(TORCH, loaded=False), Backend(ONNX)
        assert await health(idle_torch, onnx, routed=[ONNX]).ready_now()
        assert not await health(idle_torch, onnx, routed=[TORCH]).ready_now()  # only the idle one is routed
        assert await health(idle_torch, onnx, routed=[TORCH, ONNX]).ready_now()
    asyncio.run(run())


def test_a_backend_that_never_answered_is_not_loaded():
    async def run():
        onnx = Backend(ONNX)
        onnx.mode = "fail"
        checked = health(Backend(TORCH, loaded=False), onnx)
        assert not await checked.ready_now()
        assert checked.known() == [status(TORCH, loaded=False)]
    asyncio.run(run())


def test_a_busy_backend_keeps_its_state_and_the_probe_does_not_wait_for_it():
    async def run():
        onnx = Backend(ONNX)
        checked = health(Backend(TORCH, loaded=False), onnx, interval_s=0.05, timeout_s=0.2)
        assert await checked.ready_now()
        onnx.mode = "hang"  # e.g. every worker thread busy generating
        await asyncio.sleep(0.5)  # refreshes ran and timed out meanwhile
        assert onnx.calls >= 2
        started = time.perf_counter()
        assert await checked.ready_now()  # last known: loaded
        assert time.perf_counter() - started < 0.05  # read from memory, not asked
    asyncio.run(run())


def test_a_backend_that_fails_after_answering_is_marked_not_loaded_until_it_answers_again():
    async def run():
        onnx = Backend(ONNX)
        checked = health(Backend(TORCH, loaded=False), onnx, interval_s=0.05, timeout_s=0.2)
        assert await checked.ready_now()
        onnx.mode = "fail"  # its worker process died
        await asyncio.sleep(0.2)
        assert not await checked.ready_now()
        onnx.mode = "answer"  # respawned and loaded
        await asyncio.sleep(0.2)
        assert await checked.ready_now()
    asyncio.run(run())


def test_probes_that_arrive_together_before_the_first_refresh_start_one_refresh_loop():
    async def run():
        onnx = Backend(ONNX)
        checked = health(Backend(TORCH, loaded=False), onnx, interval_s=0.05, timeout_s=0.2)
        # e.g. the harness' and Kubernetes' first probes while the first refresh is still waiting for the backends
        assert await asyncio.gather(*(checked.ready_now() for _ in range(5))) == [True] * 5
        await asyncio.sleep(0.2)
        loops = [t for t in asyncio.all_tasks() if t.get_coro().__name__ == "_refresh_forever"]
        assert len(loops) == 1
        assert onnx.calls <= 1 + 0.2 / 0.05 + 1  # one loop's refreshes, not five loops'
    asyncio.run(run())
