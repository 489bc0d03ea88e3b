"""Look inside models: attention views and Captum attributions (LIT-style specs).

One idea per module:
- specs: what a model can do (classifier head? causal LM? attention weights?) and what each
  method needs; `compatible_methods` lists only the methods that fit a loaded model.
- text: tokenising with truncation notes, readable token strings, baselines.
- attention: attention weights, rollout, head summaries, capping for the browser.
- attributions: classification attributions (IG, Saliency, Input×Gradient, DeepLift, ablation,
  occlusion, LIME, KernelSHAP) behind one `attribute` call; `attribute_many` batches per device.
- generation: per-generated-token attribution for causal LMs (ours batched, Captum's LLM classes).
- faithfulness: comprehensiveness and sufficiency (AOPC).
- jobs: dataset-wide attribution + faithfulness as a background job.
- plots, attention_plots, html: plotly figures and the self-contained coloured-text HTML.
- cli: the `python -m llm_lab explain …` commands.
Nothing here imports streamlit; plotly is imported only inside the plot functions.
"""
