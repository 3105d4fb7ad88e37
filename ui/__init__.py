"""The web page (GET /ui/): try the summarizer, see how the summary was made, rate it and correct it.

Static HTML, CSS and vanilla JavaScript in ``ui/static`` (no build step, nothing fetched from outside the
Bento), served by a small Starlette app that service.py mounts. The page calls the public API itself
(GET /model, POST /summarize, POST /feedback), with the API key the user types when keys are on.
"""

from ui.page import PUBLIC_PAGE_PATHS, PUBLIC_PAGE_PREFIX, page_app

__all__ = ["PUBLIC_PAGE_PATHS", "PUBLIC_PAGE_PREFIX", "page_app"]
