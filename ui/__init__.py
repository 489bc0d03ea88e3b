"""Streamlit helpers shared by the pages. All data access goes through ui.backend."""
import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

# On a fresh server whose first visitor opens a page URL (/models, a shared link), Streamlit sees the pages/
# folder and runs that page file without app.py (its old multipage mode, left only once app.py calls
# st.navigation): no router, no page config, the wrong sidebar. Leave that mode and rerun through app.py.
if PagesManager.uses_pages_directory:
    PagesManager.uses_pages_directory = False
    st.rerun()
