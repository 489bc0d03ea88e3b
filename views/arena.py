"""Arena: two models drawn from a pool answer the same prompt and follow-ups, names hidden until you vote; a
leaderboard."""
import time
import uuid

import pandas as pd
import streamlit as st

from llm_lab import capabilities
from llm_lab.compare import arena, plots, rating
from llm_lab.generation import GenerationSettings
from llm_lab.stats import intervals
from ui import backend
from ui.common import header, permalink, plain, show_permalink, user_errors

header(":material/sports_kabaddi: Arena", "Blind comparison: two models drawn at random from your pool answer the same prompt, "
       "and your follow-ups, side by side. Their names stay hidden until you vote. Votes feed a Bradley–Terry "
       "leaderboard with bootstrap confidence intervals.")


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
start = arena.first_visit(names)  # the chat model against tiny-gpt when it is installed
# a leaderboard permalink (/arena?pool=A&pool=B) names the pool its ratings were computed on
url_pool = [n for n in st.query_params.get_all("pool") if n in names]
pool = st.multiselect("Pool (each battle draws two of these)", names, default=url_pool or start["pool"], key="a_pool",
                      help="Which of the two is model A and which model B is drawn per battle and stays hidden "
                           "until you vote.")
prompt = st.text_area("Prompt", start["prompt"], key="a_prompt")
with st.expander("Generation settings"):
    s1, s2, s3 = st.columns(3)
    max_new = s1.number_input("Max new tokens", 1, 1024, start["settings"]["max_new_tokens"], key="a_max")
    sampling = s2.toggle("Sample (instead of greedy)", key="a_sample")
    temp = s3.slider("Temperature", 0.05, 2.0, 0.8, 0.05, key="a_temp", disabled=not sampling)
    s1, s2, s3 = st.columns(3)
    rep = s1.number_input("Repetition penalty", 0.5, 3.0, float(start["settings"]["repetition_penalty"]), 0.05,
                          key="a_rep", help="1 = none. Small models loop without one.")
    ngram = s2.number_input("No repeated n-gram", 0, 10, start["settings"]["no_repeat_ngram_size"], key="a_ngram",
                            help="No n-gram of this size appears twice; 0 = off.")
    raw = s3.toggle("Raw prompt", key="a_raw",
                    help="Off: a chat model reads your turns through its chat template, a model without one reads "
                         "the first prompt as it is and follow-ups as a 'user: … / assistant: …' transcript. On: "
                         "no template anywhere; each model continues the text so far.")
    system = st.text_area("System prompt", "", key="a_system", height=68, disabled=raw,
                          help="The system turn a chat model's template gets (empty: the template's own "
                               "default). Models without a template read it in the transcript of a follow-up.")
    st.caption("A battle keeps the settings it started with for all its turns.")


def quote(text: str) -> str:
    """What a user typed as a Markdown quote that shows exactly that text, line breaks included."""
    return "> " + plain(text).replace("\n", "  \n> ")


def side_headers(names: dict | None = None) -> None:
    """"Model A" / "Model B" over the two columns of answers, with the names once revealed."""
    for col, side in zip(st.columns(2), ("a", "b")):
        col.markdown(f"#### Model {side.upper()}" + (f" — {plain(names[side])}" if names else ""))


def turn_boxes(number: int, user: str) -> dict:
    """One turn: what the user wrote, then a box per side (side by side) for the answers."""
    st.caption(f"Turn {number} · you wrote")
    st.markdown(quote(user))
    return {side: col.empty() for col, side in zip(st.columns(2), ("a", "b"))}


TALL = 16  # lines: a longer answer (a small model looping on "#" lines) scrolls in a box of its own


def show(box, text: str, streaming: bool = False) -> None:
    height = 360 if text.count("\n") >= TALL else "content"
    box.code(text or ("…" if streaming else "(empty answer)"), language=None, wrap_lines=True, height=height)


def stream_turn(events, number: int, user: str, headers: bool) -> None:
    """Show a turn's answers as they are generated (model A, then model B; the names stay hidden), then
    remember the battle the stream ends with. The columns appear with the first piece (not for a refused
    prompt)."""
    boxes, texts = {}, {"a": "", "b": ""}
    for side, value in events:
        if side == "battle":
            st.session_state["a_battle"] = value["id"]
            return
        if not boxes:
            if headers:
                side_headers()
            boxes = turn_boxes(number, user)
        texts[side] += value
        show(boxes[side], texts[side], streaming=True)


if st.button("New battle", icon=":material/casino:", type="primary", key="a_new", disabled=len(pool) < 2):
    with user_errors(), st.spinner("Model A answers, then model B…"):
        settings = GenerationSettings(max_new_tokens=int(max_new), do_sample=sampling, temperature=temp,
                                      repetition_penalty=rep, no_repeat_ngram_size=int(ngram),
                                      seed=None if sampling else 0, chat=not raw, system="" if raw else system)
        stream_turn(arena.battle_stream(backend.actor(), pool, prompt, settings, creator=voter, loader=loader),
                    1, prompt, headers=True)
        st.rerun()  # the stored battle, with the vote buttons and the follow-up box


def show_battle(battle: dict) -> None:
    """The stored battle: every turn side by side, then (before the vote) the vote buttons and a follow-up
    box; after it, the names."""
    voted = battle["vote"] is not None
    side_headers({s: battle["model_" + s] for s in "ab"} if voted else None)
    for number, turn in enumerate(battle["conversation"], 1):
        for side, box in turn_boxes(number, turn["user"]).items():
            show(box, turn[side])
    if voted:
        seen = battle["voted_turns"] or battle["turns"]
        st.success(f"Vote recorded after {seen} turn{'s' if seen != 1 else ''}: **{arena.VOTES[battle['vote']]}**. "
                   f"Model A was **{plain(battle['model_a'])}**, model B was **{plain(battle['model_b'])}**. Start "
                   "a new battle to vote again.")
        return
    next_turn = st.container()  # a follow-up's answers appear here, under the turns before it
    st.markdown("**Which answer is better?**")
    st.caption("Vote now or after more turns: the vote judges the whole conversation so far and ends the battle.")
    for col, (choice, label) in zip(st.columns(4), arena.VOTES.items()):
        if col.button(label, key=f"a_vote_{choice}", use_container_width=True):
            arena.vote(backend.actor(), battle["id"], choice, voter, turns=battle["turns"])
            st.rerun()
    with st.form("a_follow_form", clear_on_submit=True, border=False):
        follow = st.text_area("Follow-up (both models answer, each after its own conversation so far)",
                              key="a_follow", height=68)
        sent = st.form_submit_button("Send to both", icon=":material/send:", key="a_send")
    if sent:
        with next_turn, st.spinner("Model A answers, then model B…"):
            stream_turn(arena.turn_stream(backend.actor(), battle["id"], follow, loader=loader),
                        battle["turns"] + 1, follow, headers=False)
        st.rerun()


battle_id = st.session_state.get("a_battle")
if battle_id:
    with user_errors():
        show_battle(arena.get_battle(backend.actor(), battle_id))


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
