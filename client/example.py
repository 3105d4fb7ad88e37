"""The README's Python client example, runnable: python client/example.py [URL]"""

import asyncio
import sys

import bentoml

URL = sys.argv[1] if len(sys.argv) > 1 else "http://localhost:3000"
DIALOGUE = "Amanda: I baked cookies. Do you want some?\nJerry: Sure!\nAmanda: I'll bring you tomorrow :-)"

# Synchronous client: one dialogue, then a list with per-request generation settings.
with bentoml.SyncHTTPClient(URL) as client:
    result = client.summarize(dialogue=DIALOGUE)
    print(result["summary"], f"({result['backend']}, {result['output_tokens']} tokens)")
    batch = client.summarize_batch(dialogues=[DIALOGUE, "Tom: Lunch at 12?\nAnna: OK"],
                                   generation={"num_beams": 2, "max_new_tokens": 60})
    for item in batch["summaries"]:
        print("-", item["summary"])


# Asynchronous client: many requests in flight; the service batches them together.
async def many() -> list[dict]:
    async with bentoml.AsyncHTTPClient(URL) as client:
        return await asyncio.gather(*(client.summarize(dialogue=DIALOGUE) for _ in range(8)))

print(len(asyncio.run(many())), "summaries from concurrent requests")
