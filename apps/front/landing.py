"""The landing page: the three apps (:data:`apps.common.catalog.APPS`), each with its picture, its one sentence,
its link, and the state of each of its backends.

A backend's state comes from the apps' own registries (which settings each backend runs:
``apps/drag/backends.py`` ``BACKENDS``, ``apps/keyframe/backends.py``, ``apps/joint_depth/job.py`` ``MODELS``)
and :func:`core.models.status.weights_status` (what those settings' weights are, found the way the loaders find
them): ``ready`` (or the preset it runs), or ``needs`` the variables whose weights are not usable, with ``mini``
named where the offline mini model is installed. Each card links the app and, where offline models help, its
offline copy (:mod:`apps.common.offline`).
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from apps.common.catalog import APPS, AppSpec
from apps.common.offline import OFFLINE_PATH, QUERY_KEY, QUERY_VALUE
from apps.drag.backends import BACKENDS as DRAG_BACKENDS
from apps.joint_depth.job import MODELS as JOINT_MODELS
from apps.keyframe.backends import EDIT_BACKENDS, INTERP_BACKENDS
from core.config import Settings
from core.models.status import mini_available, weights_status


@dataclass(frozen=True)
class BackendState:
    """One backend's line on the landing page. `ready`: it runs with the settings as they are; `text`: the
    state in words ("ready", "ready: tiny random weights", "needs KINEMA_SD_MODEL (mini available)")."""

    label: str
    ready: bool
    text: str


def backend_models(key: str) -> list[tuple[str, tuple[str, ...]]]:
    """(label, the Settings fields it runs) of each backend of app `key`, from the app's registry."""
    if key == "drag":
        return [(b.label, b.models) for b in DRAG_BACKENDS.values()]
    if key == "joint":
        return [("Stable Diffusion 1.5 with the joint depth patch", JOINT_MODELS)]
    return [(f"Edit: {b.label}", b.models) for b in EDIT_BACKENDS.values()] + [
        (f"Inbetween: {b.label}", b.models) for b in INTERP_BACKENDS.values()
    ]


_PRESET_TEXT = {
    "tiny": "tiny random weights (noise)",
    "mini": "mini models",
    "download": "downloads on first use",
}


def backend_state(label: str, models: tuple[str, ...], settings: Settings) -> BackendState:
    """The state of a backend that runs the weights of `models` under `settings`."""
    statuses = [weights_status(name, getattr(settings, name)) for name in models]
    blocked = [status for status in statuses if not status.usable]
    if blocked:
        mini = " (mini available)" if all(mini_available(s.setting) for s in blocked) else ""
        return BackendState(label, False, f"needs {', '.join(s.variable for s in blocked)}{mini}")
    if not models:
        return BackendState(label, True, "ready (no weights)")
    presets = dict.fromkeys(_PRESET_TEXT[s.state] for s in statuses if s.state in _PRESET_TEXT)
    return BackendState(label, True, f"ready: {', '.join(presets)}" if presets else "ready")


def app_states(settings: Settings) -> dict[str, list[BackendState]]:
    """Every app's backend states, by app key."""
    return {key: [backend_state(*backend, settings) for backend in backend_models(key)] for key in APPS}


def app_url(spec: AppSpec, drag_url: str, offline: bool = False) -> str:
    """Where the landing page links app `spec` (the Gradio apps by path, the drag app at `drag_url`)."""
    if spec.framework == "streamlit":
        return f"{drag_url}?{QUERY_KEY}={QUERY_VALUE}" if offline else drag_url
    return f"{spec.path}/{OFFLINE_PATH}/" if offline else f"{spec.path}/"


_STYLE = """
*{box-sizing:border-box}
body{margin:0;font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2937;background:#f6f7f9}
main{max-width:1200px;margin:0 auto;padding:24px 16px}
h1{margin:0 0 4px}
.lead{margin:0 0 20px;color:#4b5563}
.apps{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,320px),1fr));gap:16px}
.app{background:#fff;border:1px solid #e5e7eb;border-radius:10px;overflow:hidden;display:flex;flex-direction:column}
.app img{display:block;width:100%;height:auto;aspect-ratio:16/10;object-fit:cover;object-position:top}
.app .body{padding:12px 16px 16px;display:flex;flex-direction:column;gap:8px;flex:1}
.app h2{margin:0;font-size:1.2rem}
.app h2 a{color:inherit}
.app p{margin:0}
.backends{list-style:none;margin:0;padding:0;font-size:.9rem}
.backends li{padding:3px 0;border-top:1px solid #f1f2f4;overflow-wrap:anywhere}
.state{font-weight:600}
.ready{color:#047857}
.needs{color:#b45309}
.links{margin-top:auto;display:flex;flex-wrap:wrap;gap:8px}
.links a{padding:6px 12px;border-radius:6px;background:#f97316;color:#fff;text-decoration:none;font-weight:600}
.links a.secondary{background:#e5e7eb;color:#1f2937}
"""


def landing_html(settings: Settings, drag_url: str) -> str:
    """The whole page; `drag_url`: where the drag app's server is, as this page's visitor reaches it."""
    states = app_states(settings)
    cards = [_card(spec, states[key], drag_url) for key, spec in APPS.items()]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<title>Kinema</title><link rel="icon" href="/favicon.ico">'
        f"<style>{_STYLE}</style></head><body><main>"
        "<h1>Kinema</h1><p class='lead'>Controllable image and video generation with Stable Diffusion and Stable "
        "Video Diffusion: three apps over one core. Each backend's state says whether it runs with this "
        "server's settings, or which <code>KINEMA_*</code> variable it needs.</p>"
        f"<div class='apps'>{''.join(cards)}</div></main></body></html>"
    )


def _card(spec: AppSpec, states: list[BackendState], drag_url: str) -> str:
    e = html.escape
    rows = "".join(
        f"<li>{e(s.label)}: <span class='state {'ready' if s.ready else 'needs'}'>{e(s.text)}</span></li>"
        for s in states
    )
    url = e(app_url(spec, drag_url))
    offline = e(app_url(spec, drag_url, offline=True))
    return (
        f"<section class='app' id='app-{spec.key}'><a href='{url}'><img src='/cards/{spec.key}.jpg' "
        f"alt='{e(spec.title)}' width='480' height='300'></a><div class='body'>"
        f"<h2><a href='{url}'>{e(spec.title)}</a></h2><p>{e(spec.summary)}</p>"
        f"<ul class='backends'>{rows}</ul><div class='links'><a class='open' href='{url}'>Open</a>"
        f"<a class='secondary offline' href='{offline}'>Open on the offline models</a></div></div></section>"
    )
