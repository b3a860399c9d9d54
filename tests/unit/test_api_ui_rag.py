"""serving/ui/rag.py under Streamlit's AppTest (no browser), talking to a live API on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from serving.api.app import create_app
from serving.api.settings import ApiSettings
from serving.api.testing import CatalogResponder, serve_in_thread


@pytest.fixture(autouse=True)
def fresh_caches() -> None:
    import streamlit as st

    st.cache_data.clear()  # the page caches its client and model list per process
    st.cache_resource.clear()


RAG = Path(__file__).resolve().parents[2] / "serving" / "ui" / "rag.py"
PRODUCTS = [("0000031909", "Girls Ballet Tutu Neon Pink", "A three layer tutu, 12 inches in length.")]


def test_rag_page_asks_the_api_and_shows_answer_route_and_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.testing.v1 import AppTest

    responder = CatalogResponder(PRODUCTS)
    with serve_in_thread(create_app(responder, settings=ApiSettings(key=SecretStr("ui-key")))) as url:
        monkeypatch.setenv("PRODTUNE_API_URL", url)
        monkeypatch.setenv("PRODTUNE_API_KEY", "ui-key")
        at = AppTest.from_file(str(RAG), default_timeout=30).run()
        assert not at.exception
        assert at.sidebar.selectbox[0].options == ["prodtune-router", "prodtune-describer", "prodtune-qa"]
        at.sidebar.slider[0].set_value(30)
        at.text_input[0].input("What length is the girls ballet tutu?")
        at.button[0].click().run()
        assert not at.exception and not at.error
        assert responder.calls[-1] == ("What length is the girls ballet tutu?", 30.0, "prodtune-router")
        page = " ".join(m.value for m in at.markdown)
        assert "12 inches in length" in page and "`answer`" in page
        table = at.table[0].value
        assert table["uid"].tolist() == ["0000031909"] and table["score"].iloc[0].endswith("%")


def test_rag_page_reports_a_wrong_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.testing.v1 import AppTest

    with serve_in_thread(
        create_app(CatalogResponder(PRODUCTS), settings=ApiSettings(key=SecretStr("k")))
    ) as url:
        monkeypatch.setenv("PRODTUNE_API_URL", url)
        monkeypatch.setenv("PRODTUNE_API_KEY", "wrong")
        at = AppTest.from_file(str(RAG), default_timeout=30).run()
        assert "HTTP 401" in at.sidebar.error[0].value
