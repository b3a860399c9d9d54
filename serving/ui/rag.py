"""prodtune RAG: ask about the catalogue, see the answer and the products it came from.

Run: `streamlit run serving/ui/rag.py` (or `prodtune serve --ui`). It calls the prodtune API only:
`PRODTUNE_API_URL` (default http://127.0.0.1:8000) and `PRODTUNE_API_KEY` come from the environment.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

try:
    from serving.ui.client import Answer, ApiClient, ApiError
except ModuleNotFoundError:  # `streamlit run` puts only this folder on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from serving.ui.client import Answer, ApiClient, ApiError

MODEL_HELP = {
    "prodtune-router": "router decides: describe a product title, or answer a question from the catalogue",
    "prodtune-qa": "always answer from retrieved products",
    "prodtune-describer": "always write a description for a product title",
}


@st.cache_resource
def client() -> ApiClient:
    return ApiClient()


@st.cache_data(ttl=60, show_spinner=False)
def models() -> list[str]:
    return client().models()


def sidebar() -> tuple[str, float, int]:
    st.sidebar.header("Settings")
    try:
        available = models()
    except (ApiError, OSError) as exc:
        st.sidebar.error(f"API not reachable at {client().base_url}: {exc}")
        available = list(MODEL_HELP)
    model = st.sidebar.selectbox(
        "Model", available, help="; ".join(f"{k}: {v}" for k, v in MODEL_HELP.items())
    )
    threshold = st.sidebar.slider("Similarity threshold (%)", 0, 100, 60, step=5)
    max_tokens = st.sidebar.slider("Max answer tokens", 32, 512, 192, step=32)
    st.sidebar.caption(f"API: {client().base_url}")
    return model, float(threshold), max_tokens


def show_details(answer: Answer) -> None:
    route = {"answer": "answered from the catalogue", "describe": "described the product"}.get(
        answer.route, answer.route
    )
    st.markdown(f"**Route:** `{answer.route}` ({route}), confidence {answer.confidence:.0%}")
    if answer.reason:
        st.caption(f"Reason: {answer.reason}")
    if answer.sources:
        st.subheader("Retrieved products")
        rows = [
            {"uid": s["uid"], "title": s.get("title", ""), "score": f"{100 * float(s.get('score', 0)):.1f}%"}
            for s in answer.sources
        ]
        st.table(rows)  # a plain HTML table: readable, copyable, and visible to browser tests
    elif answer.route == "answer":
        st.info(f"No product reached the {answer.threshold:.0f}% similarity threshold.")


def main() -> None:
    st.set_page_config(page_title="prodtune RAG", page_icon="🛍️", layout="wide")
    st.title("prodtune: ask the product catalogue")
    model, threshold, max_tokens = sidebar()
    with st.form("ask"):
        question = st.text_input("Question or product title", placeholder="What size is the ballet tutu?")
        asked = st.form_submit_button("Ask")
    if not (asked and question.strip()):
        return
    answer = Answer()
    st.subheader("Answer")
    try:
        with st.spinner("Thinking..."):
            st.write_stream(client().ask_stream(question.strip(), model, threshold, answer, max_tokens))
    except (ApiError, OSError) as exc:
        st.error(f"The API failed: {exc}")
        return
    show_details(answer)


main()
