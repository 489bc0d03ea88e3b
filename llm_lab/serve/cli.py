"""`python -m llm_lab serve MODEL …`: load a registry model (as the CLI's actor) and serve it with uvicorn.

`serve` without MODEL starts the dashboard (admin_cli.serve); the options below apply to a model only.

The API key: `--api-key KEY`, or `--api-key-env VAR` (the key in that environment variable), or
LLM_LAB_SERVE_API_KEY when set; otherwise one is generated and printed once at the start. `--no-auth` serves
without a key, and only on a loopback address (127.0.0.0/8, ::1, localhost): anyone who can reach the port
could use the model otherwise.
"""
import ipaddress
import os
import secrets
import sys

from . import DEFAULT_PORT

KEY_ENV = "LLM_LAB_SERVE_API_KEY"
MODEL_ONLY = ("api_key", "api_key_env", "no_auth", "max_batch", "batch_window_ms", "no_batching", "head", "device",
              "dtype", "max_request_kb", "threads", "max_prompts", "max_request_tokens")


def add_arguments(p) -> None:
    """The model server's options, on the `serve` parser (which already has MODEL, --port and --host)."""
    g = p.add_argument_group("serving a model (with MODEL)")
    g.add_argument("--api-key", help=f"the key clients send as 'Authorization: Bearer KEY' (default: ${KEY_ENV}, "
                                     "or a new key printed at the start)")
    g.add_argument("--api-key-env", metavar="VAR", help="read the key from this environment variable")
    g.add_argument("--no-auth", action="store_true", help="no key; only on a loopback address (127.0.0.1, ::1)")
    g.add_argument("--max-batch", type=int, help="most requests in one batched model call (default 16)")
    g.add_argument("--batch-window-ms", type=float, help="how long the first request of a batch waits for others "
                                                          "(default 10)")
    g.add_argument("--no-batching", action="store_true", help="run every request alone (max batch 1)")
    g.add_argument("--head", choices=("classifier", "encoder", "causal-lm"), help="open the model with this head "
                                                                                 "(default: its own)")
    g.add_argument("--device", help="auto (default), cpu, cuda, mps")
    g.add_argument("--dtype", help="auto (default), float32, bfloat16, float16")
    g.add_argument("--max-request-kb", type=int, help="largest request body (default 1024 KB)")
    g.add_argument("--max-prompts", type=int, help="most prompts in one completions request (default 256); more "
                                                    "are refused with a 400 naming 'prompt'")
    g.add_argument("--max-request-tokens", type=int, help="most tokens one request may ask for: its prompt tokens "
                   "plus best_of (or n) x max_tokens per prompt (default 262144)")
    g.add_argument("--threads", type=int, help="CPU threads per matrix operation (torch.set_num_threads; default: "
                                               "torch's). 1 suits a small model on a busy or small machine")


def model_options_without_model(args) -> list[str]:
    """The model-only options given to `serve` without a MODEL (the dashboard takes none of them)."""
    return ["--" + name.replace("_", "-") for name in MODEL_ONLY if getattr(args, name, None) not in (None, False)]


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Refusal(Exception):
    """Options that do not allow a server to start; `run` prints the reason and exits with status 2."""


def api_key(args) -> tuple[str | None, str]:
    """(the key or None for --no-auth, where it came from); Refusal when the options do not allow a start."""
    given = [flag for flag, value in (("--api-key", args.api_key), ("--api-key-env", args.api_key_env),
                                      ("--no-auth", args.no_auth)) if value]
    if len(given) > 1:
        _refuse(f"{' and '.join(given)} contradict each other: give one of them.")
    host = args.address or "127.0.0.1"
    if args.no_auth:
        if not is_loopback(host):
            _refuse(f"--no-auth serves without an API key, which is allowed only on a loopback address (127.0.0.1, "
                    f"::1, localhost); --host is {host}. Anyone who can reach that address could use the model: "
                    f"give a key (--api-key-env VAR) or serve on 127.0.0.1.")
        return None, "none (--no-auth, loopback only)"
    if args.api_key:
        return args.api_key, "--api-key"
    if args.api_key_env:
        key = os.environ.get(args.api_key_env, "")
        if not key.strip():
            _refuse(f"--api-key-env {args.api_key_env}: that environment variable is not set (or empty).")
        return key.strip(), f"${args.api_key_env}"
    if os.environ.get(KEY_ENV, "").strip():
        return os.environ[KEY_ENV].strip(), f"${KEY_ENV}"
    return secrets.token_urlsafe(32), "generated"


