"""Bradley–Terry ratings on the Elo scale, with bootstrap confidence intervals, vectorised.

A battle between `a` and `b` ends "a" (a better), "b" (b better), "tie" or "both_bad".
Ties and both-bad count as half a win for each side (as Chatbot Arena does). The model
P(a beats b) = 1 / (1 + 10 ** ((R_b - R_a) / 400)) is fitted by maximum likelihood
(logistic regression without intercept; an L2 penalty of 1 on the natural-log strengths,
i.e. a Gaussian prior with sd ~174 Elo points, keeps unbeaten models finite and a single
vote from moving a rating by hundreds of points; with hundreds of votes it hardly matters), solved with Newton's method on the pair-count matrix — so the cost depends on
the number of models, not of votes. The bootstrap resamples battles as multinomial
counts over the distinct (a, b, outcome) kinds and fits all samples in one batched
Newton solve: thousands of votes and a thousand resamples take a fraction of a second.
"""
import math

import numpy as np

SCALE = 400.0 / math.log(10.0)  # natural-log strength -> Elo points
BASE_RATING = 1000.0
OUTCOMES = ("a", "b", "tie", "both_bad")
# Votes a model needs (battles it took part in) before its bootstrap interval is given. With fewer, the
# resamples repeat the same few outcomes: one vote gives the same fit in every resample, an interval of
# "+0 / +0" that claims a certainty no one has. Below it the leaderboard says "not enough votes"
# (ci_low and ci_high are None).
MIN_VOTES_FOR_INTERVAL = 10


def encode(battles, models: list[str] | None = None):
    """battles: iterable of (model_a, model_b, outcome) -> (models, a_idx, b_idx, score_a).

    score_a is 1 for an `a` win, 0 for a `b` win, 0.5 for tie / both_bad.
    """
    battles = [tuple(b) for b in battles]
    for a, b, outcome in battles:
        if outcome not in OUTCOMES:
            raise ValueError(f"Unknown outcome {outcome!r}; expected one of {OUTCOMES}")
    models = list(models) if models is not None else sorted({m for a, b, _ in battles for m in (a, b)})
    index = {m: i for i, m in enumerate(models)}
    a_idx = np.array([index[a] for a, _, _ in battles], dtype=np.int64)
    b_idx = np.array([index[b] for _, b, _ in battles], dtype=np.int64)
    score = np.array([1.0 if o == "a" else 0.0 if o == "b" else 0.5 for _, _, o in battles])
    return models, a_idx, b_idx, score


def win_matrix(a_idx, b_idx, score, m: int, weights=None) -> np.ndarray:
    """W[i, j] = (weighted) wins of i over j, ties counting half to each side."""
    w = np.ones_like(score) if weights is None else weights
    W = np.zeros((m, m))
    np.add.at(W, (a_idx, b_idx), w * score)
    np.add.at(W, (b_idx, a_idx), w * (1.0 - score))
    return W


def fit_strengths(W: np.ndarray, l2: float = 1.0, iters: int = 100, tol: float = 1e-10) -> np.ndarray:
    """Maximum-likelihood natural-log strengths for win matrices W of shape (..., m, m).

    Minimises  -sum_ij W_ij log sigmoid(beta_i - beta_j) + l2/2 * |beta|^2  per leading index.
    """
    W = np.asarray(W, dtype=float)
    batch_shape, m = W.shape[:-2], W.shape[-1]
    W = W.reshape((-1, m, m))
    beta = np.zeros((W.shape[0], m))
    N = W + np.swapaxes(W, 1, 2)  # games played between i and j
    eye = np.eye(m)
    for _ in range(iters):
        d = beta[:, :, None] - beta[:, None, :]
        p = 1.0 / (1.0 + np.exp(-d))  # P(i beats j)
        grad = (N * p - W).sum(axis=2) + l2 * beta
        c = N * p * (1.0 - p)  # curvature per pair
        hess = -c + eye * (c.sum(axis=2)[:, :, None]) + l2 * eye
        if l2 <= 0:
            hess = hess + 1e-12 * eye
        step = np.linalg.solve(hess, grad[..., None])[..., 0]
        beta -= step
        if np.max(np.abs(step)) < tol:
            break
    beta -= beta.mean(axis=1, keepdims=True)  # ratings are relative: centre them on BASE_RATING
    return beta.reshape(batch_shape + (m,))


def to_elo(beta: np.ndarray) -> np.ndarray:
    return BASE_RATING + SCALE * beta


def bradley_terry(battles, models=None, l2: float = 1.0) -> dict[str, float]:
    """Elo-scale ratings {model: rating}."""
    models, a, b, s = encode(battles, models)
    if not models:
        return {}
    elo = to_elo(fit_strengths(win_matrix(a, b, s, len(models)), l2=l2))
    return dict(zip(models, elo.tolist()))


