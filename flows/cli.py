"""The `linkscan` command line. Each stage's command lives in its own module; this file wires them.

Heavy imports (torch, prefect, spaCy) happen inside the commands, so `linkscan --help` stays fast.
"""
from __future__ import annotations

import typer

from flows import cli_evaluate, cli_flows, cli_generate, cli_inspect, cli_train

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Link-based synthetic data for long-document retrievers.")


@app.callback()
def _root() -> None:
    """Link-based synthetic data for long-document retrievers: generate, inspect, train, evaluate."""


# One line per command; stage modules define the command functions.
app.command("generate")(cli_generate.generate)
app.command("inspect")(cli_inspect.inspect)
app.command("serve")(cli_flows.serve)
app.command("demo")(cli_flows.demo)
app.command("evaluate")(cli_evaluate.evaluate)
app.command("retrieve")(cli_evaluate.retrieve)
app.command("train")(cli_train.train)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
