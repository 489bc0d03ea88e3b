"""The arena: blind battles between two models drawn from a pool, votes, and the leaderboard.

A battle stores the prompt, the two models (in the order shown: A, B), their answers and
the generation settings. The page shows the answers without the names; after a vote
(`a`, `b`, `tie`, `both_bad`) it reveals them.

One vote per battle per user: the votes table has a unique index on (battle, created_by), so a
second vote by the same user on the same battle is refused, by the database, whatever the page
does. On a hosted server the voter is the signed-in user (`actor.user`), so every member of the
team can vote once on a battle they see; anonymous voting exists only in local mode, where the
one local user votes once per battle, as an anonymous id of the browser session.
"""
import random
import sqlite3
import uuid

from .. import capabilities as caps
from .. import access, settings, store
from ..access import Actor, scope
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
    access.owned_columns("arena_battles"),
    access.owned_columns("arena_votes"),
    # one vote per battle per user (was: one vote per battle): the table is rebuilt without the
    # battle_id primary key; existing votes keep their rows
    """
    CREATE TABLE arena_votes_v2 (
        battle_id TEXT NOT NULL REFERENCES arena_battles(id) ON DELETE CASCADE,
        vote TEXT NOT NULL CHECK (vote IN ('a', 'b', 'tie', 'both_bad')),
        voter TEXT NOT NULL, created_at REAL NOT NULL,
        workspace TEXT NOT NULL DEFAULT 'default', created_by TEXT NOT NULL DEFAULT 'local');
    INSERT INTO arena_votes_v2 (battle_id, vote, voter, created_at, workspace, created_by)
        SELECT battle_id, vote, voter, created_at, workspace, created_by FROM arena_votes;
    DROP TABLE arena_votes;
    ALTER TABLE arena_votes_v2 RENAME TO arena_votes;
    CREATE UNIQUE INDEX arena_votes_one_per_user ON arena_votes(battle_id, created_by);
    CREATE INDEX arena_votes_voter ON arena_votes(voter);
    CREATE INDEX arena_votes_workspace ON arena_votes(workspace)
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


def battle_stream(actor: Actor, pool: list[str], prompt: str, settings=None, creator: str = "", rng=None,
                  loader=None):
    """Draw two models and let both answer `prompt`, yielding the answers as they are generated: ("a", text
    piece)… for model A, then ("b", text piece)… for model B (`inference.stream`: the model runs in a thread,
    a `TextIteratorStreamer` hands over its text), and last ("battle", the battle as stored). The battle names
    the models: the page must not show them before the vote. A side that cannot answer raises ArenaError
    without naming its model, and nothing is stored."""
    from ..generation import GenerationResult, check_prompts, suggested
    from ..inference import stream
    from ..registry import load

    actor.require("vote", "start arena battles")  # a battle is how a viewer gets something to vote on
    prompt = check_prompts([prompt])[0]
    settings = settings or suggested()
    model_a, model_b = draw_pair(pool, rng)
    loader = loader or (lambda name, head: load(actor, name, head=head))
    outputs, stats = {}, {}
    for side, name in (("a", model_a), ("b", model_b)):
        try:
            for piece in stream(loader(name, caps.GENERATE.head), prompt, settings):
                if isinstance(piece, GenerationResult):
                    res = piece
                else:
                    yield side, piece
        except LabError as exc:  # the names stay hidden: say which side failed
            reason = _without_identity(str(exc), actor, name, f"model {side.upper()}")
            raise ArenaError(f"Model {side.upper()} could not answer, so this battle was dropped "
                             f"(its name stays hidden): {reason}") from None
        outputs[side] = res.text
        stats[side] = {k: v for k, v in res.as_dict().items() if k != "prompt"}
    battle = {"id": uuid.uuid4().hex[:12], "created_at": store.now(), "pool": sorted(set(pool)),
              "model_a": model_a, "model_b": model_b, "prompt": prompt, "output_a": outputs["a"],
              "output_b": outputs["b"], "stats": stats, "settings": settings.as_dict(), "creator": creator or ""}
    scope(actor).insert("arena_battles", dict(
        id=battle["id"], created_at=battle["created_at"], pool=store.to_json(battle["pool"]), model_a=model_a,
        model_b=model_b, prompt=prompt, output_a=outputs["a"], output_b=outputs["b"], stats=store.to_json(stats),
        settings=store.to_json(battle["settings"]), creator=battle["creator"]), action="vote")
    yield "battle", battle


def _without_identity(reason: str, actor: Actor, name: str, alias: str) -> str:
    """`reason` with whatever names the model replaced by `alias`: its name, and where it lives (a folder, an
    endpoint's URL and host, the model name the endpoint serves), any of which would tell a voter who it is."""
    from urllib.parse import urlsplit

    from ..registry import resolve

    tells = {name}
    try:
        entry = resolve(actor, name)
        tells |= {entry.location, *(v for v in entry.meta.values() if isinstance(v, str) and len(v) > 2)}
        if entry.source == "endpoint":
            tells.add(urlsplit(entry.location).netloc)
    except LabError:
        pass
    for tell in sorted((t for t in tells if t), key=len, reverse=True):  # the longest first: a URL before its host
        reason = reason.replace(tell, alias)
    return reason


def new_battle(actor: Actor, pool: list[str], prompt: str, settings=None, creator: str = "", rng=None,
               loader=None) -> dict:
    """Draw two models, let both answer `prompt`, store the battle and return it (names included:
    the page must not show them before the vote). `battle_stream` gives the answers as they come."""
    for event, value in battle_stream(actor, pool, prompt, settings, creator, rng, loader):
        if event == "battle":
            return value
    raise AssertionError("battle_stream ends with the battle")


def get_battle(actor: Actor, battle_id: str) -> dict:
    row = scope(actor).one("arena_battles", "id=?", (battle_id,))
    if row is None:
        raise ArenaError(f"No arena battle with id {battle_id!r}.")
    # the actor's own vote: on a hosted server each user votes (and sees the names) on their own
    cast = scope(actor).one("arena_votes", "battle_id=? AND created_by=?", (battle_id, actor.user),
                            columns="vote, voter, created_at")
    row.update(vote=cast and cast["vote"], voter=cast and cast["voter"], voted_at=cast and cast["created_at"])
    for key in ("pool", "stats", "settings"):
        row[key] = store.from_json(row[key], {})
    return row


def voter_for(actor: Actor, voter: str | None = None) -> str:
    """Who a vote is counted for: the signed-in user on a hosted server (a voter id the page passes is
    ignored there), the page's anonymous session id (or the actor) in local mode."""
    if settings.hosted():
        return actor.user
    return voter or actor.user


def vote(actor: Actor, battle_id: str, choice: str, voter: str | None = None) -> dict:
    """Record the actor's vote; a second vote by the same user on the same battle raises ArenaError (the
    first stands). Returns the battle, revealed. See the module's docstring for who counts as the voter."""
    if choice not in VOTES:
        raise ArenaError(f"Unknown vote {choice!r}; choose one of: {', '.join(VOTES)}.")
    actor.require("vote", "vote in the arena")
    get_battle(actor, battle_id)  # exists, in the actor's workspaces?
    try:
        scope(actor).insert("arena_votes", dict(battle_id=battle_id, vote=choice, voter=voter_for(actor, voter),
                                                created_at=store.now()), action="vote")
    except sqlite3.IntegrityError as exc:
        raise ArenaError("This battle has been voted on already by you: each user votes once per battle and "
                         "the first vote stands. Start a new battle to vote again.") from exc
    return get_battle(actor, battle_id)


def votes(actor: Actor, pool: list[str] | None = None) -> list[dict]:
    """All votes the actor can see with their battle's models, oldest first; only battles inside `pool` when given."""
    battles = {b["id"]: b for b in scope(actor).select("arena_battles", columns="id, model_a, model_b, prompt")}
    rows = [dict(battles[v["battle_id"]], vote=v["vote"], voter=v["voter"], created_at=v["created_at"])
            for v in scope(actor).select("arena_votes", order="created_at", columns="battle_id, vote, voter, created_at")
            if v["battle_id"] in battles]
    if pool:
        keep = set(pool)
        rows = [r for r in rows if r["model_a"] in keep and r["model_b"] in keep]
    return rows


def battles_for_rating(rows: list[dict]) -> list[tuple[str, str, str]]:
    return [(r["model_a"], r["model_b"], r["vote"]) for r in rows]


def leaderboard(actor: Actor, pool: list[str] | None = None, rounds: int = 1000, seed: int = 0) -> list[dict]:
    """`rating.leaderboard` of the votes the actor sees: "tie" and "both bad" votes counted apart."""
    return rating.leaderboard(battles_for_rating(votes(actor, pool)), rounds=rounds, seed=seed)


def head_to_head(actor: Actor, pool: list[str] | None = None, adjust: str = "holm") -> list[dict]:
    """`rating.pair_claims` of the votes the actor sees: per pair, who wins more often among the decided votes
    (sign test, Wilson interval, p-values adjusted across the pairs) or that the votes cannot tell."""
    return rating.pair_claims(battles_for_rating(votes(actor, pool)), adjust=adjust)
