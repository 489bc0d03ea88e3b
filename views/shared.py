"""Shared: `?token=…` shows the frozen snapshot a share link points to; without a token, your links."""
import streamlit as st

from ui import share
from ui.common import header

token = st.query_params.get("token")
if token:
    share.open_and_render(token)
else:
    header(":material/share: Shared links", "The links you made with the Share button under a result: who "
           "opens them sees a frozen snapshot. Views are counted once per browser session.")
    share.links(share.visitor())
