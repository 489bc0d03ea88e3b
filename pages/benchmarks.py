import streamlit as st

st.title("Benchmarks")
st.info("This page is being built (issue 4).")
