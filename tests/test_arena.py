"""Arena: Bradley–Terry ratings (against hand-computed cases and scikit-learn), bootstrap, battles and votes."""
import math
import random

import numpy as np
import pytest

from llm_lab import generation as G
from llm_lab import inference, registry, store
from llm_lab.access import LOCAL
from llm_lab.compare import arena, rating
from llm_lab.errors import LabError


def elo_gap(p: float) -> float:
    """Rating gap at which the stronger side wins with probability p."""
    return 400 * math.log10(p / (1 - p))


# ---------------------------------------------------------------- ratings
def test_two_models_hand_computed():
    # A beats B 3 times out of 4: the MLE win probability is 3/4, a gap of 400*log10(3) = 190.85 points
    r = rating.bradley_terry([("A", "B", "a")] * 2 + [("B", "A", "b")] + [("A", "B", "b")], l2=0)
    assert r["A"] - r["B"] == pytest.approx(elo_gap(0.75), abs=1e-6)
    assert r["A"] + r["B"] == pytest.approx(2000)  # centred on 1000


def test_ties_count_half():
    # 1 win + 2 ties for A = 2 wins for A, 1 for B -> p = 2/3
    with_ties = rating.bradley_terry([("A", "B", "a"), ("A", "B", "tie"), ("B", "A", "tie")], l2=0)
    assert with_ties["A"] - with_ties["B"] == pytest.approx(elo_gap(2 / 3), abs=1e-6)
    only_ties = rating.bradley_terry([("A", "B", "tie"), ("A", "B", "both_bad")], l2=0)
    assert only_ties["A"] == pytest.approx(only_ties["B"])


def test_three_models_transitive_case():
    # A beats B 2:1 and B beats C 2:1 with no A-C games: the MLE gaps are log-odds ln 2 each
    battles = [("A", "B", "a")] * 2 + [("A", "B", "b")] + [("B", "C", "a")] * 2 + [("B", "C", "b")]
    r = rating.bradley_terry(battles, l2=0)
    assert r["A"] - r["B"] == pytest.approx(elo_gap(2 / 3), abs=1e-6)
    assert r["B"] - r["C"] == pytest.approx(elo_gap(2 / 3), abs=1e-6)


