"""The Streamlit UI (`rag.py`) and its small HTTP client for the prodtune API."""
