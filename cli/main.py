"""Entry point of ``pk``. Imports only click and the standard library at start-up;
each subcommand's module is imported when that subcommand runs."""

from __future__ import annotations

import importlib
import os
import sys

import click

#: name -> ("module:attr", one-line help); help is listed without importing the module
COMMANDS: dict[str, tuple[str, str]] = {
    "list": ("pk.cli.commands.listing:list_cmd", "List installed plugins and their components."),
    "info": ("pk.cli.commands.listing:info_cmd", "Show a component's summary, paper, tasks and config fields."),
    "train": ("pk.cli.commands.train:train_cmd", "Train a model from TOML configs and -c overrides."),
    "eval": ("pk.cli.commands.train:eval_cmd", "Evaluate a run dir or checkpoint on a split."),
    "batch": ("pk.cli.commands.batch:batch_cmd", "Run a batch of configs (matrix, seeds) and summarise."),
    "tune": ("pk.cli.commands.tune:tune_cmd", "Tune a recipe's arms with equal effort (Optuna), then compare."),
    "runs": ("pk.cli.commands.runs:runs_cmd", "List and query past runs (--where, --since, --compare)."),
    "report": ("pk.cli.commands.runs:report_cmd", "Write PNG learning curves / comparison charts."),
    "export": ("pk.cli.commands.export:export_cmd", "Export runs to TensorBoard event files or MLflow."),
    "install": ("pk.cli.commands.manage:install_cmd", "Install a plugin (registry name or pip spec)."),
    "uninstall": ("pk.cli.commands.manage:uninstall_cmd", "Uninstall a plugin."),
    "check": ("pk.cli.commands.manage:check_cmd", "Run the contract suite on an installed plugin."),
    "doctor": ("pk.cli.commands.manage:doctor_cmd", "Report versions, devices, plugins and data dirs."),
    "new-plugin": ("pk.cli.commands.manage:new_plugin_cmd", "Create a plugin skeleton that passes pk check."),
}


PLUGIN_COMMAND_GROUP = "pk.commands"


def plugin_commands() -> dict[str, tuple[str, str]]:
    """Commands plugins declare in the ``pk.commands`` entry-point group (metadata only;
    honours PK_LOAD_PLUGINS / PK_DISABLE_PLUGINS). name -> (target, distribution)."""
    from pk.core.entry_points import entry_points, is_selected

    out: dict[str, tuple[str, str]] = {}
    for ep in entry_points(PLUGIN_COMMAND_GROUP):
        if ep.name not in COMMANDS and ep.name not in out and is_selected(ep.name, ep.dist):
            out[ep.name] = (ep.value, ep.dist)
    return out


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*COMMANDS, *sorted(plugin_commands())]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS:
            target = COMMANDS[cmd_name][0]
        else:
            found = plugin_commands().get(cmd_name)
            if found is None:
                return None
            target = found[0]
            try:
                module, _, attr = target.partition(":")
                return getattr(importlib.import_module(module), attr)
            except Exception as exc:  # a broken plugin command must not break pk
                from pk.core.errors import PluginError

                raise PluginError(f"plugin command {cmd_name!r} ({target}) failed to load: {exc}") from exc
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_) for name, (_, help_) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)
        extra = plugin_commands()
        if extra:
            with formatter.section("Plugin commands"):
                formatter.write_dl([(name, f"(from {dist}; pk {name} --help)")
                                    for name, (_, dist) in sorted(extra.items())])


def _print_version(verbose: bool) -> None:
    from pk.core import __version__

    click.echo(f"pk-core {__version__}")
    if verbose:
        from pk.core.plugins import get_registry

        for info in get_registry().plugins:
            state = f"  FAILED: {info.error}" if info.error else ""
            click.echo(f"  {info.distribution}=={info.version} ({info.module}){state}")


@click.group(cls=LazyGroup, invoke_without_command=True, no_args_is_help=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="With --version: list plugins.")
@click.option("--version", is_flag=True, help="Show the version and exit.")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool, version: bool, debug: bool) -> None:
    """pk: recent ML methods as plugins under one command line.

    \b
    Quick look:   pk list --all
    Train:        pk train -c model.name=mlp -c dataset.name=synthetic-classification -c trainer.name=supervised
    Main job:     pk batch --quick
    Exit codes: 0 ok, 1 a run failed, 2 usage/config/data error, 3 plugin failure.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug or bool(os.environ.get("PK_DEBUG"))
    if version:
        _print_version(verbose)
        ctx.exit(0)
    if ctx.invoked_subcommand is None:
        raise click.UsageError("missing command; see pk --help")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; pk errors become one line on stderr and their exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or bool(os.environ.get("PK_DEBUG"))
    try:
        rc = cli.main(args=args, prog_name="pk", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:  # the reader of stdout went away (`pk runs | head`): not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
    except Exception as exc:
        from pk.core.errors import PkError

        if debug:
            raise
        if isinstance(exc, PkError):
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        click.echo(f"error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", err=True)
        sys.exit(1)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
