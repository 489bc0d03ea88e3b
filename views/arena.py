"""Arena: two models drawn from a pool answer the same prompt, names hidden until you vote; a leaderboard."""
import time
import uuid

import pandas as pd
import streamlit as st

from llm_lab import capabilities
from llm_lab.compare import arena, plots, rating
from llm_lab.generation import GenerationSettings
from llm_lab.generation_defaults import SUGGESTED
from llm_lab.stats import intervals
from ui import backend
from ui.common import header, permalink, plain, show_permalink, user_errors

header(":material/sports_kabaddi: Arena", "Blind comparison: two models drawn at random from your pool answer the same prompt. Their names "
       "stay hidden until you vote. Votes feed a Bradley–Terry leaderboard with bootstrap confidence intervals.")


def voter_id() -> str:
    """The signed-in user on a hosted server (the backend counts votes for them, one per battle), else an
    anonymous id for this browser session (local mode only)."""
    if "a_voter" not in st.session_state:
        st.session_state["a_voter"] = "anon-" + uuid.uuid4().hex[:12]
    return arena.voter_for(backend.actor(), st.session_state["a_voter"])


def loader(name: str, head: str):
    return backend.model(name, head=head)


voter = voter_id()
names = backend.model_names(capabilities.GENERATE)
if len(names) < 2:
    st.info("The arena needs at least two causal LMs in the registry. Add one on the Models page or train one.")
# a leaderboard permalink (/arena?pool=A&pool=B) names the pool its ratings were computed on
url_pool = [n for n in st.query_params.get_all("pool") if n in names]
pool = st.multiselect("Pool (each battle draws two of these)", names, default=url_pool or names, key="a_pool")
prompt = st.text_area("Prompt", "A list in Python is", key="a_prompt")
with st.expander("Generation settings"):
    s1, s2, s3 = st.columns(3)
    max_new = s1.number_input("Max new tokens", 1, 1024, SUGGESTED["max_new_tokens"], key="a_max")
    sampling = s2.toggle("Sample (instead of greedy)", key="a_sample")
    temp = s3.slider("Temperature", 0.05, 2.0, 0.8, 0.05, key="a_temp", disabled=not sampling)
    s1, s2, _ = st.columns(3)
    rep = s1.number_input("Repetition penalty", 0.5, 3.0, SUGGESTED["repetition_penalty"], 0.05, key="a_rep",
                          help="1 = none. Small models loop without one.")
    ngram = s2.number_input("No repeated n-gram", 0, 10, SUGGESTED["no_repeat_ngram_size"], key="a_ngram",
                            help="No n-gram of this size appears twice; 0 = off.")


def answer_columns(prompt: str, names: dict | None = None) -> dict:
    """The prompt, then a column per side headed "Model A" / "Model B" (with its name once revealed)."""
    st.markdown(f"> {plain(prompt)}")
    boxes = {}
    for col, side in zip(st.columns(2), ("a", "b")):
        col.markdown(f"#### Model {side.upper()}" + (f" — {plain(names[side])}" if names else ""))
        boxes[side] = col.empty()
    return boxes


if st.button("New battle", icon=":material/casino:", type="primary", key="a_new", disabled=len(pool) < 2):
    with user_errors(), st.spinner("Model A answers, then model B…"):
        settings = GenerationSettings(max_new_tokens=int(max_new), do_sample=sampling, temperature=temp,
                                      repetition_penalty=rep, no_repeat_ngram_size=int(ngram),
                                      seed=None if sampling else 0)
        boxes, texts = {}, {"a": "", "b": ""}
        # each answer appears as it is generated (model A, then model B); the names stay hidden
        for side, value in arena.battle_stream(backend.actor(), pool, prompt, settings, creator=voter, loader=loader):
            if side == "battle":
                st.session_state["a_battle"] = value["id"]
            else:
                boxes = boxes or answer_columns(prompt)  # drawn with the first piece (not for a refused prompt)
                texts[side] += value
                boxes[side].code(texts[side], language=None, wrap_lines=True)
        st.rerun()  # the stored battle, with the vote buttons

