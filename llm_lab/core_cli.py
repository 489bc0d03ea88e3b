"""CLI: the root modules' commands: models (registry), data, jobs and the worker."""
import json
import os
import sys

from . import capabilities, data, jobs, registry
from .cli import table


def register(subparsers) -> None:
    models = subparsers.add_parser("models", help="list and inspect models").add_subparsers(dest="sub", metavar="SUB")
    p = models.add_parser("list", help="list the models in the registry")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=models_list)
    p = models.add_parser("show", help="load a model and print its card")
    p.add_argument("name", help="registry name, folder path or Hub id")
    p.add_argument("--head", choices=registry.HEADS)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=models_show)
    p = models.add_parser("quality", help="held-out perplexity, distinct-2 and repetition of a causal LM's "
                                          "greedy continuations")
    p.add_argument("name", help="registry name, folder path or Hub id")
    p.add_argument("--json", action="store_true")
    p.add_argument("--card", action="store_true", help="a model folder you may write: store the numbers "
                   "(llm_lab_quality.json) and add them to its README.md (how the built-ins' cards are made)")
    p.set_defaults(func=models_quality)
    p = models.add_parser("add", help="register a model folder or a GGUF file (llama.cpp) under a name")
    p.add_argument("name", help="the registry name to give it")
    p.add_argument("path", help="a Hugging Face model folder, a .gguf file, or a folder holding one .gguf file")
    p.add_argument("--convert", action="store_true", help="a GGUF: dequantize it now (else on first load)")
    p.set_defaults(func=models_add)
    p = models.add_parser("add-endpoint", help="register a model served by an OpenAI-compatible server (vLLM, TGI, "
                                               "Ollama, llama.cpp, `serve`); its key stays in an environment variable")
    p.add_argument("name", help="the registry name to give it")
    p.add_argument("--base-url", required=True, help="e.g. http://localhost:8000/v1 (with or without /v1)")
    p.add_argument("--model", required=True, help="the model name the server knows")
    p.add_argument("--api-key-env", metavar="VAR", help="the NAME of the environment variable holding the API key "
                   "(never the key itself); leave out for a server that needs none")
    p.add_argument("--check", action="store_true", help="send one tiny request and print its latency")
    p.add_argument("--no-probe", action="store_true", help="do not probe whether the server returns prompt "
                   "log-probabilities (echo + logprobs); the endpoint then generates text only until `models probe`")
    p.set_defaults(func=models_add_endpoint)
    p = models.add_parser("probe", help="ask an endpoint's server again whether it returns prompt log-probabilities "
                                        "(echo + logprobs), which loglikelihood, perplexity and multiple-choice "
                                        "tasks need, and store the answer")
    p.add_argument("name", help="the endpoint's registry name")
    p.set_defaults(func=models_probe)
    p = models.add_parser("export", help="write a model as a folder any tool opens (transformers, peft, onnxruntime)"
                                         " with a Hugging Face model card")
    p.add_argument("name", help="registry name, folder path or Hub id")
    p.add_argument("--out", required=True, metavar="DIR", help="a new (or empty) folder to write")
    p.add_argument("--keep-adapter", action="store_true", help="an adapter-only model: write the PEFT adapter over "
                   "its base (a Hub id or absolute folder) instead of the merged model")
    p.set_defaults(func=models_export)

    ds = subparsers.add_parser("data", help="import and list datasets").add_subparsers(dest="sub", metavar="SUB")
    p = ds.add_parser("import", help="import a CSV/TSV/JSON/JSONL/Parquet/TXT file")
    p.add_argument("file")
    p.add_argument("--name", help="dataset name (default: the file name)")
    for role in data.ROLES:
        p.add_argument(f"--{role.replace('_', '-')}-col", dest=role, help=f"column holding the {role}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-chars", type=int)
    p.add_argument("--keep-duplicates", action="store_true")
    p.set_defaults(func=data_import)
    p = ds.add_parser("list", help="list stored datasets")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=data_list)
    p = ds.add_parser("delete", help="delete a dataset")
    p.add_argument("name")
    p.set_defaults(func=data_delete)

    js = subparsers.add_parser("jobs", help="list, cancel and resume background jobs").add_subparsers(dest="sub", metavar="SUB")
    p = js.add_parser("list")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=jobs_list)
    for verb, change in (("cancel", jobs.cancel), ("resume", jobs.resume)):
        p = js.add_parser(verb)
        p.add_argument("id")
        p.set_defaults(func=lambda a, change=change: print(f"{a.id}: {change(a.actor, a.id)['status']}") or 0)
    p = js.add_parser("show")
    p.add_argument("id")
    p.set_defaults(func=jobs_show)

    p = subparsers.add_parser("worker", help="run the background worker (the dashboard starts one itself)",
                              description="Consume the job queue, one job at a time, until stopped (Ctrl-C or "
                                          "`kill PID`). The dashboard starts its own with --parent-pid.")
    p.add_argument("--parent-pid", type=int, metavar="PID",
                   help="stop when process PID ends (the dashboard passes its own); a running job then ends "
                        "interrupted, to be resumed. Ignored with LLM_LAB_EXTERNAL_WORKER=1")
    p.add_argument("--gpus", default="", metavar="0,1",
                   help="the GPUs this worker uses (indices as nvidia-smi lists them); it then takes GPU jobs "
                        "whose memory estimate fits them. Without it: a CPU worker")
    p.add_argument("--queue", choices=jobs.QUEUES,
                   help="team workers (LLM_LAB_QUEUE_URL): take only GPU or only CPU jobs. Default: a GPU "
                        "worker takes GPU jobs first, then CPU jobs; a CPU worker takes CPU jobs")
    p.set_defaults(func=worker)


