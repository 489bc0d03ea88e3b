import streamlit as st

st.title("Arena")
st.info("This page is being built (issue 6).")
