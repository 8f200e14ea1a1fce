"""The `linkscan` command line. Each stage's command lives in its own module; this file wires them.

Heavy imports (torch, prefect, spaCy) happen inside the commands, so `linkscan --help` stays fast.
"""
from __future__ import annotations

import typer

from linkscan.flows import cli_evaluate, cli_flows, cli_generate, cli_inspect, cli_train

# Plain (click) help: options show as `--name NAME  ... [default: linkscan]`, not as raw Python types.
app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode=None,
                  help="Link-based synthetic data for long-document retrievers.")


def _version(value: bool) -> None:
    if value:
        from linkscan.pipeline.store import code_version

        version = code_version()
        commit = f"git {version['git_commit'][:12]}, " if version.get("git_commit") else ""
        typer.echo(f"linkscan {version['linkscan']} ({commit}code {version['code_fingerprint']})")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Link-based synthetic data for long-document retrievers: generate, inspect, train, evaluate."""


# One line per command; stage modules define the command functions.
app.command("generate")(cli_generate.generate)
app.command("inspect")(cli_inspect.inspect)
app.command("serve")(cli_flows.serve)
app.command("demo")(cli_flows.demo)
app.command("evaluate")(cli_evaluate.evaluate)
app.command("retrieve")(cli_evaluate.retrieve)
app.command("train")(cli_train.train)


def _plain_metavars(command) -> None:
    """Options and arguments named in --help by what they take (``--seed SEED``), not by their
    Python type (``--seed <int>``), wherever a command left the metavar out."""
    import click

    for sub in getattr(command, "commands", {}).values():
        _plain_metavars(sub)
    for param in command.params:
        if param.metavar is None and not getattr(param, "is_flag", False) and param.name != "help":
            param.metavar = param.name.upper()
            if isinstance(param, click.Argument) and param.nargs != 1:
                param.metavar += "..."


def main() -> None:
    command = typer.main.get_command(app)
    _plain_metavars(command)
    command()


if __name__ == "__main__":
    main()
