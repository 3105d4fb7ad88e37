"""What POST /feedback takes and answers (the wire models; the client sends exactly these).

    POST /feedback  {"request_id": "3f2c...", "rating": "bad", "corrected_summary": "Amanda baked cookies ...",
                     "comment": "missed who brings them"}
    200             {"feedback_id": "9a1b...", "request_id": "3f2c...", "stored": true, "replaced": false}

``rating`` is a thumbs-up/down: "good" (the summary may stand as it is) or "bad" (it should not). A support
desk rates quickly; a finer scale would be a guess between neighbours, and the fine-tuning export needs only
"may this summary be learnt from". A corrected summary is what the summary should have been, whatever the
rating. One feedback per answer: a second one for the same ``request_id`` replaces the first (the answer
says ``"replaced": true``), so a client that sends again after a dropped connection stores it once.

The length limits are declared here once, as schema constraints: they are what /docs.json publishes and what
RequestValidation checks before BentoML (a 400 that names the field and the limit).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Optional

from pydantic import BaseModel, ConfigDict, Field

from serving.protocol import NOT_WHITESPACE

MAX_CORRECTED_SUMMARY_CHARS = 4_000  # the model writes at most 512 tokens (~2,500 characters)
MAX_COMMENT_CHARS = 2_000
REQUEST_ID_PATTERN = "^[0-9a-f]{32}$"  # serving/flow.py's Item.request_id: uuid4().hex


class Rating(StrEnum):
    GOOD = "good"  # the summary may stand as it is: the export may learn from it
    BAD = "bad"  # it should not: learnt from only through a corrected summary


class FeedbackRequest(BaseModel):
    """POST /feedback: a rating of one answer, named by the ``request_id`` of its Summary."""

    model_config = ConfigDict(extra="forbid")

    request_id: Annotated[str, Field(strict=True, pattern=REQUEST_ID_PATTERN, min_length=32, max_length=32,
                                     description="The request_id of the Summary being rated (32 hex digits).")]
    rating: Rating = Field(description="'good': the summary may stand as it is; 'bad': it should not.")
    corrected_summary: Optional[Annotated[str, Field(
        strict=True, min_length=1, max_length=MAX_CORRECTED_SUMMARY_CHARS, pattern=NOT_WHITESPACE,
        description="What the summary should have been; not empty or whitespace only.")]] = None
    comment: Optional[Annotated[str, Field(strict=True, max_length=MAX_COMMENT_CHARS,
                                           description="Anything else the reviewer wants to say.")]] = None


class FeedbackReceipt(BaseModel):
    """The answer to POST /feedback once the feedback is stored (committed to the feedback store)."""

    feedback_id: str = Field(description="Names this feedback (a new one for every submission).")
    request_id: str
    stored: bool = Field(default=True, description="Always true: an answer is only sent once it is stored.")
    replaced: bool = Field(default=False, description="True when it replaced an earlier feedback for this "
                                                      "request_id.")


def body_limit() -> int:
    """Most bytes a POST /feedback body may have: its longest texts written the longest way JSON writes
    them (6 bytes a character: ``\\uXXXX``) plus 4 KiB for the rest."""
    return (MAX_CORRECTED_SUMMARY_CHARS + MAX_COMMENT_CHARS) * 6 + 4 * 1024
