"""LLM Lab backend: models, datasets, jobs and results. Never imports streamlit."""

__version__ = "0.1.0"
