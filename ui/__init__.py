"""Streamlit helpers shared by the pages. All data access goes through ui.backend."""
