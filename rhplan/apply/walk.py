"""The parallel walk of one apply phase: a graph of step names in, each step run once
everything it waits for has finished, up to `parallelism` at a time, in name order
among the ready ones. A failed step stops only the steps that wait for it, directly or
not; an interrupt starts nothing new. Knows nothing of resources or state (apply/
__init__.py builds the graphs and runs the steps)."""
from __future__ import annotations

import heapq
from collections.abc import Callable, Collection
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from rhplan.graph import reachable


def walk(g: dict[str, list[str]], run: Callable[[str], None], parallelism: int, *,
         failed: Callable[[str, Exception], None], skipped: list[str],
         interrupted: Callable[[], bool] = lambda: False,
         blocked: Collection[str] = frozenset()) -> None:
    """Run every step of g (step -> the steps that wait for it). A step whose run raises
    is handed to `failed`; the steps it stops (and, after an interrupt, those never
    started) are appended to `skipped`. blocked: steps stopped before the walk (a
    replace whose delete failed must not be created): they do not run and, reported
    already by the caller, are not listed again; the steps waiting for them are skipped."""
    pending = set(g)
    stopped = [b for b in sorted(blocked) if b in pending]
    pending.difference_update(stopped)  # first: a blocked dependent is not listed again
    for b in stopped:
        _skip(b, pending, g, skipped)
    # Unfinished predecessors per step, and the steps with none left (a heap, so
    # they start in name order): no scan of every pending step per finished one.
    waiting = dict.fromkeys(pending, 0)
    for a in pending:
        for d in g[a]:
            if d in waiting:
                waiting[d] += 1
    ready = [a for a in pending if not waiting[a]]
    heapq.heapify(ready)
    futures: dict[Future[None], str] = {}
    with ThreadPoolExecutor(max_workers=parallelism) as pool:
        while pending or futures:
            if not interrupted():
                while ready and len(futures) < parallelism:
                    a = heapq.heappop(ready)
                    if a not in pending:
                        continue  # skipped after a failure
                    pending.discard(a)
                    futures[pool.submit(run, a)] = a
            elif pending:
                skipped.extend(sorted(pending))
                pending.clear()
            if not futures:
                if pending:  # nothing runnable: everything left depends on a failure
                    skipped.extend(sorted(pending))
                    pending.clear()
                break
            finished, _ = wait(list(futures), timeout=0.2, return_when=FIRST_COMPLETED)
            for f in finished:
                a = futures.pop(f)
                try:
                    f.result()
                except Exception as exc:  # one failure stops its dependents only
                    failed(a, exc)
                    _skip(a, pending, g, skipped)
                    continue
                for d in g[a]:
                    if d in pending:  # not skipped for another step
                        waiting[d] -= 1
                        if not waiting[d]:
                            heapq.heappush(ready, d)


def _skip(addr: str, pending: set[str], g: dict[str, list[str]], skipped: list[str]
          ) -> None:
    """Skip every pending step that waits, directly or not, for addr."""
    for d in sorted(reachable(g, addr)):
        if d in pending:
            pending.discard(d)
            skipped.append(d)
