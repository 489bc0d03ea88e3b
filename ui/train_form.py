"""Parts of the Train page kept out of the page: the "Distil into a smaller student" choice, the chat model's
defaults and raw-prompt switch, and a finished fine-tune's answers before and after."""
import pandas as pd
import streamlit as st

from llm_lab import registry, train
from llm_lab.train import before_after as answers
from llm_lab.train.distill import plan_text
from ui import backend
from ui.common import plain

DISTILL_HELP = ("Train a student with fewer of the base model's layers (the teacher), initialised from them, on the "
                "teacher's soft labels (at temperature T, weight alpha) and the dataset's gold labels (weight 1 − "
                "alpha). The student is a plain full model, registered with the teacher as its parent.")


def distilling(form, task: str) -> bool:
    """Whether the distillation toggle is on (it is drawn further down; the defaults depend on it)."""
    return task != "pretrain" and bool(st.session_state.get(form.key("t_distill", bool)))


def distill_options(form, task: str, values: dict) -> None:
    """The toggle and, when it is on, the student's layers, T and alpha; what the student keeps of the teacher."""
    if task == "pretrain":
        return
    k = form.key
    values["distill"] = st.toggle("Distil into a smaller student (the base model is the teacher)",
                                  key=k("t_distill", bool), help=DISTILL_HELP)
    if not values["distill"]:
        return
    defaults = train.task_defaults(task, distill=True)
    d1, d2, d3, d4 = st.columns(4)
    values["student_layers"] = int(d1.number_input("Student layers", 1, 128, 3, key=k("t_st_layers", int),
                                                   help="Kept from the teacher's layers: the first, the last and the "
                                                        "rest evenly between (6 → 3 keeps layers 0, 3 and 5)."))
    values["temperature"] = d2.number_input("Temperature T", 0.1, 50.0, 2.0, 0.5, format="%g",
                                            key=k("t_temp", float), help="Softens both distributions; the soft "
                                            "term is scaled by T² so its gradients keep their size.")
    values["alpha"] = d3.number_input("Alpha (weight of the soft labels)", 0.0, 1.0, 0.5, 0.1, format="%g",
                                      key=k("t_alpha", float), help="1: the teacher's soft labels only; 0: the gold "
                                      "labels only (a plain fine-tune of the smaller model).")
    if task == "classify":
        values["augment"] = int(d4.number_input("Augmented copies", 0, 32, int(defaults.get("augment", 0)),
                                                key=k("t_augment", int), help="Copies of each training text with "
                                                "words masked or cut, labelled by the teacher alone: they show the "
                                                "student what the teacher does beyond the training texts."))
    if values.get("model"):
        st.caption(plain(plan_text(backend.actor(), values["model"], values["student_layers"], task)))


CHAT = "_chat"


def chat_variant(task: str, distill: bool, model: str) -> str:
    """The widget-key suffix of the chat model's defaults (`train.task_defaults(..., model=)`), so picking it
    starts from its own measured settings and picking another model gives that one's back."""
    return CHAT if task == "causal-lm" and not distill and model == registry.CHAT_MODEL else ""


def chat_only(variant: str) -> str:
    """The chat part of a variant, for the settings whose defaults do not depend on LoRA."""
    return CHAT if variant.endswith(CHAT) else ""


def raw_prompts(form, values: dict) -> None:
    """The switch that trains prompt/completion pairs as plain text instead of through the chat template."""
    raw = st.toggle("Raw prompts (no chat template)", key=form.key("t_raw", bool),
                    help="Off: prompt/completion pairs are laid out with the base model's chat template, as the "
                         "model is asked at inference (a model without one takes plain text either way). On: the "
                         "prompt, a space and the completion as plain text.")
    values["chat_template"] = not raw


def before_after(result: dict) -> None:
    """The base model's and the fine-tuned model's answers to the held-out prompts, side by side (the summary
    line with chrF is among the held-out evaluation's lines)."""
    found = (result.get("evaluation") or {}).get("before_after")
    table = answers.rows(found)
    if not table:
        return
    st.markdown("**Before and after** (greedy answers to held-out prompts)")
    frame = pd.DataFrame(table).rename(columns={"before": f"before ({found['base']})",
                                                "after": f"after ({found['model']})"})
    st.dataframe(frame, hide_index=True, key=f"t_before_after_{found['model']}")
