"""The arena: blind battles between two models drawn from a pool, votes, and the leaderboard.

A battle is a conversation, as on LMArena: the first prompt, then any follow-ups, each answered by both
models side by side. Each model keeps its own conversation: the same user turns, its own earlier answers
(`model_prompt`). The page shows the answers without the names; a vote (`a`, `b`, `tie`, `both_bad`), cast
after any turn, ends the battle for the voter and reveals the names.

Stored: the battle row holds the first turn in `prompt`, `output_a`, `output_b` and `stats` (what battles
held before follow-ups existed, so the leaderboard and older readers read them as before) and every turn in
`conversation` (a JSON list of {"user", "a", "b", "stats"}; NULL for a battle stored before, which is its
one first turn). A vote row holds `turns`: how many turns the voter had seen (1 for votes from before), so
the conversation a vote judged is the battle's first `turns` turns.

One vote per battle per user: the votes table has a unique index on (battle, created_by), so a
second vote by the same user on the same battle is refused, by the database, whatever the page
does. On a hosted server the voter is the signed-in user (`actor.user`), so every member of the
team can vote once on a battle they see; anonymous voting exists only in local mode, where the
one local user votes once per battle, as an anonymous id of the browser session.
"""
import random
import uuid

from .. import access, settings, store
from .. import capabilities as caps
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
    # battles of several turns: every turn of a battle, and how many turns each vote judged (the rows from
    # before keep NULL, read as their one turn, and 1)
    """
    ALTER TABLE arena_battles ADD COLUMN conversation TEXT;
    ALTER TABLE arena_votes ADD COLUMN turns INTEGER NOT NULL DEFAULT 1
    """,
])


class ArenaError(LabError):
    pass


# A first visit, when the built-in chat model is installed, pits it against tiny-gpt (a base GPT trained on
# Python's sources): one answers the question, the other writes Python-flavoured text, so a first battle shows
# two answers that differ at a glance. A repetition penalty of 1.1 keeps tiny-gpt from looping into a blank
# answer without spoiling the chat model's; no-repeat-trigram (the base GPTs' suggestion) breaks the chat
# model's code ("print(my_dict)" for "print(my_list)"), so it is off there.
BASE_OPPONENT = "tiny-gpt"
CHAT_PAIR_PROMPT = "What is a list in Python?"
CHAT_PAIR_SETTINGS = dict(max_new_tokens=64, repetition_penalty=1.1, no_repeat_ngram_size=0)
BASE_PROMPT = "A list in Python is"


def first_visit(names: list[str]) -> dict:
    """What the page starts from: {"pool", "prompt", "settings"}. The chat model against tiny-gpt when both
    are among `names` and the chat model is installed; else every model of `names` with the base GPTs'
    suggested settings. The pool is visible, who is A and who is B is drawn per battle and stays hidden."""
    from ..generation_defaults import SUGGESTED
    from ..registry import CHAT_MODEL, chat_model_missing

    pair = [CHAT_MODEL, BASE_OPPONENT]
    if chat_model_missing() is None and all(n in names for n in pair):
        return {"pool": pair, "prompt": CHAT_PAIR_PROMPT, "settings": dict(SUGGESTED, **CHAT_PAIR_SETTINGS)}
    return {"pool": list(names), "prompt": BASE_PROMPT, "settings": dict(SUGGESTED)}


def draw_pair(pool: list[str], rng: random.Random | None = None) -> tuple[str, str]:
    """Two different models from the pool, in random order (A, B)."""
    pool = list(dict.fromkeys(p for p in pool if p))
    if len(pool) < 2:
        raise ArenaError("The arena needs a pool of at least two different models: pick two or more.")
    a, b = (rng or random.SystemRandom()).sample(pool, 2)
    return a, b


def model_prompt(conversation: list[dict], text: str, side: str, raw: bool = False):
    """What model `side` ("a" or "b") reads for the next turn `text`, after the turns of `conversation`.

    The first turn is `text` itself, a string, as Compare sends it: a chat model reads it through its
    template (with the settings' system prompt), a base model continues it. A follow-up is a conversation
    of the user's turns and this model's OWN earlier answers (inference/chat.py: the chat template, or a
    "role: content" transcript for a model without one). With the raw-prompt switch (`raw`) no template is
    applied anywhere: the model continues the text so far, each of its answers followed by a new line and
    the next user turn."""
    if not conversation:
        return text
    if raw:
        return "".join(t["user"] + t[side] + "\n" for t in conversation) + text
    turns = []
    for t in conversation:
        turns += [{"role": "user", "content": t["user"]}, {"role": "assistant", "content": t[side]}]
    return turns + [{"role": "user", "content": text}]


