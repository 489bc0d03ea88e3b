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
    """Rows sorted by rating: model, rating, ci_low, ci_high, battles, wins, ties, losses, win_rate, rank.

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
    ties = np.bincount(a, weights=(s == 0.5), minlength=m) + np.bincount(b, weights=(s == 0.5), minlength=m)
    known = [has_interval(int(g)) for g in games]
    rows = [{"model": models[i], "rating": float(rating[i]),
             "ci_low": float(lo[i]) if known[i] else None, "ci_high": float(hi[i]) if known[i] else None,
             "battles": int(games[i]), "wins": int(wins[i]), "ties": int(ties[i]),
             "losses": int(games[i] - wins[i] - ties[i]),
             "win_rate": float((wins[i] + 0.5 * ties[i]) / games[i]) if games[i] else 0.0} for i in range(m)]
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
