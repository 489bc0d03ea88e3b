"""The arena: blind battles between two models drawn from a pool, votes, and the leaderboard.

A battle stores the prompt, the two models (in the order shown: A, B), their answers and
the generation settings. The page shows the answers without the names; after one vote
(`a`, `b`, `tie`, `both_bad`) it reveals them. The votes table's primary key is the
battle id, so a battle can be voted once only, whoever tries.
"""
import random
import sqlite3
import uuid

from .. import capabilities as caps
from .. import store
from ..errors import LabError
from . import rating

VOTES = {"a": "A is better", "b": "B is better", "tie": "Tie", "both_bad": "Both are bad"}

store.register_schema("arena", [
    """
    CREATE TABLE arena_battles (
        id TEXT PRIMARY KEY, created_at REAL NOT NULL, pool TEXT NOT NULL, model_a TEXT NOT NULL,
        model_b TEXT NOT NULL, prompt TEXT NOT NULL, output_a TEXT, output_b TEXT, stats TEXT,
        settings TEXT, creator TEXT);
    CREATE TABLE arena_votes (
        battle_id TEXT PRIMARY KEY REFERENCES arena_battles(id) ON DELETE CASCADE,
        vote TEXT NOT NULL CHECK (vote IN ('a', 'b', 'tie', 'both_bad')),
        voter TEXT NOT NULL, created_at REAL NOT NULL);
    CREATE INDEX arena_votes_voter ON arena_votes(voter);
    """,
])


class ArenaError(LabError):
    pass


def draw_pair(pool: list[str], rng: random.Random | None = None) -> tuple[str, str]:
    """Two different models from the pool, in random order (A, B)."""
    pool = list(dict.fromkeys(p for p in pool if p))
    if len(pool) < 2:
        raise ArenaError("The arena needs a pool of at least two different models: pick two or more.")
    a, b = (rng or random.SystemRandom()).sample(pool, 2)
    return a, b


def new_battle(pool: list[str], prompt: str, settings=None, creator: str = "", rng=None, loader=None) -> dict:
    """Draw two models, let both answer `prompt`, store the battle and return it (names included:
    the page must not show them before the vote)."""
    from ..generation import GenerationSettings, check_prompts, generate
    from ..registry import load

    prompt = check_prompts([prompt])[0]
    settings = settings or GenerationSettings(max_new_tokens=64)
    model_a, model_b = draw_pair(pool, rng)
    loader = loader or (lambda name, head: load(name, head=head))
    outputs, stats = {}, {}
    for side, name in (("a", model_a), ("b", model_b)):
        try:
            res = generate(loader(name, caps.GENERATE.head), [prompt], settings)[0]
        except LabError as exc:  # the names stay hidden: say which side failed
            raise ArenaError(f"Model {side.upper()} could not answer, so this battle was dropped "
                             f"(its name stays hidden): {exc}") from exc
        outputs[side] = res.text
        stats[side] = {k: v for k, v in res.as_dict().items() if k != "prompt"}
    battle = {"id": uuid.uuid4().hex[:12], "created_at": store.now(), "pool": sorted(set(pool)),
              "model_a": model_a, "model_b": model_b, "prompt": prompt, "output_a": outputs["a"],
              "output_b": outputs["b"], "stats": stats, "settings": settings.as_dict(), "creator": creator or ""}
    store.execute("INSERT INTO arena_battles VALUES (?,?,?,?,?,?,?,?,?,?,?)", (
        battle["id"], battle["created_at"], store.to_json(battle["pool"]), model_a, model_b, prompt,
        outputs["a"], outputs["b"], store.to_json(stats), store.to_json(battle["settings"]), battle["creator"]))
    return battle


def get_battle(battle_id: str) -> dict:
    row = store.query_one(
        "SELECT b.*, v.vote, v.voter, v.created_at AS voted_at FROM arena_battles b "
        "LEFT JOIN arena_votes v ON v.battle_id = b.id WHERE b.id=?", (battle_id,))
    if row is None:
        raise ArenaError(f"No arena battle with id {battle_id!r}.")
    for key in ("pool", "stats", "settings"):
        row[key] = store.from_json(row[key], {})
    return row


def vote(battle_id: str, choice: str, voter: str) -> dict:
    """Record one vote; a second vote on the same battle raises ArenaError. Returns the revealed battle."""
    if choice not in VOTES:
        raise ArenaError(f"Unknown vote {choice!r}; choose one of: {', '.join(VOTES)}.")
    if not voter:
        raise ArenaError("A vote needs a voter id (the page passes the signed-in user or an anonymous id).")
    get_battle(battle_id)  # exists?
    try:
        store.execute("INSERT INTO arena_votes VALUES (?,?,?,?)", (battle_id, choice, voter, store.now()))
    except sqlite3.IntegrityError as exc:
        raise ArenaError("This battle has been voted on already; each battle takes one vote. "
                         "Start a new battle to vote again.") from exc
    return get_battle(battle_id)


def votes(pool: list[str] | None = None) -> list[dict]:
    """All votes with their battle's models, oldest first; only battles inside `pool` when given."""
    rows = store.query(
        "SELECT b.id, b.model_a, b.model_b, b.prompt, v.vote, v.voter, v.created_at FROM arena_votes v "
        "JOIN arena_battles b ON b.id = v.battle_id ORDER BY v.created_at")
    if pool:
        keep = set(pool)
        rows = [r for r in rows if r["model_a"] in keep and r["model_b"] in keep]
    return rows


def battles_for_rating(rows: list[dict]) -> list[tuple[str, str, str]]:
    return [(r["model_a"], r["model_b"], r["vote"]) for r in rows]


def leaderboard(pool: list[str] | None = None, rounds: int = 1000, seed: int = 0) -> list[dict]:
    rows = votes(pool)
    board = rating.leaderboard(battles_for_rating(rows), rounds=rounds, seed=seed)
    both_bad = {}
    for r in rows:
        if r["vote"] == "both_bad":
            for m in (r["model_a"], r["model_b"]):
                both_bad[m] = both_bad.get(m, 0) + 1
    for row in board:
        row["both_bad"] = both_bad.get(row["model"], 0)
    return board
