"""CLI: `python -m llm_lab explain attribute|generation|attention|dataset`."""
import json

from ..access import LOCAL


def _actor(args):
    return getattr(args, "actor", LOCAL)


def register(subparsers) -> None:
    ex = subparsers.add_parser("explain", help="attention and attributions").add_subparsers(dest="sub", metavar="SUB")
    p = ex.add_parser("attribute", help="attribute a classifier's prediction to the tokens of a text")
    p.add_argument("model")
    p.add_argument("text")
    p.add_argument("--method", default="ig", help="ig, saliency, input_x_gradient, deeplift, ablation, occlusion, "
                                                  "lime, kernel_shap")
    p.add_argument("--target", type=int, help="class index (default: the predicted class)")
    p.add_argument("--baseline", default="pad", choices=["pad", "mask", "zero"])
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=attribute)
    p = ex.add_parser("generation", help="attribute each generated token of a causal LM")
    p.add_argument("model")
    p.add_argument("prompt")
    p.add_argument("--new-tokens", type=int, default=12)
    p.add_argument("--method", default="gen_ig", choices=["gen_ig", "gen_captum_ig", "gen_ablation"])
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=generation)
    p = ex.add_parser("attention", help="head types (entropy, first/previous/self) of a model on a text")
    p.add_argument("model")
    p.add_argument("text")
    p.set_defaults(func=attention)
    p = ex.add_parser("dataset", help="attribute a dataset sample as a background job")
    p.add_argument("model")
    p.add_argument("dataset")
    p.add_argument("--methods", nargs="+", default=["ig"])
    p.add_argument("-n", type=int, default=32)
    p.add_argument("--wait", action="store_true")
    p.set_defaults(func=dataset)


def attribute(args) -> int:
    from .. import registry
    from . import attributions, faithfulness, specs

    loaded = registry.load_for(_actor(args), specs.get_method(args.method).requirements, args.model)
    a = attributions.attribute(loaded, args.text, args.method, target=args.target, baseline=args.baseline,
                               n_steps=args.steps)
    f = faithfulness.for_attribution(loaded, a)
    if args.json:
        print(json.dumps({**a.to_dict(), "faithfulness": f}, indent=1))
        return 0
    print(f"{a.method_name} · target {a.target_label} (p={a.f_input:.3f})"
          + (f" · delta {a.delta:+.2e}" if a.delta is not None else ""))
    for i, tok, score in a.top(10):
        print(f"{i:4d} {tok:>15s} {score:+.4f}")
    print(f"comprehensiveness {f['comprehensiveness']:.4f}  sufficiency {f['sufficiency']:.4f}")
    advice = a.delta_advice()
    if advice is not None and advice.large:
        print("warning:", advice.text)
    for note in a.notes:
        print("note:", note)
    return 0


def generation(args) -> int:
    from .. import registry
    from . import specs
    from .generation import attribute_generation

    loaded = registry.load_for(_actor(args), specs.get_method(args.method).requirements, args.model)
    g = attribute_generation(loaded, args.prompt, args.new_tokens, args.method)
    if args.json:
        print(json.dumps(g.to_dict(), indent=1))
        return 0
    for row in g.top_prompt_tokens(3):
        print(json.dumps(row, ensure_ascii=False))
    return 0


def attention(args) -> int:
    from .. import registry
    from . import attention as att
    from . import specs

    res = att.compute(registry.load_for(_actor(args), specs.ATTENTION_NEEDS, args.model, attention=True), args.text)
    for row in att.head_types(att.head_summary(res.attentions)):
        print(f"L{row['layer']} H{row['head']:<3d} {row['entropy_bits']:6.3f} bits  {row['type']} ({row['share']})")
    return 0


def dataset(args) -> int:
    from .. import jobs
    from .jobs import JOB_FN

    actor = _actor(args)
    job_id = jobs.submit(actor, JOB_FN, {"model": args.model, "dataset": args.dataset, "methods": args.methods,
                                         "n": args.n}, f"Attributions: {args.model} on {args.dataset}")
    print(job_id)
    if args.wait:
        job = jobs.wait(actor, job_id, timeout=24 * 3600)
        print(json.dumps(job["result"] or job["error"], indent=1))
    return 0