def bootstrap(battles, models=None, rounds: int = 1000, seed: int = 0, l2: float = 1.0) -> tuple[list[str], np.ndarray]:
    """Elo ratings of `rounds` bootstrap resamples of the battles: (models, array (rounds, m))."""
    models, a, b, s = encode(battles, models)
    m, n = len(models), len(s)
    if n == 0 or m == 0:
        return models, np.zeros((0, m))
    # distinct battle kinds; a resample is a multinomial draw of n battles over them
    kinds, counts = np.unique(np.stack([a, b, s * 2]).T, axis=0, return_counts=True)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, counts / n, size=rounds)  # (rounds, K)
    ka, kb, ks = kinds[:, 0].astype(int), kinds[:, 1].astype(int), kinds[:, 2] / 2.0
    W = np.zeros((rounds, m, m))
    # W[r, a_k, b_k] += draws[r, k] * s_k ; W[r, b_k, a_k] += draws[r, k] * (1 - s_k)
    np.add.at(W, (slice(None), ka, kb), draws * ks)
    np.add.at(W, (slice(None), kb, ka), draws * (1.0 - ks))
    return models, to_elo(fit_strengths(W, l2=l2))


def has_interval(battles: int) -> bool:
    """Whether a model with this many votes gets a bootstrap interval (`MIN_VOTES_FOR_INTERVAL`)."""
    return battles >= MIN_VOTES_FOR_INTERVAL


def interval_text(row: dict) -> str:
    """A leaderboard row's 95% interval as offsets from its rating ("-35 / +41"), or "not enough votes"."""
    if row["ci_low"] is None or row["ci_high"] is None:
        return "not enough votes"
    return f"{row['ci_low'] - row['rating']:+.0f} / {row['ci_high'] - row['rating']:+.0f}"


def leaderboard(battles, rounds: int = 1000, seed: int = 0, l2: float = 1.0, ci: float = 0.95) -> list[dict]:
    """Rows sorted by rating: model, rating, ci_low, ci_high, battles, wins, ties, both_bad, losses, win_rate,
    rank. `ties` counts "tie" votes only and `both_bad` the "both are bad" ones (the rating counts either as
    half a win each; the counts keep them apart, since "both bad" says something about both models).

    A model with fewer than `MIN_VOTES_FOR_INTERVAL` votes has ci_low = ci_high = None (not enough votes)."""
    battles = [tuple(b) for b in battles]
    models, a, b, s = encode(battles)
    if not models:
        return []
    m = len(models)
    rating = to_elo(fit_strengths(win_matrix(a, b, s, m), l2=l2))
    _, samples = bootstrap(battles, models, rounds=rounds, seed=seed, l2=l2)
    lo, hi = np.quantile(samples, [(1 - ci) / 2, 1 - (1 - ci) / 2], axis=0) if len(samples) else (rating, rating)
    games = np.bincount(a, minlength=m) + np.bincount(b, minlength=m)
    wins = np.bincount(a, weights=(s == 1), minlength=m) + np.bincount(b, weights=(s == 0), minlength=m)
    kind = np.array([o for _, _, o in battles])
    ties, both_bad = (np.bincount(a, weights=(kind == k), minlength=m) + np.bincount(b, weights=(kind == k), minlength=m)
                      for k in ("tie", "both_bad"))
    known = [has_interval(int(g)) for g in games]
    rows = [{"model": models[i], "rating": float(rating[i]),
             "ci_low": float(lo[i]) if known[i] else None, "ci_high": float(hi[i]) if known[i] else None,
             "battles": int(games[i]), "wins": int(wins[i]), "ties": int(ties[i]), "both_bad": int(both_bad[i]),
             "losses": int(games[i] - wins[i] - ties[i] - both_bad[i]),
             "win_rate": float((wins[i] + 0.5 * (ties[i] + both_bad[i])) / games[i]) if games[i] else 0.0} for i in range(m)]
    rows.sort(key=lambda r: -r["rating"])
    # rank as Chatbot Arena does: 1 + number of models whose lower bound beats this one's upper bound (a
    # model without an interval is beaten by no one and beats no one: its rating could be anything)
    for r in rows:
        if r["ci_high"] is not None:
            r["rank"] = 1 + sum(o["ci_low"] is not None and o["ci_low"] > r["ci_high"] for o in rows)
        else:
            r["rank"] = 1
    return rows


