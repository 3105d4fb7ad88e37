"""The Starlette app that serves the page, mounted at ``/`` by service.py (after BentoML's own routes are
matched; BentoML's Swagger index at ``/`` comes after the mounts, so ours answers ``/``).

    GET /        307 to /ui/ (what a new user opens first)
    GET /ui      307 to /ui/
    GET /ui/...  the page's files (ui/static), with a Content-Security-Policy that allows nothing but this
                 origin: no inline script, no external resource
    GET /docs    BentoML's Swagger page, which used to be at / (it reads /docs.json)

The page's files are public even when API keys are on (serving/auth.py lets GET/HEAD of these paths through):
they hold no data and no secret, and a browser cannot send a bearer header when it opens a page. Every call
the page makes to the API carries the key the user typed.
"""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).resolve().parent / "static"
PAGE_PATH = "/ui/"
PUBLIC_PAGE_PATHS = frozenset({"/", "/ui"})  # redirects to the page
PUBLIC_PAGE_PREFIX = "/ui/"  # the page and its files
# No inline script or style, nothing from another origin, no framing (clickjacking a page that holds a key).
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                           "frame-ancestors 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}


class PageFiles(StaticFiles):
    """ui/static with the security headers on every answer (``no-cache``: a new Bento's page is seen at once;
    the ETag keeps revalidation cheap)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        return response


async def _to_page(_request) -> RedirectResponse:
    return RedirectResponse(PAGE_PATH, status_code=307)


def _swagger_page() -> Path | None:
    """BentoML's own Swagger page (a private file of bentoml 1.4's; None if a later version moves it)."""
    try:
        import _bentoml_impl.server as bentoml_server
    except ImportError:
        return None
    page = Path(bentoml_server.__file__).parent / "main-openapi.html"
    return page if page.is_file() else None


async def _swagger(_request) -> Response:
    page = _swagger_page()
    if page is None:
        return RedirectResponse("/docs.json", status_code=307)
    return FileResponse(page, media_type="text/html")


def page_app() -> Starlette:
    return Starlette(routes=[
        Route("/", _to_page, methods=["GET", "HEAD"]),
        Route("/ui", _to_page, methods=["GET", "HEAD"]),
        Route("/docs", _swagger, methods=["GET", "HEAD"]),
        Mount("/ui", app=PageFiles(directory=STATIC_DIR, html=True), name="ui"),
    ])