def _random_battles(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    models, strength = list("ABCDEF"), np.linspace(-1.2, 1.2, 6)
    out = []
    for _ in range(n):
        i, j = rng.choice(6, 2, replace=False)
        p = 1 / (1 + np.exp(-(strength[i] - strength[j])))
        out.append((models[i], models[j], "tie" if rng.random() < 0.15 else ("a" if rng.random() < p else "b")))
    return out


def test_matches_sklearn_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    battles = _random_battles()
    models, a, b, s = rating.encode(battles)
    X = np.zeros((len(s), len(models)))
    X[np.arange(len(s)), a], X[np.arange(len(s)), b] = 1, -1
    # ties as two half-weighted games, one won by each side
    Xd, y, w = np.vstack([X, X]), np.r_[np.ones(len(s)), np.zeros(len(s))], np.r_[s, 1 - s]
    lam = 0.3
    coef = LogisticRegression(fit_intercept=False, C=1 / lam, tol=1e-12, max_iter=10_000).fit(Xd, y, sample_weight=w).coef_[0]
    ours = rating.fit_strengths(rating.win_matrix(a, b, s, len(models)), l2=lam)
    assert ours == pytest.approx(coef - coef.mean(), abs=1e-5)
    elo = rating.bradley_terry(battles, l2=lam)
    assert [elo[m] for m in models] == pytest.approx((1000 + 400 / math.log(10) * (coef - coef.mean())).tolist(), abs=1e-3)
    # the fitted order recovers the true strengths
    assert sorted(elo, key=elo.get) == list("ABCDEF")


def test_bootstrap_and_leaderboard():
    battles = _random_battles(2000)
    models, samples = rating.bootstrap(battles, rounds=400, seed=1)
    assert samples.shape == (400, 6)
    _, again = rating.bootstrap(battles, rounds=400, seed=1)
    assert np.array_equal(samples, again)  # seeded: reproducible
    board = rating.leaderboard(battles, rounds=400)
    assert [r["model"] for r in board] == list("FEDCBA")
    for row in board:
        assert row["ci_low"] < row["rating"] < row["ci_high"]
        assert row["wins"] + row["ties"] + row["both_bad"] + row["losses"] == row["battles"]
    assert sum(r["battles"] for r in board) == 2 * len(battles)
    assert board[0]["rank"] == 1
    names, rate, counts = rating.pair_matrices(battles)
    off = ~np.eye(len(names), dtype=bool)
    assert np.allclose((rate + rate.T)[off], 1) and np.isnan(np.diag(rate)).all()
    assert counts.sum() == 2 * len(battles)


def test_too_few_votes_give_no_interval():
    """One vote used to give an interval of "+0 / +0" (every resample is that one vote): below
    MIN_VOTES_FOR_INTERVAL a model's interval is None, shown as "not enough votes", and it ranks first
    with everyone else it cannot be told apart from."""
    need = rating.MIN_VOTES_FOR_INTERVAL
    assert need > 1
    one = rating.leaderboard([("A", "B", "a")], rounds=200)
    assert [(r["model"], r["ci_low"], r["ci_high"], r["rank"]) for r in one] == [("A", None, None, 1), ("B", None, None, 1)]
    assert one[0]["rating"] > one[1]["rating"]  # the rating itself is still given
    assert {rating.interval_text(r) for r in one} == {"not enough votes"}
    # A plays `need` battles (3 of them with C), B and C fewer: only A gets an interval, and it is the
    # percentile interval of the bootstrap ratings
    battles = [("A", "B", "a"), ("B", "A", "a"), ("A", "B", "tie")] * ((need - 3) // 3 + 1)
    battles = battles[:need - 3] + [("A", "C", "a"), ("C", "A", "a"), ("A", "C", "b")]
    board = {r["model"]: r for r in rating.leaderboard(battles, rounds=300, seed=4)}
    assert [board[m]["battles"] for m in "ABC"] == [need, need - 3, 3]
    models, samples = rating.bootstrap(battles, sorted("ABC"), rounds=300, seed=4)
    lo, hi = np.quantile(samples[:, models.index("A")], [0.025, 0.975])
    assert (board["A"]["ci_low"], board["A"]["ci_high"]) == pytest.approx((lo, hi))
    assert board["A"]["ci_low"] < board["A"]["rating"] < board["A"]["ci_high"]
    assert rating.interval_text(board["A"]) == f"{lo - board['A']['rating']:+.0f} / {hi - board['A']['rating']:+.0f}"
    assert board["B"]["ci_low"] is None and board["C"]["ci_high"] is None
    assert all(r["rank"] == 1 for r in board.values())
    assert rating.has_interval(need) and not rating.has_interval(need - 1)


def test_bootstrap_resample_is_a_real_resample():
    """The multinomial-count bootstrap fits exactly what refitting a resampled battle list gives."""
    battles = _random_battles(300, seed=3)
    models, a, b, s = rating.encode(battles)
    rng = np.random.default_rng(0)
    pick = rng.integers(0, len(battles), len(battles))
    direct = rating.bradley_terry([battles[i] for i in pick], models=models)
    counts = np.bincount(pick, minlength=len(battles)).astype(float)
    weighted = rating.to_elo(rating.fit_strengths(rating.win_matrix(a, b, s, len(models), weights=counts)))
    assert [direct[m] for m in models] == pytest.approx(weighted.tolist(), abs=1e-6)


# ---------------------------------------------------------------- battles and votes
@pytest.fixture
def pool(tiny_gpt2, tmp_path):
    """Two registered causal LMs (the same weights under two names) and one registered classifier."""
    from llm_lab.registry import ModelEntry

    registry.register(LOCAL, ModelEntry("arena-a", "local", str(tiny_gpt2), "causal-lm"))
    registry.register(LOCAL, ModelEntry("arena-b", "local", str(tiny_gpt2), "causal-lm"))
    return ["arena-a", "arena-b"]


def test_draw_pair():
    with pytest.raises(LabError, match="at least two"):
        arena.draw_pair(["x", "x"])
    rng = random.Random(0)
    pairs = {arena.draw_pair(["x", "y", "z"], rng) for _ in range(100)}
    assert all(a != b for a, b in pairs) and len(pairs) == 6  # every ordered pair appears


def test_battle_vote_once(pool):
    settings = G.GenerationSettings(max_new_tokens=5)
    battle = arena.new_battle(LOCAL, pool, "def foo(x):", settings, creator="anon-1", rng=random.Random(1))
    assert {battle["model_a"], battle["model_b"]} == set(pool)
    assert battle["output_a"] == battle["output_b"]  # same weights, greedy: same answer
    stored = arena.get_battle(LOCAL, battle["id"])
    assert stored["vote"] is None and stored["prompt"] == "def foo(x):"
    with pytest.raises(LabError, match="Unknown vote"):
        arena.vote(LOCAL, battle["id"], "A!!", "anon-1")
    revealed = arena.vote(LOCAL, battle["id"], "a", "anon-1")
    assert revealed["vote"] == "a" and revealed["voter"] == "anon-1"
    with pytest.raises(LabError, match="voted on already"):
        arena.vote(LOCAL, battle["id"], "b", "someone-else")
    assert arena.get_battle(LOCAL, battle["id"])["vote"] == "a"  # the first vote stands
    with pytest.raises(LabError, match="No arena battle"):
        arena.vote(LOCAL, "missing", "a", "anon-1")
    with pytest.raises(LabError, match="empty"):
        arena.new_battle(LOCAL, pool, "   ", settings)


@pytest.fixture(scope="module")
def gpt_b(tiny_gpt2, tmp_path_factory):
    """The tiny GPT-2 with other weights (a model that answers differently)."""
    from transformers import GPT2LMHeadModel

    from tests.test_compare import _perturbed

    return _perturbed(tiny_gpt2, tmp_path_factory.mktemp("m") / "gpt-b", GPT2LMHeadModel)


def test_battle_stream_yields_each_answer_as_it_is_generated(tiny_gpt2, gpt_b):
    """The Arena page shows the answers as they come: model A's pieces, then model B's, then the stored
    battle; each side's pieces join into the answer a non-streamed greedy run gives."""
    from llm_lab.registry import ModelEntry

    registry.register(LOCAL, ModelEntry("stream-x", "local", str(tiny_gpt2), "causal-lm"))
    registry.register(LOCAL, ModelEntry("stream-y", "local", str(gpt_b), "causal-lm"))
    settings, prompt = G.GenerationSettings(max_new_tokens=12), "The built-in function"
    events = list(arena.battle_stream(LOCAL, ["stream-x", "stream-y"], prompt, settings, rng=random.Random(2)))
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "battle" and kinds[:-1] == sorted(kinds[:-1]) and set(kinds[:-1]) == {"a", "b"}
    battle = events[-1][1]
    stored = arena.get_battle(LOCAL, battle["id"])
    for side in "ab":
        pieces = [value for kind, value in events if kind == side]
        assert len(pieces) > 1 and all(isinstance(p, str) for p in pieces)  # in pieces, as generated
        direct = inference.generate(registry.load(LOCAL, battle["model_" + side], head="causal-lm"), [prompt], settings)[0]
        assert "".join(pieces) == direct.text == battle["output_" + side] == stored["output_" + side]
        assert stored["stats"][side]["new_tokens"] == direct.new_tokens
    assert battle["output_a"] != battle["output_b"]  # two different models answered


def test_leaderboard_from_votes(pool):
    settings = G.GenerationSettings(max_new_tokens=2)
    rng = random.Random(5)
    expected = []
    for choice in ["a", "b", "a", "tie", "both_bad", "a"]:
        battle = arena.new_battle(LOCAL, pool, "x = 1", settings, rng=rng)
        arena.vote(LOCAL, battle["id"], choice, "user@example.com")
        expected.append((battle["model_a"], battle["model_b"], choice))
    assert len({(a, b) for a, b, _ in expected}) == 2  # seeded: both orders (A, B) are drawn
    rows = arena.votes(LOCAL)
    assert [(r["model_a"], r["model_b"], r["vote"]) for r in rows] == expected
    board = arena.leaderboard(LOCAL, rounds=200)
    direct = rating.bradley_terry(expected)
    assert {r["model"]: r["rating"] for r in board} == pytest.approx(direct)
    assert sum(r["both_bad"] for r in board) == 2  # one both-bad vote, counted for both models
    assert sum(r["ties"] for r in board) == 2  # one tie vote, counted for both models; both-bad is not a tie
    claims = arena.head_to_head(LOCAL)
    assert len(claims) == 1 and claims[0]["ties"] == 1 and claims[0]["both_bad"] == 1
    assert claims[0]["decided"] == 4 and claims[0]["wins_a"] + claims[0]["wins_b"] == 4
    assert arena.leaderboard(LOCAL, pool=["arena-a", "other"]) == []


def test_failing_model_drops_battle(pool, tiny_bert):
    from llm_lab.registry import ModelEntry

    registry.register(LOCAL, ModelEntry("arena-clf", "local", str(tiny_bert), "classifier"))
    three = ["arena-a", "arena-b", "arena-clf"]
    drawn, kept, dropped = [], [], []
    for seed in range(12):  # seeded draws: every pair comes up, with and without the classifier
        pair = arena.draw_pair(three, random.Random(seed))  # what new_battle draws with the same seed
        drawn.append(pair)
        try:
            battle = arena.new_battle(LOCAL, three, "hi", G.GenerationSettings(max_new_tokens=2), rng=random.Random(seed))
        except LabError as exc:
            assert "arena-clf" in pair, (pair, exc)  # only battles with the classifier fail
            side = "A" if pair[0] == "arena-clf" else "B"
            assert f"Model {side} could not answer" in str(exc) and "dropped" in str(exc)
            dropped.append(pair)
        else:
            assert "arena-clf" not in pair and (battle["model_a"], battle["model_b"]) == pair
            kept.append(battle["id"])
    assert len(set(drawn)) > 2 and {p[0] for p in drawn} == set(three)  # the draws vary, order included
    assert dropped and kept and len(dropped) + len(kept) == len(drawn)
    assert {p for p in dropped if p[0] == "arena-clf"} and {p for p in dropped if p[1] == "arena-clf"}
    stored = [r["id"] for r in store.query("SELECT id FROM arena_battles")]
    assert sorted(stored) == sorted(kept)  # dropped battles leave nothing behind


def test_dropped_battle_does_not_reveal_the_failing_model(pool, tiny_bert):
    from llm_lab.registry import ModelEntry

    registry.register(LOCAL, ModelEntry("arena-clf", "local", str(tiny_bert), "classifier"))
    with pytest.raises(LabError, match="could not answer") as info:
        arena.new_battle(LOCAL, ["arena-a", "arena-clf"], "hi", G.GenerationSettings(max_new_tokens=2), rng=random.Random(0))
    assert "arena-clf" not in str(info.value)


# ---------------------------------------------------------------- ties apart from both-bad; head to head
def test_ties_and_both_bad_are_counted_apart():
    battles = [("A", "B", "a"), ("A", "B", "tie"), ("B", "A", "tie"), ("A", "B", "both_bad"), ("B", "A", "b")]
    rows = {r["model"]: r for r in rating.leaderboard(battles, rounds=50)}
    assert (rows["A"]["wins"], rows["A"]["ties"], rows["A"]["both_bad"], rows["A"]["losses"]) == (2, 2, 1, 0)
    assert (rows["B"]["wins"], rows["B"]["ties"], rows["B"]["both_bad"], rows["B"]["losses"]) == (0, 2, 1, 2)
    # the rating still counts both as half a win each: 2 + 1.5 of 5 for A
    assert rows["A"]["win_rate"] == pytest.approx(3.5 / 5)


def _wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval by its formula (independent of scipy's proportion_ci)."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def test_head_to_head_against_scipy_and_statsmodels():
    from scipy.stats import binomtest
    from statsmodels.stats.multitest import multipletests

    battles = ([("A", "B", "a")] * 10 + [("B", "A", "a")] * 4 + [("B", "A", "b")] * 4 + [("A", "B", "b")] * 2
               + [("A", "B", "tie")] * 3 + [("B", "A", "both_bad")] * 2      # A 14, B 6 of 20 decided
               + [("A", "C", "a")] * 30 + [("C", "A", "a")] * 3                # A 30, C 3
               + [("B", "C", "b")] * 9 + [("B", "C", "a")] * 11                # B 11, C 9
               + [("C", "D", "tie")] * 2)                                      # none decided
    claims = {(c["model_a"], c["model_b"]): c for c in rating.pair_claims(battles)}
    assert set(claims) == {("A", "B"), ("A", "C"), ("B", "C"), ("C", "D")}
    expected = {("A", "B"): (14, 20, 3, 2), ("A", "C"): (30, 33, 0, 0), ("B", "C"): (11, 20, 0, 0)}
    for key, (k, n, ties, both_bad) in expected.items():
        c = claims[key]
        assert (c["wins_a"], c["decided"], c["wins_b"], c["ties"], c["both_bad"]) == (k, n, n - k, ties, both_bad)
        assert c["p_value"] == pytest.approx(binomtest(k, n, 0.5, alternative="two-sided").pvalue, rel=1e-12)
        assert (c["low"], c["high"]) == pytest.approx(_wilson(k, n), abs=1e-9)
    keys = list(expected)
    holm = multipletests([claims[k]["p_value"] for k in keys], method="holm")[1]
    assert [claims[k]["p_adjusted"] for k in keys] == pytest.approx(list(holm), rel=1e-12)
    assert claims[("A", "C")]["significant"] and not claims[("A", "B")]["significant"]
    assert claims[("A", "C")]["verdict"].startswith("A wins more often than C: 30 of 33 decided votes, 95% CI 0.76–0.97")
    ab = claims[("A", "B")]["verdict"]
    assert ab.startswith("Not enough votes to tell A and B apart: A won 14 of 20 decided votes, 95% CI 0.48–0.85; "
                         f"sign test p = {binomtest(14, 20).pvalue:.3g}, Holm-adjusted")
    assert "3 ties and 2 both bad" in ab
    cd = claims[("C", "D")]
    assert cd["p_value"] is None and cd["p_adjusted"] is None and not cd["significant"]
    assert cd["verdict"].startswith("Not enough votes to tell C and D apart: no vote picked either")
    bh = {(c["model_a"], c["model_b"]): c for c in rating.pair_claims(battles, adjust="bh")}
    ref = multipletests([claims[k]["p_value"] for k in keys], method="fdr_bh")[1]
    assert [bh[k]["p_adjusted"] for k in keys] == pytest.approx(list(ref), rel=1e-12)


def test_decided_votes_needed_detects_at_the_planned_power():
    """At the returned number of decided votes, a model winning 70% is called in about 80% of simulated arenas."""
    from scipy.stats import binom, binomtest

    n = rating.decided_votes_needed(0.7)
    assert rating.decided_votes_needed(0.5) is None
    reject = [k for k in range(n + 1) if binomtest(k, n, 0.5).pvalue < 0.05]
    power = binom.pmf(reject, n, 0.7).sum()  # exact power of the two-sided sign test at n
    assert 0.75 <= power <= 0.9, (n, power)


def _plant(battles):
    """Battles and votes stored directly (no generation): one voter per battle."""
    from llm_lab.access import scope

    for i, (a, b, vote) in enumerate(battles):
        bid = f"planted{i:04d}"
        scope(LOCAL).insert("arena_battles", dict(id=bid, created_at=store.now(), pool=store.to_json([a, b]),
                                                  model_a=a, model_b=b, prompt="p", output_a="x", output_b="y",
                                                  stats="{}", settings="{}", creator=""), action="vote")
        scope(LOCAL).insert("arena_votes", dict(battle_id=bid, vote=vote, voter="v", created_at=store.now()),
                            action="vote")


def test_arena_page_shows_ties_apart_and_the_head_to_head(pool):
    from tests.conftest import app_test, no_exceptions

    _plant([("arena-a", "arena-b", "a")] * 18 + [("arena-b", "arena-a", "a")] * 2
           + [("arena-a", "arena-b", "tie")] * 3 + [("arena-a", "arena-b", "both_bad")] * 4)
    at = app_test("views/arena.py").run()
    no_exceptions(at)
    board = at.dataframe[0].value.set_index("model")
    assert board.loc["arena-a", "ties"] == 3 and board.loc["arena-a", "both bad"] == 4
    assert board.loc["arena-a", "wins"] == 18 and board.loc["arena-a", "losses"] == 2
    pairs = at.dataframe[1].value
    row = pairs.iloc[0]
    assert (row["A (more wins)"], row["B"], row["A wins"], row["B wins"]) == ("arena-a", "arena-b", 18, 2)
    low, high = _wilson(18, 20)
    assert row["A's win share [95% CI] n"] == f"0.90 [{low:.2f}, {high:.2f}] n=20"
    assert row["claim"] == "A wins more often"
    said = " ".join(m.value for m in at.markdown).replace("\\", "")  # plain() escapes Markdown's characters
    assert "arena-a wins more often than arena-b: 18 of 20 decided votes, 95% CI 0.70–0.97; sign test p = " in said


# ---------------------------------------------------------------- battles of several turns
@pytest.fixture
def chat_pair(tiny_gpt2, tmp_path):
    """A chat model (the tiny llama GGUF with a ChatML template) and a base GPT without a template."""
    from llm_lab.registry import ModelEntry
    from tests.gguf_tiny import write_tiny_llama

    gguf_file = write_tiny_llama(tmp_path / "chat" / "tiny-chat.gguf")["path"]
    registry.register(LOCAL, ModelEntry("mt-chat", "local", str(gguf_file), "causal-lm"))
    registry.register(LOCAL, ModelEntry("mt-base", "local", str(tiny_gpt2), "causal-lm"))
    return ["mt-chat", "mt-base"]


@pytest.fixture
def seen_prompts(monkeypatch):
    """Every (model name, prompt) the arena hands to `inference.stream`, in order."""
    seen = []
    real = inference.stream

    def recording(loaded, prompt, settings=None, **kw):
        seen.append((loaded.entry.name, prompt))
        return real(loaded, prompt, settings, **kw)

    monkeypatch.setattr(inference, "stream", recording)
    return seen


def _load(name):
    return registry.load(LOCAL, name, head="causal-lm")


def test_a_follow_up_gives_each_model_its_own_conversation(chat_pair, seen_prompts):
    """Turn 2: each model reads the first prompt, ITS OWN first answer and the follow-up (the chat model
    through its ChatML template, the base GPT as a transcript); the answers are what `inference.generate`
    writes for those conversations; the stored battle and the vote keep both turns."""
    from llm_lab.inference import chat

    settings = G.GenerationSettings(max_new_tokens=8)
    first, second = "Hello world", "hi the user"
    battle = arena.new_battle(LOCAL, chat_pair, first, settings, creator="anon-1", rng=random.Random(0))
    assert battle["turns"] == 1 and battle["conversation"][0]["user"] == first
    by_model = {battle["model_" + s]: s for s in "ab"}
    one = battle["conversation"][0]
    for side in "ab":  # the first turn is the prompt itself, as Compare sends it
        assert one[side] == inference.generate(_load(battle["model_" + side]), [first], settings)[0].text
    assert one["a"] != one["b"] and one["a"].strip() and one["b"].strip()  # two different, non-empty answers
    assert [p for _, p in seen_prompts] == [first, first]

    seen_prompts.clear()
    battle = arena.follow_up(LOCAL, battle["id"], second)
    assert battle["turns"] == 2 and battle["vote"] is None
    for name, prompt in seen_prompts:
        own, other = one[by_model[name]], one["ab".replace(by_model[name], "")]
        assert prompt == [{"role": "user", "content": first}, {"role": "assistant", "content": own},
                          {"role": "user", "content": second}]
        read = chat.prompt_text(_load(name), prompt, settings)
        if name == "mt-chat":  # ChatML, written out here by hand
            assert read == (f"<|im_start|>user\n{first}<|im_end|>\n<|im_start|>assistant\n{own}<|im_end|>\n"
                            f"<|im_start|>user\n{second}<|im_end|>\n<|im_start|>assistant\n")
        else:
            assert read == f"user: {first}\nassistant: {own}\nuser: {second}\nassistant:"
        assert other not in read
        side = by_model[name]
        assert battle["conversation"][1][side] == inference.generate(_load(name), [prompt], settings)[0].text
    assert [n for n, _ in seen_prompts] == [battle["model_a"], battle["model_b"]]  # A answers, then B
    two = battle["conversation"][1]
    assert two["user"] == second and set(two["stats"]) == {"a", "b"}
    assert two["stats"]["a"]["new_tokens"] >= 1

    revealed = arena.vote(LOCAL, battle["id"], "b", "anon-1")
    assert revealed["voted_turns"] == 2
    (row,) = arena.votes(LOCAL, conversations=True)
    assert row["turns"] == 2 and row["prompt"] == first
    assert [(t["user"], t["a"], t["b"]) for t in row["conversation"]] == [
        (first, one["a"], one["b"]), (second, two["a"], two["b"])]
    stored = store.query_one("SELECT prompt, output_a, output_b FROM arena_battles WHERE id=?", (battle["id"],))
    assert (stored["prompt"], stored["output_a"], stored["output_b"]) == (first, one["a"], one["b"])  # as before
    with pytest.raises(LabError, match="ended it"):
        arena.follow_up(LOCAL, battle["id"], "one more")


def test_raw_prompt_battle_continues_the_text_so_far(chat_pair, seen_prompts):
    """Raw prompt: no template; from turn 2 each model continues its own text: prompt, own answer, new line,
    follow-up. The system prompt of a chat battle reaches the chat model's template."""
    raw = G.GenerationSettings(max_new_tokens=6, chat=False)
    battle = arena.new_battle(LOCAL, chat_pair, "Hello", raw, rng=random.Random(1))
    seen_prompts.clear()
    battle = arena.follow_up(LOCAL, battle["id"], " world")
    one = battle["conversation"][0]
    assert dict(seen_prompts) == {battle["model_" + s]: "Hello" + one[s] + "\n world" for s in "ab"}
    for side in "ab":
        text = dict(seen_prompts)[battle["model_" + side]]
        assert battle["conversation"][1][side] == inference.generate(_load(battle["model_" + side]), [text], raw)[0].text
    assert battle["settings"]["chat"] is False

    from llm_lab.inference import chat

    system = G.GenerationSettings(max_new_tokens=4, system="Be brief.")
    battle = arena.new_battle(LOCAL, chat_pair, "Hello", system, rng=random.Random(1))
    seen_prompts.clear()
    arena.follow_up(LOCAL, battle["id"], "hi")
    (conversation,) = [p for n, p in seen_prompts if n == "mt-chat"]
    assert chat.prompt_text(_load("mt-chat"), conversation, system).startswith(
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHello<|im_end|>")


def test_follow_up_refusals_and_a_failing_side_keep_the_battle(chat_pair):
    from llm_lab.access import Actor

    settings = G.GenerationSettings(max_new_tokens=3)
    battle = arena.new_battle(LOCAL, chat_pair, "Hello", settings, rng=random.Random(0))
    with pytest.raises(LabError, match="follow-up is empty"):
        arena.follow_up(LOCAL, battle["id"], "  \n")
    with pytest.raises(LabError, match="No arena battle"):
        arena.follow_up(LOCAL, "missing", "hi")
    other = Actor("eve@example.com", "editor", "default", ("default",))
    with pytest.raises(LabError, match="Only the person who started"):
        arena.follow_up(other, battle["id"], "hi")

    def failing_b(name, head):  # model B's second load fails, naming it
        if name == battle["model_b"]:
            raise LabError(f"{name} is gone")
        return registry.load(LOCAL, name, head=head)

    with pytest.raises(arena.ArenaError, match="Model B could not answer, so this turn was dropped") as info:
        arena.follow_up(LOCAL, battle["id"], "hi", loader=failing_b)
    assert battle["model_b"] not in str(info.value) and "model B is gone" in str(info.value)
    kept = arena.get_battle(LOCAL, battle["id"])
    assert kept["turns"] == 1 and kept["conversation"] == battle["conversation"]
    with pytest.raises(LabError, match="1 to 1 turns"):
        arena.vote(LOCAL, battle["id"], "a", "anon-1", turns=2)
    assert arena.vote(LOCAL, battle["id"], "a", "anon-1", turns=1)["voted_turns"] == 1


def test_votes_from_before_several_turns_still_load(lab_home):
    """A database at the schema before this change (no conversation column, no turns on votes): its battle
    reads as one turn, its vote as judging one turn, and the leaderboard counts it."""
    import sqlite3

    migrations = store._SCHEMAS["arena"]
    before = len(migrations) - 1
    lab_home.mkdir(parents=True, exist_ok=True)
    store.reset_connections()
    conn = sqlite3.connect(lab_home / "llm_lab.db")
    conn.execute("CREATE TABLE schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
    for sql in migrations[:before]:
        for statement in store.statements(sql):
            conn.execute(statement)
    conn.execute("INSERT INTO schema_versions VALUES ('arena', ?)", (before,))
    conn.execute("INSERT INTO arena_battles (id, created_at, pool, model_a, model_b, prompt, output_a, output_b, "
                 "stats, settings, creator) VALUES ('old', 1.0, '[\"m1\",\"m2\"]', 'm1', 'm2', 'hi', 'x', 'y', "
                 "'{\"a\": {\"new_tokens\": 1}}', '{}', '')")
    conn.execute("INSERT INTO arena_votes (battle_id, vote, voter, created_at) VALUES ('old', 'a', 'anon-x', 2.0)")
    conn.commit()
    conn.close()
    store._migrated.clear()
    (old,) = arena.votes(LOCAL, conversations=True)
    assert (old["vote"], old["turns"], old["prompt"]) == ("a", 1, "hi")
    assert old["conversation"] == [{"user": "hi", "a": "x", "b": "y", "stats": {"a": {"new_tokens": 1}}}]
    battle = arena.get_battle(LOCAL, "old")
    assert battle["turns"] == 1 and battle["voted_turns"] == 1 and battle["stats"] == {"a": {"new_tokens": 1}}
    assert [r["model"] for r in arena.leaderboard(LOCAL, rounds=10)] == ["m1", "m2"]


# ---------------------------------------------------------------- first visit: a pair that differs visibly
def test_first_visit_pits_the_chat_model_against_tiny_gpt(monkeypatch):
    from llm_lab.generation_defaults import SUGGESTED

    names = ["tiny-gpt", "small-gpt", registry.CHAT_MODEL, "mine"]
    monkeypatch.setattr(registry, "chat_model_missing", lambda: None)
    start = arena.first_visit(names)
    assert start["pool"] == [registry.CHAT_MODEL, "tiny-gpt"] and start["prompt"].endswith("?")
    assert start["settings"]["repetition_penalty"] == 1.1 and start["settings"]["no_repeat_ngram_size"] == 0
    assert arena.first_visit(["tiny-gpt", "small-gpt"])["pool"] == ["tiny-gpt", "small-gpt"]  # one is missing
    monkeypatch.setattr(registry, "chat_model_missing", lambda: "pip install …")
    start = arena.first_visit(names)
    assert start["pool"] == names and start["settings"] == SUGGESTED  # today's default: every model


def test_arena_page_first_visit_default_pair(chat_model_file):
    from tests.conftest import app_test, no_exceptions

    at = app_test("views/arena.py").run()
    no_exceptions(at)
    assert at.multiselect(key="a_pool").value == [registry.CHAT_MODEL, "tiny-gpt"]
    assert at.number_input(key="a_rep").value == 1.1 and at.toggle(key="a_raw").value is False


def test_arena_page_two_turns_then_vote(chat_pair):
    """The page: a battle, a follow-up, both turns shown side by side without names; the vote reveals them
    and stores both turns."""
    from tests.conftest import app_test, no_exceptions

    at = app_test("views/arena.py").run()
    at.multiselect(key="a_pool").set_value(chat_pair)
    at.text_area(key="a_prompt").set_value("Hello *world*")
    at.number_input(key="a_max").set_value(4)
    at.button(key="a_new").click().run()
    no_exceptions(at)
    at.text_area(key="a_follow").set_value("hi [the](http://x.y) user")
    at.button(key="a_send").click().run()
    no_exceptions(at)
    shown = " ".join(m.value for m in at.markdown)
    assert "Turn 2" in " ".join(c.value for c in at.caption)
    assert "Hello \\*world\\*" in shown and "\\[the\\]" in shown  # what the user typed, as plain text
    assert not any(n in shown for n in chat_pair)  # names hidden before the vote
    (battle,) = [r for r in store.query("SELECT id FROM arena_battles")]
    stored = arena.get_battle(LOCAL, battle["id"])
    assert stored["turns"] == 2 and stored["conversation"][1]["user"] == "hi [the](http://x.y) user"
    answers = [c.value for c in at.code]
    for turn in stored["conversation"]:
        assert (turn["a"] or "(empty answer)") in answers and (turn["b"] or "(empty answer)") in answers
    at.button(key="a_vote_a").click().run()
    no_exceptions(at)
    assert "after 2 turns" in at.success[0].value and all(n in at.success[0].value for n in chat_pair)
    (vote,) = arena.votes(LOCAL)
    assert vote["turns"] == 2 and vote["vote"] == "a"
    assert not [b for b in at.button if b.key in ("a_send", "a_vote_a")]  # the battle is over


def test_a_turn_sent_from_two_tabs_at_once_is_not_lost(chat_pair):
    """The second tab's turn, made from the conversation before the first tab's turn landed, is refused instead
    of overwriting it."""
    settings = G.GenerationSettings(max_new_tokens=3)
    battle = arena.new_battle(LOCAL, chat_pair, "Hello", settings, rng=random.Random(0))

    def loader_that_lets_the_other_tab_in(name, head):
        if name == battle["model_a"] and not done:
            done.append(arena.follow_up(LOCAL, battle["id"], "first tab"))  # lands while this tab generates
        return registry.load(LOCAL, name, head=head)

    done = []
    with pytest.raises(arena.ArenaError, match="changed while the models answered"):
        arena.follow_up(LOCAL, battle["id"], "second tab", loader=loader_that_lets_the_other_tab_in)
    kept = arena.get_battle(LOCAL, battle["id"])
    assert kept["turns"] == 2 and kept["conversation"][-1]["user"] == "first tab"


def test_a_battle_stored_before_chat_templates_goes_on_raw(chat_pair):
    from llm_lab import store
    from llm_lab.access import scope

    settings = G.GenerationSettings(max_new_tokens=3)
    battle = arena.new_battle(LOCAL, chat_pair, "Hello", settings, rng=random.Random(0))
    old = {k: v for k, v in settings.as_dict().items() if k not in ("chat", "system")}  # as stored then
    scope(LOCAL).update("arena_battles", {"settings": store.to_json(old)}, "id=?", (battle["id"],))
    seen = []

    def spy(name, head):
        loaded = registry.load(LOCAL, name, head=head)
        seen.append(name)
        return loaded

    original = arena.model_prompt
    raws = []
    arena.model_prompt = lambda *a, raw=False, **k: (raws.append(raw), original(*a, raw=raw, **k))[1]
    try:
        arena.follow_up(LOCAL, battle["id"], "more", loader=spy)
    finally:
        arena.model_prompt = original
    assert raws == [True, True]
