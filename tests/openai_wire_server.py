"""INTERIM test server (until `python -m llm_lab serve` is merged; tests/test_endpoints.py starts that command
instead as soon as it exists): the smallest OpenAI-wire-compatible /v1/completions, with server-sent-event
streaming, over one local causal LM, run through llm_lab.generation (temperature 0 = greedy).

    python -m tests.openai_wire_server MODEL_FOLDER --port P --api-key-env VAR [--name SERVED_NAME]

Errors in OpenAI's shape: 401 for a missing or wrong key, 404 for an unknown model.
"""
import argparse
import json
import os
import time

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from llm_lab import generation, registry
from llm_lab.access import LOCAL


def error(status: int, message: str, code: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}},
                        status_code=status)


def make_app(folder: str, served: str, key_env: str | None) -> FastAPI:
    app = FastAPI()
    loaded = registry.load(LOCAL, folder, head="causal-lm", device="cpu", dtype="float32")

    @app.get("/health")
    def health():
        return {"status": "ok", "model": served}

    @app.post("/v1/completions")
    async def completions(request: Request):
        key = os.environ.get(key_env) if key_env else None
        if key and request.headers.get("authorization") != f"Bearer {key}":
            return error(401, "Incorrect API key provided.", "invalid_api_key")
        body = await request.json()
        if body.get("model") != served:
            return error(404, f"The model '{body.get('model')}' does not exist.", "model_not_found")
        temperature = float(body.get("temperature", 1.0))
        settings = generation.GenerationSettings(
            do_sample=temperature > 0, temperature=temperature or 1.0, top_p=float(body.get("top_p", 1.0)),
            max_new_tokens=int(body.get("max_tokens", 16)), seed=body.get("seed"), stop=body.get("stop") or [])
        head = {"id": "cmpl-test", "object": "text_completion", "created": int(time.time()), "model": served}
        finish = {"max_new_tokens": "length", "context": "length"}
        if not body.get("stream"):
            result = generation.generate(loaded, [body["prompt"]], settings)[0]
            return dict(head, choices=[{"index": 0, "text": result.text, "logprobs": None,
                                        "finish_reason": finish.get(result.stop_reason, "stop")}],
                        usage={"prompt_tokens": result.prompt_tokens, "completion_tokens": result.new_tokens,
                               "total_tokens": result.prompt_tokens + result.new_tokens})

        def events():
            for piece in generation.stream(loaded, body["prompt"], settings):
                if isinstance(piece, str):
                    chunk = dict(head, choices=[{"index": 0, "text": piece, "logprobs": None, "finish_reason": None}])
                else:
                    chunk = dict(head, choices=[{"index": 0, "text": "", "logprobs": None,
                                                 "finish_reason": finish.get(piece.stop_reason, "stop")}])
                    yield f"data: {json.dumps(chunk)}\n\n"
                    if (body.get("stream_options") or {}).get("include_usage"):
                        usage = {"prompt_tokens": piece.prompt_tokens, "completion_tokens": piece.new_tokens,
                                 "total_tokens": piece.prompt_tokens + piece.new_tokens}
                        chunk = dict(head, choices=[], usage=usage)
                    else:
                        continue
                yield f"data: {json.dumps(chunk)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--api-key-env")
    parser.add_argument("--name")
    args = parser.parse_args()
    app = make_app(args.model, args.name or os.path.basename(args.model.rstrip("/")), args.api_key_env)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
