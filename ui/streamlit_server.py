"""`streamlit run`, except that a hosted server answers Streamlit's `/_stcore/metrics` with 404.

Streamlit serves `/_stcore/metrics` to anyone who reaches the port, signed in or not: about 250 lines naming
the app's cached functions, its sessions and their memory. A team server has no use for it (nothing scrapes
it) and should not tell anonymous visitors about itself, and Streamlit has no setting that turns it off. So
`python -m llm_lab dashboard` starts Streamlit through this module, which, in hosted mode, replaces the route
before the server is built (Streamlit's own CLI then runs as usual). The route is replaced, not removed: a
removed one would fall through to the app's HTML page with 200.

In hosted mode it also hides the "Download as CSV" of every table (`client.disableDataExport`): Streamlit writes
that file in the browser with each cell as it is, so a prompt, an output or a dataset row that starts with `=`,
`+`, `-` or `@` runs as a formula in the spreadsheet of whoever opens it, which llm_lab/csv_safe.py prevents for
the app's own CSV buttons (comparisons, leaderboards, the audit log). An operator who wants the tables' own
export back sets STREAMLIT_CLIENT_DISABLE_DATA_EXPORT=false.

The replaced function is internal to Streamlit (pinned in requirements.txt); if a Streamlit release moves
it, a hosted server refuses to start rather than run with the endpoint open (tests/test_hardening.py fails
first). A reverse proxy can block the path too (README, "Reverse proxy").
"""
from __future__ import annotations

import os
import sys

METRICS_GONE = ("LLM Lab will not start in hosted mode: this Streamlit version no longer has the hook that closes "
                "/_stcore/metrics to anonymous visitors (ui/streamlit_server.py). Install the Streamlit version "
                "in requirements.txt.")


def close_metrics() -> None:
    """Make /_stcore/metrics (under any server.baseUrlPath) answer 404 Not Found to every request."""
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from streamlit.web.server.starlette import starlette_app, starlette_routes

    if not (hasattr(starlette_app, "create_metrics_routes") and hasattr(starlette_routes, "_with_base")
            and hasattr(starlette_routes, "ROUTE_METRICS")):
        raise SystemExit(METRICS_GONE)

    async def not_found(request):
        return PlainTextResponse("Not Found", status_code=404)

    def closed_routes(runtime, base_url):
        path = starlette_routes._with_base(starlette_routes.ROUTE_METRICS, base_url)
        return [Route(path, not_found, methods=["GET", "HEAD", "POST", "OPTIONS"])]

    starlette_app.create_metrics_routes = closed_routes


DATA_EXPORT_ENV = "STREAMLIT_CLIENT_DISABLE_DATA_EXPORT"  # Streamlit's variable for client.disableDataExport


def close_table_export() -> None:
    """Hide the tables' own CSV download (not formula-safe, see above), unless the operator chose otherwise."""
    os.environ.setdefault(DATA_EXPORT_ENV, "true")


def main() -> None:
    """`python -m ui.streamlit_server run app.py …`: the arguments of `streamlit`."""
    from llm_lab import settings

    if settings.hosted():
        close_metrics()
        close_table_export()
    from streamlit.web.cli import main as streamlit_main

    sys.argv = ["streamlit", *sys.argv[1:]]
    streamlit_main(prog_name="streamlit")


if __name__ == "__main__":
    main()
