"""A typed client of the summarizer service (httpx): the routes as methods returning serving.protocol's models.

    from client import SummarizerClient

    with SummarizerClient("http://localhost:3000") as summarizer:
        print(summarizer.summarize("Tom: Lunch at 12?\\nAnna: OK").summary)

``AsyncSummarizerClient`` has the same methods as coroutines. Failures raise ``ServiceUnreachable`` (no
answer) or ``ServiceError`` (a non-2xx answer); both are ``ClientError``s with a one-line message.
"""

from client.aio import AsyncSummarizerClient
from client.errors import ClientError, ServiceError, ServiceUnreachable, UnexpectedAnswer
from client.sync import SummarizerClient
from feedback.protocol import FeedbackReceipt, Rating
from serving.errors import ErrorCode
from serving.protocol import GenerationOptions, Summary, SummaryBatch

__all__ = ["AsyncSummarizerClient", "ClientError", "ErrorCode", "FeedbackReceipt", "GenerationOptions", "Rating",
           "ServiceError", "ServiceUnreachable", "Summary", "SummaryBatch", "SummarizerClient", "UnexpectedAnswer"]
