"""Micro-batching: the texts of requests that arrive together go through the model in one call."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np


class MicroBatcher:
    """Gathers concurrent requests into one model call of at most `max_texts` texts, waiting at most
    `max_wait_ms` after the first for others to join. A request larger than `max_texts` runs alone."""

    def __init__(self, infer: Callable[[list[str]], np.ndarray], max_texts: int, max_wait_ms: float) -> None:
        self.infer = infer
        self.max_texts = max_texts
        self.max_wait = max_wait_ms / 1000
        self.queue: asyncio.Queue | None = None
        self.worker: asyncio.Task | None = None

    async def submit(self, texts: list[str]) -> np.ndarray:
        if self.queue is None:  # started in the server's own event loop, on the first request
            self.queue = asyncio.Queue()
            self.worker = asyncio.create_task(self.run(self.queue))
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((texts, future))
        return await future

    async def run(self, queue: asyncio.Queue) -> None:
        carried = None
        while True:
            waiting = [carried or await queue.get()]
            carried = await self.gather_more(queue, waiting)
            texts = [text for request_texts, _ in waiting for text in request_texts]
            try:
                probabilities = await asyncio.get_running_loop().run_in_executor(None, self.infer, texts)
            except Exception as error:  # handed to each request, whose handler answers it
                for _, future in waiting:
                    if not future.done():
                        future.set_exception(error)
                continue
            start = 0
            for request_texts, future in waiting:
                if not future.done():  # a client that hung up has a cancelled future
                    future.set_result(probabilities[start : start + len(request_texts)])
                start += len(request_texts)

    async def gather_more(self, queue: asyncio.Queue, waiting: list) -> tuple | None:
        """Add queued requests to `waiting` up to `max_texts` texts or until the wait is over;
        returns the request that did not fit, which opens the next call."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        count = len(waiting[0][0])
        while count < self.max_texts:
            try:
                if queue.empty():
                    item = await asyncio.wait_for(queue.get(), max(deadline - loop.time(), 0))
                else:
                    item = queue.get_nowait()
            except TimeoutError:
                return None
            if count + len(item[0]) > self.max_texts:
                return item
            waiting.append(item)
            count += len(item[0])
        return None
