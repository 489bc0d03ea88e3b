import streamlit as st

st.title("Attributions")
st.info("This page is being built (issue 5).")