battle_id = st.session_state.get("a_battle")
if battle_id:
    with user_errors():
        battle = arena.get_battle(backend.actor(), battle_id)
        voted = battle["vote"] is not None
        boxes = answer_columns(battle["prompt"], {s: battle["model_" + s] for s in "ab"} if voted else None)
        for side, box in boxes.items():
            box.code(battle["output_" + side] or "(empty answer)", language=None, wrap_lines=True)
        if not voted:
            st.markdown("**Which answer is better?**")
            for col, (choice, label) in zip(st.columns(4), arena.VOTES.items()):
                if col.button(label, key=f"a_vote_{choice}", use_container_width=True):
                    arena.vote(backend.actor(), battle_id, choice, voter)
                    st.rerun()
        else:
            st.success(f"Vote recorded: **{arena.VOTES[battle['vote']]}**. Model A was **{plain(battle['model_a'])}**, "
                       f"model B was **{plain(battle['model_b'])}**. Start a new battle to vote again.")


def head_to_head(claims: list[dict]) -> None:
    """Per pair: who wins more often among the votes that picked a side (sign test, Wilson interval, Holm), in
    a table and in words; model names are plain text."""
    st.markdown("**Head to head** (the votes that picked a side)")
    st.dataframe(pd.DataFrame([{
        "A (more wins)": c["model_a"], "B": c["model_b"], "A wins": c["wins_a"], "B wins": c["wins_b"],
        "A's win share [95% CI] n": intervals.fmt(c["share"], c["low"], c["high"], c["decided"], digits=2),
        "ties": c["ties"], "both bad": c["both_bad"],
        "sign test p": "—" if c["p_value"] is None else f"{c['p_value']:.3g}",
        "Holm p": "—" if c["p_adjusted"] is None else f"{c['p_adjusted']:.3g}",
        "claim": ("A wins more often" if c["significant"] else "not enough votes to tell")} for c in claims]),
        hide_index=True, key="a_pairs")
    for c in claims:
        st.markdown(plain(c["verdict"]))
    st.caption("Per pair, A's wins among the decided votes (A better or B better) against a fair coin: the "
               "two-sided exact binomial (sign) test, the Wilson interval of A's win share, p-values "
               "Holm-adjusted across the pairs (family-wise error 5%). Ties and both-bad votes pick no side.")


st.divider()
st.subheader("Leaderboard")
only_pool = st.toggle("Only battles between models of the pool", bool(url_pool), key="a_only_pool")
show_permalink(permalink("views/arena.py", pool=pool if only_pool else None))
with user_errors():
    votes = arena.votes(backend.actor(), pool if only_pool else None)
    if not votes:
        st.info("No votes yet. Start a battle above and vote.")
    else:
        t0 = time.perf_counter()
        board = arena.leaderboard(backend.actor(), pool if only_pool else None, rounds=1000)
        took = time.perf_counter() - t0
        frame = pd.DataFrame([{
            "rank": r["rank"], "model": r["model"], "rating": round(r["rating"]),
            "95% CI": rating.interval_text(r),
            "battles": r["battles"], "wins": r["wins"], "ties": r["ties"], "both bad": r["both_bad"],
            "losses": r["losses"], "win rate": f"{r['win_rate']:.0%}"} for r in board])
        st.dataframe(frame, hide_index=True, key="a_board")
        st.caption(f"{len(votes)} votes · Bradley–Terry ratings on the Elo scale (mean 1000), ties and "
                   f"'both bad' count half a win each (the columns count them apart: ties are 'Tie' votes, both "
                   f"bad 'Both are bad' votes) · 1000 bootstrap resamples (a model's interval once it has "
                   f"{rating.MIN_VOTES_FOR_INTERVAL} votes) · computed in {took * 1000:.0f} ms")
        head_to_head(arena.head_to_head(backend.actor(), pool if only_pool else None))
        battles = [(v["model_a"], v["model_b"], v["vote"]) for v in votes]
        t1, t2, t3 = st.tabs(["Ratings", "Win rates", "Battle counts"])
        t1.plotly_chart(plots.leaderboard(board), key="a_fig_board")
        t2.plotly_chart(plots.win_rate_heatmap(battles), key="a_fig_win")
        t3.plotly_chart(plots.battle_counts(battles), key="a_fig_counts")
        mine = sum(v["voter"] == voter for v in votes)
        st.caption(f"You ({'signed in as ' + plain(voter) if not voter.startswith('anon-') else 'anonymous'}) cast {mine} "
                   "of these votes.")
