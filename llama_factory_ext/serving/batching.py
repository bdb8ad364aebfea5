"""Request batching: requests wait a short collection window, then each model's texts run length-sorted in
micro-batches on one inference thread. The queue is bounded in texts; a full queue refuses at once (never a hang)."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field


@dataclass
class Limits:
    window_ms: float = 5.0  # collection window before a batch runs
    micro_batch: int = 32  # texts per forward pass
    max_queue: int = 1024  # texts waiting or running; more are refused (503 + Retry-After)
    max_texts: int = 256  # texts per request
    max_chars: int = 20000  # characters per text
    timeout_s: float = 120.0  # a request waiting longer is answered 503
    threads: int = 0  # torch intra-op threads for inference; 0: torch's default (the CPU cores, or OMP_NUM_THREADS)

    @classmethod
    def from_env(cls) -> "Limits":
        """Limits from LFX_SERVE_WINDOW_MS, LFX_SERVE_MICRO_BATCH, LFX_SERVE_MAX_QUEUE, LFX_SERVE_MAX_TEXTS,
        LFX_SERVE_MAX_CHARS, LFX_SERVE_TIMEOUT_S, LFX_SERVE_THREADS (a bad value names its variable)."""
        from ..api import UserError

        out = cls()
        for name, kind in (("window_ms", float), ("micro_batch", int), ("max_queue", int), ("max_texts", int),
                           ("max_chars", int), ("timeout_s", float), ("threads", int)):
            var = f"LFX_SERVE_{name.upper()}"
            raw = os.environ.get(var)
            if raw is None:
                continue
            try:
                value = kind(raw)
            except ValueError:
                value = None
            if value is None or value < 0 or (value == 0 and name != "window_ms"):
                raise UserError(f"environment variable {var}={raw!r}: expected a positive {kind.__name__}")
            setattr(out, name, value)
        return out


class Overloaded(Exception):
    """The queue is full (or the request waited past the timeout)."""


@dataclass
class Job:
    texts: list
    future: asyncio.Future
    results: list = field(default_factory=list)


class Batcher:
    def __init__(self, models: dict, limits: Limits):
        self.models, self.limits = models, limits
        self.waiting: dict[str, list[Job]] = {}
        self.queued = 0  # texts waiting or running
        self.wake = asyncio.Event()
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lfx-serve")
        self.task = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.run())

    async def classify(self, name: str, texts: list[str]):
        """(raw logits [n, k], prompt tokens) for one request's texts, batched with other requests."""
        if self.queued + len(texts) > self.limits.max_queue:
            raise Overloaded(f"the server queue is full ({self.queued} texts waiting, limit {self.limits.max_queue})")
        job = Job(texts, asyncio.get_running_loop().create_future())
        self.queued += len(texts)
        self.waiting.setdefault(name, []).append(job)
        self.wake.set()
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), self.limits.timeout_s)
        except asyncio.TimeoutError:
            raise Overloaded(f"the request waited more than {self.limits.timeout_s:g} s") from None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.wake.wait()
            if self.limits.window_ms:
                await asyncio.sleep(self.limits.window_ms / 1000)
            self.wake.clear()
            batches, self.waiting = self.waiting, {}
            for name, jobs in batches.items():
                try:
                    outs = await loop.run_in_executor(self.pool, self.compute, name, jobs)
                    for job, out in zip(jobs, outs):
                        if not job.future.done():
                            job.future.set_result(out)
                except Exception as exc:  # a failed batch fails its requests, never the server
                    for job in jobs:
                        if not job.future.done():
                            job.future.set_exception(exc)
                finally:
                    self.queued -= sum(len(j.texts) for j in jobs)

    def compute(self, name: str, jobs: list[Job]) -> list:
        """Every job's texts in one length-sorted pass; results split back per job."""
        import numpy as np

        served = self.models[name]
        texts = [t for j in jobs for t in j.texts]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        logits = served.logits([texts[i] for i in order], self.limits.micro_batch)
        back = np.empty_like(logits)
        back[order] = logits
        out, start = [], 0
        for job in jobs:
            n = len(job.texts)
            out.append((back[start:start + n], served.count_tokens(job.texts)))
            start += n
        return out