def worker(args) -> int:
    gpus = ",".join(g.strip() for g in args.gpus.split(",") if g.strip())
    if gpus and not all(g.isdigit() for g in gpus.split(",")):
        raise jobs.JobError(f"--gpus {args.gpus!r}: give GPU indices separated by commas, e.g. --gpus 0,1.")
    if jobs.team_mode():
        return jobs.run_team_worker(queue=args.queue, gpus=gpus)
    if args.queue:
        raise jobs.JobError(f"--queue {args.queue} sorts jobs between the team's workers: it needs "
                            "LLM_LAB_QUEUE_URL=redis://… (a laptop has one worker, which takes every job).")
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus  # before CUDA starts: the jobs see only these
    return jobs.run_worker(parent_pid=args.parent_pid)


def models_list(args) -> int:
    rows = [e.as_dict() for e in registry.list_models(args.actor)]
    print(json.dumps(rows, indent=2, default=str) if args.json else table(rows, ["name", "source", "head", "parent", "location"]))
    return 0


def models_show(args) -> int:
    loaded = registry.load(args.actor, args.name, head=args.head, device=args.device)
    info = loaded.info()
    for key, value in info.items():
        print(f"{key:>14}: {value}")
    if info["head_is_new"]:
        print("note: the head is freshly initialised; its predictions mean nothing until it is trained.")
    return 0


def models_quality(args) -> int:
    import json
    from pathlib import Path

    from . import lm_quality

    needs = capabilities.needs("Language-model quality", capabilities.CAUSAL_LM)  # perplexity: not an endpoint
    loaded = registry.load_for(args.actor, needs, args.name, device="cpu", dtype="float32")
    report = lm_quality.quality(loaded)
    report["parameters"] = sum(p.numel() for p in loaded.model.parameters())
    if args.card:
        args.actor.require("server", "write a model card into a folder of the server")
        folder = Path(loaded.entry.location)
        (folder / lm_quality.QUALITY_FILE).write_text(json.dumps(report, indent=2))
        readme = folder / "README.md"
        text = readme.read_text() if readme.exists() else f"# {loaded.entry.name}\n"
        text = text.split("\n## Quality\n")[0].rstrip() + "\n\n" + lm_quality.card_section(report, report["parameters"])
        readme.write_text(text)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    held = report["held_out"]
    print(f"held-out perplexity {held['perplexity']:.2f}, {held['bits_per_byte']:.3f} bits/byte "
          f"({held['tokens']} tokens)")
    for label in ("greedy", "suggested"):
        r = report[label]
        print(f"{label:>9}: distinct-2 {r['distinct_2']:.3f}, repetition {r['repetition_4']:.3f}")
        for prompt, text in r["samples"].items():
            print(f"    {prompt!r} → {text!r}")
    return 0


