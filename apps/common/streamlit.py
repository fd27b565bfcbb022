"""What the Streamlit drag app shares with the Gradio apps (their side is ``apps/common/gradio.py``): the page's
title, icon and one-sentence description from the catalog, and the offline-models switch of
:mod:`apps.common.offline`, kept in the page's URL (``?models=offline``) so it holds for this tab only."""

from __future__ import annotations

from collections.abc import Iterable

import streamlit as st

from apps.common.catalog import FAVICON, AppSpec
from apps.common.offline import (
    QUERY_KEY,
    QUERY_VALUE,
    in_use_note,
    missing_weights_of,
    offer_note,
    offline_settings,
    switch_label,
)
from core.config import Settings


def set_page(spec: AppSpec) -> None:
    """The page's title and icon (Streamlit's first command of a run)."""
    st.set_page_config(page_title=spec.title, page_icon=str(FAVICON), layout="wide")


def page_header(spec: AppSpec, settings: Settings, models: Iterable[str]) -> Settings:
    """The title and description, then the offline-models line, as the Gradio apps show them: on a switched
    page the label (and a way back), else the offer when weights of `models` are missing. Returns this page's
    settings: `settings`, or their offline copy when the page's URL asks for it."""
    models = tuple(models)
    st.title(spec.title)
    st.caption(spec.summary)
    if st.query_params.get(QUERY_KEY) == QUERY_VALUE:
        page_settings = offline_settings(settings)
        st.info(in_use_note(page_settings, models))
        st.button("Back to the configured models", on_click=_switch, args=(False,), key="offline-back")
        return page_settings
    if missing := missing_weights_of(settings, models):
        st.warning(offer_note(missing))
        st.button(switch_label(models), on_click=_switch, args=(True,), type="primary", key="offline-switch")
    return settings


def _switch(offline: bool) -> None:
    """Go to the page on the other models as it starts (the Gradio apps' switch loads a fresh page too), so
    the widgets take that page's start values: the offline models' examples, size and steps."""
    st.session_state.clear()
    if offline:
        st.query_params[QUERY_KEY] = QUERY_VALUE
    else:
        del st.query_params[QUERY_KEY]