def pair_matrices(battles) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(models, win_rate[i, j] = share of i's battles against j that i won (ties half), counts[i, j])."""
    models, a, b, s = encode(battles)
    m = len(models)
    W = win_matrix(a, b, s, m)
    counts = W + W.T
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(counts > 0, W / counts, np.nan)
    return models, rate, counts


# ---------------------------------------------------------------- head to head: who wins more often?
# Per pair of models, the votes that picked a side ("decided": A better or B better) are the evidence; ties
# and both-bad say neither is better and are counted beside it. Under "neither wins more often" each decided
# vote is a fair coin, so the claim is the two-sided exact binomial (sign) test of one model's wins among the
# decided votes, with the Wilson interval of its win share; the p-values of all pairs are adjusted together
# (Holm by default: the page shows every pair, and a reader reads every claim).
CONFIDENCE = 0.95
ALPHA = 0.05
POWER = 0.8


def decided_votes_needed(share: float, alpha: float = ALPHA, power: float = POWER) -> int | None:
    """Decided votes a two-sided sign test needs to detect a win share of `share` at `power` (normal
    approximation to the binomial); None when the share is one half (nothing to detect)."""
    from scipy.stats import norm

    if abs(share - 0.5) < 1e-12:
        return None
    z = norm.ppf(1 - alpha / 2) * 0.5 + norm.ppf(power) * math.sqrt(share * (1 - share))
    return int(math.ceil((z / (share - 0.5)) ** 2))


def pair_claims(battles, confidence: float = CONFIDENCE, alpha: float = ALPHA, adjust: str = "holm") -> list[dict]:
    """Per pair of models that met: the one with more wins first (`model_a`), wins of each among the decided
    votes, ties, both_bad, A's win share with its Wilson interval, the sign test's p-value, the p-value
    adjusted across the pairs, and the verdict in words. Pairs with no decided vote have p_value None."""
    from scipy.stats import binomtest

    from ..stats import intervals, multiple

    counts: dict[tuple[str, str], dict] = {}
    for a, b, outcome in battles:
        if outcome not in OUTCOMES:
            raise ValueError(f"Unknown outcome {outcome!r}; expected one of {OUTCOMES}")
        key = tuple(sorted((a, b)))
        c = counts.setdefault(key, {m: 0 for m in (*key, "tie", "both_bad")})
        c[a if outcome == "a" else b if outcome == "b" else outcome] += 1
    claims = []
    for (x, y), c in sorted(counts.items()):
        first, second = (x, y) if c[x] >= c[y] else (y, x)  # the one with more wins reads first
        wins, losses = c[first], c[second]
        decided = wins + losses
        low, high = intervals.wilson(wins, decided, confidence) if decided else (None, None)
        claims.append({"model_a": first, "model_b": second, "wins_a": wins, "wins_b": losses, "decided": decided,
                       "ties": c["tie"], "both_bad": c["both_bad"], "share": wins / decided if decided else None,
                       "low": low, "high": high, "confidence": confidence, "alpha": alpha,
                       "test": "two-sided exact binomial (sign) test",
                       "p_value": float(binomtest(wins, decided, 0.5).pvalue) if decided else None})
    tested = [c for c in claims if c["p_value"] is not None]
    for c, p in zip(tested, multiple.adjust([c["p_value"] for c in tested], adjust)):
        c["p_adjusted"] = float(p)
    for c in claims:
        c.setdefault("p_adjusted", None)
        c["adjustment"], c["adjustment_name"] = adjust, multiple.NAMES[adjust]
        c["significant"] = c["p_adjusted"] is not None and c["p_adjusted"] < alpha
        c["verdict"] = claim_text(c)
    return claims


def claim_text(c: dict) -> str:
    """"A wins more often than B: 14 of 20 decided votes, 95% CI 0.48–0.85; sign test p = …" or "not enough
    votes to tell"."""
    a, b = c["model_a"], c["model_b"]
    aside = f"{c['ties']} tie{'s' if c['ties'] != 1 else ''} and {c['both_bad']} both bad beside them"
    if not c["decided"]:
        return f"Not enough votes to tell {a} and {b} apart: no vote picked either ({aside})."
    p = f"sign test p = {c['p_value']:.3g}"
    if c["adjustment"] != "none":
        p += f", {c['adjustment_name'].split(' (')[0]}-adjusted {c['p_adjusted']:.3g}"
    numbers = (f"{c['wins_a']} of {c['decided']} decided votes, {c['confidence']:.0%} CI "
               f"{c['low']:.2f}–{c['high']:.2f}; {p}; {aside}")
    if c["significant"]:
        return f"{a} wins more often than {b}: {numbers}."
    need = decided_votes_needed(c["share"], c["alpha"])
    more = (f" About {need} decided votes would tell a win share of {c['share']:.2f} from even."
            if need and need > c["decided"] else "")
    return f"Not enough votes to tell {a} and {b} apart: {a} won {numbers}.{more}"