def _refuse(message: str):
    raise Refusal(message)


def run(args) -> int:
    """Load the model as `args.actor`, check the options, print how to call it, and serve until stopped."""
    try:
        return _run(args)
    except Refusal as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args) -> int:
    from .. import registry

    max_batch = 1 if args.no_batching else (args.max_batch or 16)
    if max_batch < 1:
        _refuse("--max-batch must be at least 1.")
    window_ms = 0.0 if args.no_batching else (10.0 if args.batch_window_ms is None else args.batch_window_ms)
    if window_ms < 0:
        _refuse("--batch-window-ms must be 0 or more.")
    for flag, value in (("--max-prompts", args.max_prompts), ("--max-request-tokens", args.max_request_tokens)):
        if value is not None and value < 1:
            _refuse(f"{flag} must be at least 1.")
    key, key_source = api_key(args)
    host, port = args.address or "127.0.0.1", args.port or DEFAULT_PORT
    if args.threads is not None:
        if args.threads < 1:
            _refuse("--threads must be at least 1.")
        import torch

        torch.set_num_threads(args.threads)
    loaded = registry.load(args.actor, args.model, head=args.head, device=args.device, dtype=args.dtype)
    if loaded.capabilities.endpoint:
        _refuse(f"{args.model} is an OpenAI-compatible endpoint: it is served already, at {loaded.entry.location}. "
                "Serve a model whose weights LLM Lab loads (a registry model, a folder or a Hub id).")
    import uvicorn

    from .app import DEFAULT_MAX_PROMPTS, DEFAULT_MAX_REQUEST_TOKENS, create_app

    app = create_app(loaded, key, max_batch=max_batch, window_ms=window_ms,
                     max_body=(args.max_request_kb or 1024) * 1024, names=[args.model],
                     max_prompts=args.max_prompts or DEFAULT_MAX_PROMPTS,
                     max_request_tokens=args.max_request_tokens or DEFAULT_MAX_REQUEST_TOKENS)
    server = app.state.server
    shown_host = f"[{host}]" if ":" in host else host
    print(f"serving {server.name} ({loaded.head}, {loaded.device}, {loaded.dtype}, context {server.limit} tokens) "
          f"at http://{shown_host}:{port}/v1", flush=True)
    print(f"routes: {', '.join(server.routes())}", flush=True)
    print(f"batching: {'off' if max_batch == 1 else f'up to {max_batch} requests, {window_ms:g} ms window'}",
          flush=True)
    print(f"limits per request: {server.max_prompts} prompts, {server.max_request_tokens} tokens (--max-prompts, "
          "--max-request-tokens)", flush=True)
    if loaded.head_is_new:
        print(f"warning: {server.name}'s {loaded.head} head is freshly initialised: its outputs mean nothing until "
              "it is fine-tuned.", flush=True)
    if key_source == "generated" and args.check:
        print("API key: none given; one will be generated and printed when the server starts", flush=True)
    elif key_source == "generated":
        print(f"API key (generated for this run, shown once): {key}", flush=True)
    else:
        print(f"API key: {key_source}", flush=True)
    if args.check:
        return 0
    uvicorn.run(app, host=host.strip("[]"), port=port, log_level="warning", access_log=False)
    return 0