def models_add(args) -> int:
    from pathlib import Path

    from . import gguf

    path = Path(args.path).expanduser().resolve()
    if not path.exists():
        print(f"error: {args.path} does not exist", file=sys.stderr)
        return 2
    found = gguf.gguf_path(path)
    head = "causal-lm" if found else registry._head_of(path)
    entry = registry.register(args.actor, registry.ModelEntry(args.name, "local", str(path), head))
    if found:
        described = gguf.describe(found)
        print(f"registered {entry.name}: {found.name} ({described.architecture}, {described.quantization}, "
              f"{described.parameters / 1e6:.1f}M parameters; float32 in memory: "
              f"{described.float32_bytes / 2**20:.0f} MiB)")
        if args.convert:
            t0 = __import__("time").perf_counter()
            folder = gguf.materialize(found)
            print(f"dequantized in {__import__('time').perf_counter() - t0:.1f} s: {folder}")
    else:
        print(f"registered {entry.name}: {head} at {path}")
    return 0


def models_add_endpoint(args) -> int:
    from . import endpoints

    entry = endpoints.make_entry(args.name, args.base_url, args.model, args.api_key_env)
    if args.check:  # before registering it; who may reach the URL is checked before any request
        args.actor.require("write", "register models")
        endpoints.check_entry(args.actor, entry)
        latency = endpoints.EndpointModel(entry).check()
        print(f"check: {entry.name} answered in {latency * 1000:.0f} ms")
    entry = endpoints.add(args.actor, entry.name, entry.location, entry.meta["model"], entry.meta.get("api_key_env"),
                          probe_it=not args.no_probe)
    key = f"key from ${entry.meta['api_key_env']}" if entry.meta.get("api_key_env") else "no key"
    print(f"registered {entry.name}: {entry.meta['model']} at {entry.location} ({key})")
    if "probe" in entry.meta:
        print(probe_line(entry.name, entry.meta["probe"]))
    return 0


def probe_line(name: str, verdict: dict) -> str:
    if verdict["scores"]:
        return f"probe: {name} scores (loglikelihood, perplexity, multiple choice): {verdict['reason']}"
    return f"probe: {name} generates text only: no prompt log-probabilities with echo: {verdict['reason']}"


def models_probe(args) -> int:
    from . import endpoints

    verdict = endpoints.probe_again(args.actor, args.name)
    print(probe_line(args.name, verdict))
    return 0


def models_export(args) -> int:
    from . import export_folder

    done = export_folder.export(args.actor, args.name, args.out, keep_adapter=args.keep_adapter)
    print(f"exported {done['model']} ({done['kind']}, {done['bytes'] / 2**20:.1f} MiB) to {done['folder']}: "
          f"{', '.join(done['files'])}")
    return 0


def data_import(args) -> int:
    from pathlib import Path

    path = Path(args.file)
    if not path.is_file():
        print(f"error: no such file: {path}", file=sys.stderr)
        return 1
    roles = {r: getattr(args, r) for r in data.ROLES if getattr(args, r)}
    recipe = data.Recipe(seed=args.seed, max_chars=args.max_chars, drop_duplicates=not args.keep_duplicates)
    info = data.import_dataset(args.actor, args.name or path.stem, path.name, data.read_file(path), roles or None, recipe)
    print(f"imported {info.name}: {info.rows} rows {info.splits}, roles {info.roles}, hash {info.content_hash[:12]}")
    return 0


def data_list(args) -> int:
    rows = [{"name": d.name, "rows": d.rows, "roles": ",".join(f"{k}={v}" for k, v in d.roles.items()),
             "labels": len(d.label_names or []), "hash": d.content_hash[:12]} for d in data.list_datasets(args.actor)]
    print(json.dumps(rows, indent=2) if args.json else table(rows, ["name", "rows", "roles", "labels", "hash"]))
    return 0


def data_delete(args) -> int:
    data.delete(args.actor, args.name)
    print(f"deleted {args.name}")
    return 0


def jobs_list(args) -> int:
    rows = [{"id": j["id"], "status": j["status"], "kind": j["fn"].split(":")[0].split(".")[-1],
             "progress": f"{j['fraction']:.0%}", "title": j["title"], "message": j["message"][:60]} for j in jobs.list_jobs(args.actor)]
    print(json.dumps(rows, indent=2) if args.json else table(rows, ["id", "status", "kind", "progress", "title", "message"]))
    return 0


def jobs_show(args) -> int:
    job = jobs.get(args.actor, args.id)
    print(json.dumps({k: v for k, v in job.items()}, indent=2, default=str))
    print("\n".join(jobs.logs(args.actor, args.id, 30)))
    return 0
