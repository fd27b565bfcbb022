"""The front door's server: ``python -m apps.front.server --host 127.0.0.1 --port 7860 --drag-port 8501``
(``python -m apps all`` starts it beside the drag app).

One FastAPI app: the landing page at ``/`` (:mod:`apps.front.landing`), its pictures and the favicon, the joint
depth app at ``/joint/`` and the keyframe app at ``/keyframe/``, each with its offline copy at ``offline/``
below it (:func:`apps.common.gradio.mount_app`). The Streamlit drag app runs as its own server on
``--drag-port``; the landing page links it on the host name the visitor used, so the link works from another
machine too.
"""

from __future__ import annotations

import argparse

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse

from apps.common.catalog import APPS, FAVICON, FRONT
from apps.common.gradio import mount_app, run_server, server_arguments
from apps.front.landing import landing_html
from apps.joint_depth import app as joint_app
from apps.keyframe import app as keyframe_app
from core.config import Settings


def drag_url(request: Request, drag_port: int) -> str:
    """The drag app's URL as the visitor of `request` reaches this server (its host name, the drag port)."""
    host = request.url.hostname or "localhost"
    host = f"[{host}]" if ":" in host else host  # an IPv6 address
    return f"{request.url.scheme}://{host}:{drag_port}/"


def build_server(settings: Settings, drag_port: int) -> FastAPI:
    """The landing page and both Gradio apps (with their offline copies) for `settings`."""
    server = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @server.get("/", response_class=HTMLResponse)
    def landing(request: Request) -> str:
        return landing_html(settings, drag_url(request, drag_port))

    @server.get("/favicon.ico")
    def favicon() -> FileResponse:
        return FileResponse(FAVICON, media_type="image/png")

    @server.get("/cards/{key}.jpg")
    def card(key: str) -> FileResponse:
        if key not in APPS:
            raise HTTPException(404)
        return FileResponse(APPS[key].picture, media_type="image/jpeg")

    for module, spec in ((joint_app, APPS["joint"]), (keyframe_app, APPS["keyframe"])):
        mount_app(server, spec.path, module.demo, module.build_demo, settings, module.SERVED_FOLDERS)
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m apps.front.server", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--drag-port", type=int, default=APPS["drag"].port, help="port of the drag app (Streamlit) to link"
    )
    args, settings = server_arguments(parser, FRONT.port, argv)
    run_server(build_server(settings, args.drag_port), args.host, args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