def _answers(actor: Actor, models: dict, prompts: dict, settings, loader, dropped: str = "this turn was dropped"):
    """Let model A, then model B answer its prompt, yielding ("a", piece)… then ("b", piece)… as generated
    (`inference.stream`: the model runs in a thread, a `TextIteratorStreamer` hands over its text); returns
    {side: GenerationResult}. A side that cannot answer raises ArenaError without naming its model."""
    from ..generation import GenerationResult
    from ..inference import stream

    results = {}
    for side in ("a", "b"):
        res = None
        try:
            for piece in stream(loader(models[side], caps.GENERATE.head), prompts[side], settings):
                if isinstance(piece, GenerationResult):
                    res = piece
                else:
                    yield side, piece
        except LabError as exc:  # the names stay hidden: say which side failed
            reason = _without_identity(str(exc), actor, models[side], f"model {side.upper()}")
            raise ArenaError(f"Model {side.upper()} could not answer, so {dropped} "
                             f"(its name stays hidden): {reason}") from None
        results[side] = res
    return results


def _turn(user: str, results: dict) -> dict:
    return {"user": user, **{side: results[side].text for side in "ab"},
            "stats": {side: {k: v for k, v in results[side].as_dict().items() if k != "prompt"} for side in "ab"}}


def _loader(actor: Actor, loader):
    from ..registry import load

    return loader or (lambda name, head: load(actor, name, head=head))


def battle_stream(actor: Actor, pool: list[str], prompt: str, settings=None, creator: str = "", rng=None,
                  loader=None):
    """Draw two models and let both answer `prompt` (the battle's first turn), yielding the answers as they
    are generated: ("a", text piece)… for model A, then ("b", text piece)… for model B, and last ("battle",
    the battle as stored, `get_battle`). The battle names the models: the page must not show them before the
    vote. A side that cannot answer raises ArenaError without naming its model ("this battle was dropped"),
    and nothing is stored."""
    from ..generation import check_prompts, suggested

    actor.require("vote", "start arena battles")  # a battle is how a viewer gets something to vote on
    prompt = check_prompts([prompt])[0]
    settings = settings or suggested()
    model_a, model_b = draw_pair(pool, rng)
    first = model_prompt([], prompt, "a", raw=not settings.chat)
    results = yield from _answers(actor, {"a": model_a, "b": model_b}, {"a": first, "b": first}, settings,
                                  _loader(actor, loader), dropped="this battle was dropped")
    turn = _turn(prompt, results)
    battle_id = uuid.uuid4().hex[:12]
    scope(actor).insert("arena_battles", dict(
        id=battle_id, created_at=store.now(), pool=store.to_json(sorted(set(pool))), model_a=model_a,
        model_b=model_b, prompt=prompt, output_a=turn["a"], output_b=turn["b"], stats=store.to_json(turn["stats"]),
        settings=store.to_json(settings.as_dict()), creator=creator or "", conversation=store.to_json([turn])),
        action="vote")
    yield "battle", get_battle(actor, battle_id)


def turn_stream(actor: Actor, battle_id: str, text: str, loader=None):
    """A follow-up turn in a battle the actor started and has not voted on: both models answer `text`, each
    after its own conversation so far (`model_prompt`), with the settings the battle started with. Yields as
    `battle_stream` does, last ("battle", the battle with the new turn). A side that cannot answer raises
    ArenaError without naming its model, and the battle keeps its earlier turns."""
    from ..generation import GenerationSettings

    actor.require("vote", "talk in arena battles")
    battle = get_battle(actor, battle_id)
    if battle["vote"] is not None:
        raise ArenaError("You voted on this battle, which ended it: start a new battle to talk on.")
    if battle["created_by"] != actor.user:
        raise ArenaError("Only the person who started this battle can add turns to it: start a battle of your own.")
    if not isinstance(text, str) or not text.strip():
        raise ArenaError("The follow-up is empty: type a message for both models.")
    # a battle stored before chat templates ran its first turn raw: its follow-ups stay raw too
    settings = GenerationSettings.from_dict(dict({"chat": False}, **(battle["settings"] or {})))
    stored = scope(actor).one("arena_battles", "id=?", (battle_id,), columns="conversation")["conversation"]
    prompts = {side: model_prompt(battle["conversation"], text, side, raw=not settings.chat) for side in "ab"}
    models = {side: battle["model_" + side] for side in "ab"}
    results = yield from _answers(actor, models, prompts, settings, _loader(actor, loader),
                                  dropped="this turn was dropped (the battle keeps its earlier turns)")
    conversation = battle["conversation"] + [_turn(text, results)]
    # only over the conversation this turn was made from: two tabs sending at once must not drop a turn
    changed = scope(actor).update("arena_battles", {"conversation": store.to_json(conversation)},
                                  "id=? AND created_by=? AND conversation IS ?",
                                  (battle_id, actor.user, stored), action="vote")
    if not changed:
        raise ArenaError("This battle changed while the models answered (a turn sent from another tab): "
                         "reload the page to see it; this turn was not added.")
    yield "battle", get_battle(actor, battle_id)


