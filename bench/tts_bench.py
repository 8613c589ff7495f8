"""Text to speech alone: how long the offline engines take per sentence (cold, through the whole pipeline: engine,
sox, atomic rename) and what a cache hit costs, with N texts rendered at once. By hand; nothing is asserted.

    .venv/bin/python bench/tts_bench.py --texts 20 --concurrency 2
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from ivr.tts.cache import TtsCache
from ivr.tts.engine import OfflineEngine

SENTENCES = {
    "flite:slt": "Welcome back, {n}. You are caller number {n}. We open at 8 a.m. on Monday.",
    "espeak-ng:es": "Bienvenido de nuevo, cliente {n}. Abrimos a las 8 de la mañana el lunes.",
}


async def _one(cache: TtsCache, text: str, voice: str) -> float:
    started = time.perf_counter()
    await cache.get(text, voice)
    return (time.perf_counter() - started) * 1000


async def bench(texts: int, concurrency: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cache = TtsCache(Path(tmp), OfflineEngine(), max_bytes=10**9, concurrency=concurrency)
        for voice, template in SENTENCES.items():
            batch = [template.format(n=i) for i in range(texts)]
            started = time.perf_counter()
            cold = await asyncio.gather(*(_one(cache, t, voice) for t in batch))
            wall = time.perf_counter() - started
            hot = await asyncio.gather(*(_one(cache, t, voice) for t in batch))
            print(f"{voice:14} {texts} texts, {concurrency} at once: cold median {statistics.median(cold):.0f} ms "
                  f"(max {max(cold):.0f}), {texts / wall:.1f} texts/s; cached median {statistics.median(hot):.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=int, default=20, help="distinct sentences per voice (at most 500)")
    parser.add_argument("--concurrency", type=int, default=2, help="renders at once (tts.concurrency)")
    args = parser.parse_args()
    asyncio.run(bench(min(args.texts, 500), args.concurrency))


if __name__ == "__main__":
    main()
