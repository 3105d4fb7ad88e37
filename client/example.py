"""The README's Python example, runnable as written: python -m client.example [URL] (from the repository root)"""

import asyncio
import sys

from client import AsyncSummarizerClient, ServiceError, SummarizerClient

URL = sys.argv[1] if len(sys.argv) > 1 else "http://localhost:3000"
dialogues = ["Amanda: I baked cookies. Do you want some?\nJerry: Sure!\nAmanda: I'll bring you tomorrow :-)",
             "Tom: Lunch at 12?\nAnna: OK",
             "Ann: Is the report done?\nBob: Tomorrow."]

# Synchronous: one dialogue, then several in one request with per-request generation settings.
with SummarizerClient(URL) as summarizer:
    result = summarizer.summarize(dialogues[0])
    print(result.summary, f"({result.backend}, {result.output_tokens} tokens, {result.duration_ms:.0f} ms)")
    batch = summarizer.summarize_batch(dialogues, generation={"num_beams": 2, "max_new_tokens": 60})
    for item in batch.summaries:
        print("-", item.summary)
    try:
        summarizer.summarize("   ")
    except ServiceError as error:  # a 400 says what is wrong
        print("refused:", error.status, error.message)


# Asynchronous: many requests in flight on one connection pool; the service batches them together.
async def summarize_all(texts: list[str]) -> list[str]:
    async with AsyncSummarizerClient(URL) as summarizer:
        results = await asyncio.gather(*(summarizer.summarize(text) for text in texts))
    return [result.summary for result in results]


summaries = asyncio.run(summarize_all(dialogues * 4))
print(len(summaries), "summaries from concurrent requests")