def _last(events) -> dict:
    for event, value in events:
        if event == "battle":
            return value
    raise AssertionError("a battle's stream ends with the battle")


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
    return _last(battle_stream(actor, pool, prompt, settings, creator, rng, loader))


def follow_up(actor: Actor, battle_id: str, text: str, loader=None) -> dict:
    """Add a turn to a battle (`turn_stream`) and return the battle."""
    return _last(turn_stream(actor, battle_id, text, loader))


def conversation_of(row: dict) -> list[dict]:
    """A battle row's turns: its stored conversation, or for a battle stored before follow-ups existed, its
    one turn (prompt, output_a, output_b, stats)."""
    stored = store.from_json(row.get("conversation"), None)
    if stored:
        return stored
    stats = row.get("stats")
    stats = store.from_json(stats, {}) if isinstance(stats, str) or stats is None else stats
    return [{"user": row["prompt"], "a": row.get("output_a") or "", "b": row.get("output_b") or "", "stats": stats}]


def get_battle(actor: Actor, battle_id: str) -> dict:
    """The battle with its turns (`conversation`, `turns` = how many) and the actor's own vote (`vote`,
    `voter`, `voted_at`, `voted_turns`: how many turns the vote judged; None before the vote)."""
    row = scope(actor).one("arena_battles", "id=?", (battle_id,))
    if row is None:
        raise ArenaError(f"No arena battle with id {battle_id!r}.")
    # the actor's own vote: on a hosted server each user votes (and sees the names) on their own
    cast = scope(actor).one("arena_votes", "battle_id=? AND created_by=?", (battle_id, actor.user),
                            columns="vote, voter, created_at, turns")
    row.update(vote=cast and cast["vote"], voter=cast and cast["voter"], voted_at=cast and cast["created_at"],
               voted_turns=cast and cast["turns"])
    for key in ("pool", "stats", "settings"):
        row[key] = store.from_json(row[key], {})
    row["conversation"] = conversation_of(row)
    row["turns"] = len(row["conversation"])
    return row


def voter_for(actor: Actor, voter: str | None = None) -> str:
    """Who a vote is counted for: the signed-in user on a hosted server (a voter id the page passes is
    ignored there), the page's anonymous session id (or the actor) in local mode."""
    if settings.hosted():
        return actor.user
    return voter or actor.user


def vote(actor: Actor, battle_id: str, choice: str, voter: str | None = None, turns: int | None = None) -> dict:
    """Record the actor's vote on the battle's first `turns` turns (the ones the voter saw; all of them when
    not given); a second vote by the same user on the same battle raises ArenaError (the first stands).
    Returns the battle, revealed. See the module's docstring for who counts as the voter."""
    if choice not in VOTES:
        raise ArenaError(f"Unknown vote {choice!r}; choose one of: {', '.join(VOTES)}.")
    actor.require("vote", "vote in the arena")
    battle = get_battle(actor, battle_id)  # exists, in the actor's workspaces?
    turns = battle["turns"] if turns is None else turns
    if not isinstance(turns, int) or not 1 <= turns <= battle["turns"]:
        raise ArenaError(f"A vote judges 1 to {battle['turns']} turns of this battle (the turns it has), "
                         f"not {turns!r}.")
    try:
        scope(actor).insert("arena_votes", dict(battle_id=battle_id, vote=choice, voter=voter_for(actor, voter),
                                                created_at=store.now(), turns=turns), action="vote")
    except store.IntegrityError as exc:
        raise ArenaError("This battle has been voted on already by you: each user votes once per battle and "
                         "the first vote stands. Start a new battle to vote again.") from exc
    return get_battle(actor, battle_id)


def votes(actor: Actor, pool: list[str] | None = None, conversations: bool = False) -> list[dict]:
    """All votes the actor can see with their battle's models and first prompt, oldest first, each with
    `turns` (how many turns it judged); with `conversations`, also `conversation`: those turns (user turn
    and both answers). Only battles inside `pool` when given."""
    columns = "id, model_a, model_b, prompt" + (", output_a, output_b, stats, conversation" if conversations else "")
    battles = {b["id"]: b for b in scope(actor).select("arena_battles", columns=columns)}
    rows = []
    for v in scope(actor).select("arena_votes", order="created_at", columns="battle_id, vote, voter, created_at, turns"):
        battle = battles.get(v["battle_id"])
        if battle is None:
            continue
        row = {k: battle[k] for k in ("id", "model_a", "model_b", "prompt")}
        row.update(vote=v["vote"], voter=v["voter"], created_at=v["created_at"], turns=v["turns"])
        if conversations:
            row["conversation"] = conversation_of(battle)[:v["turns"]]
        rows.append(row)
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
