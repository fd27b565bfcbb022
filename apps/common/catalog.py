"""The three apps as data: name, one-sentence description, picture, entry file, framework and port.

The launcher (``python -m apps``) starts them from here, the landing page (``apps/front``) lists them from here,
and each app takes its page title and description from its entry, so the four say the same.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FAVICON = ROOT / "assets" / "favicon.png"  # every app's page icon and the landing page's
CARDS = ROOT / "assets" / "screenshots" / "cards"  # the landing page's pictures: KEY.jpg


@dataclass(frozen=True)
class AppSpec:
    """One app. `entry`: its entry file, relative to the repository root; `path`: where the front door serves
    a Gradio app ("" for the Streamlit app, which runs as its own server on `port`)."""

    key: str
    title: str
    summary: str  # one sentence: what the app does
    entry: str
    framework: str  # "gradio" or "streamlit"
    port: int
    path: str = ""

    @property
    def picture(self) -> Path:
        return CARDS / f"{self.key}.jpg"

    def command(self, host: str) -> list[str]:
        """The command that serves the app alone on `port`."""
        if self.framework == "streamlit":
            return [
                sys.executable, "-m", "streamlit", "run", str(ROOT / self.entry),
                "--server.port", str(self.port), "--server.address", host,
                "--server.headless", "true", "--browser.gatherUsageStats", "false",
            ]  # fmt: skip
        module = self.entry.removesuffix(".py").replace("/", ".")
        return [sys.executable, "-m", module, "--host", host, "--port", str(self.port)]

    def url(self, host: str) -> str:
        return f"http://{display_host(host)}:{self.port}"


def display_host(host: str) -> str:
    """The host name to print in a URL for a server bound to `host`."""
    return "localhost" if host in ("0.0.0.0", "127.0.0.1") else host


APPS = {
    "drag": AppSpec(
        "drag",
        "Drag to video",
        "Draw where things should move on a picture and get a video whose content follows your drags.",
        "apps/drag/app.py",
        "streamlit",
        8501,
    ),
    "joint": AppSpec(
        "joint",
        "Joint depth + image",
        "Generate an image and its depth map together from a prompt, or the depth of your image, or an image "
        "that fits your depth map.",
        "apps/joint_depth/app.py",
        "gradio",
        7861,
        "/joint",
    ),
    "keyframe": AppSpec(
        "keyframe",
        "Keyframe edit + interpolation",
        "Edit a few keyframes of a video consistently and fill the frames between them.",
        "apps/keyframe/app.py",
        "gradio",
        7862,
        "/keyframe",
    ),
}
# The front door: the landing page with both Gradio apps mounted under their paths (apps/front/server.py).
FRONT = AppSpec(
    "front",
    "Kinema",
    "Controllable image and video generation: three apps over one core.",
    "apps/front/server.py",
    "gradio",
    7860,
)
