"""Streamlit helpers shared by the pages (views/). Cached data access and the acting user live in ui.backend."""
