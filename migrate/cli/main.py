"""The ``billmig`` command line: parse, call one core function, render, return an exit code.

Errors are caught in one place, :func:`main`: a :class:`BillmigError` prints one line and
returns its exit code; Ctrl-C returns 130; ``--debug`` re-raises everything with a traceback.
Heavy modules are imported inside commands so ``billmig --help`` stays fast.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from migrate.cli.console import Console
from migrate.core.errors import (
    EXIT_CHECKS_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    BillmigError,
)

if TYPE_CHECKING:
    from migrate.core.config import Config


@dataclass
class _State:
    config_path: Path | None
    console: Console
    debug: bool

    def config(self) -> Config:
        """The workspace configuration (refused outside a workspace)."""
        from migrate.core.config import load_config

        return load_config(self.config_path, require=True)


pass_state = click.make_pass_decorator(_State)


class _RunRef(click.ParamType):  # type: ignore[type-arg]
    """A run id, a rehearsal label or a unique prefix, resolved against the run ledger."""

    name = "RUN"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> str:
        from migrate.core.run_refs import resolve_run

        state = ctx.find_object(_State) if ctx else None
        if state is None:  # pragma: no cover - every command runs under the group
            return str(value)
        resolved = resolve_run(state.config(), str(value))
        if resolved != value:
            state.console.note(f"run {value} is {resolved}")
        return resolved


RUN = _RunRef()
"""Type of every option or argument naming an existing run."""


def _day(flag: str, dest: str, text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A required YYYY-MM-DD option (window and incident days)."""
    return click.option(flag, dest, required=True, type=click.DateTime(["%Y-%m-%d"]), help=text)


def _renamed(new: str) -> Callable[[click.Context, click.Parameter, object], None]:
    """A callback refusing an option's old spelling, with the one every command uses now."""

    def refuse(context: click.Context, parameter: click.Parameter, value: object) -> None:
        if value is not None:
            old = parameter.opts[0]
            raise click.UsageError(
                f"{old} is now {new} (one spelling on every command): "
                f"billmig {context.info_name} {new} {value}",
                context,
            )

    return refuse


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="billmig.toml to use (default: $BILLMIG_CONFIG or ./billmig.toml).",
)
@click.option("--json", "json_mode", is_flag=True, help="Machine-readable output on stdout.")
@click.option("--quiet", is_flag=True, help="Print nothing but errors.")
@click.option("--debug", is_flag=True, help="Re-raise errors with a traceback.")
@click.version_option(package_name="billmig")
@click.pass_context
def cli(
    ctx: click.Context, config_path: Path | None, json_mode: bool, quiet: bool, debug: bool
) -> None:
    """billmig: migrate and reconcile billing accounts, phase by phase."""
    ctx.obj = _State(config_path, Console(json_mode=json_mode, quiet=quiet), debug)


@cli.command()
@click.option(
    "--url",
    required=True,
    help="Database to create the synthetic legacy tables in. Deliberately never taken from "
    "BILLMIG_SOURCE_URL: with --replace it drops tables.",
)
@click.option(
    "--accounts",
    type=click.IntRange(min=1),
    default=20_000,
    show_default=True,
    help="How many subscriber accounts to generate.",
)
@click.option("--seed", type=int, default=42, show_default=True, help="Same seed, same database.")
@click.option(
    "--anomaly-rate",
    type=click.FloatRange(0, 0.04),
    default=0.002,
    show_default=True,
    help="Share of accounts carrying each planted anomaly.",
)
@click.option(
    "--manifest",
    "manifest_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to list the planted anomalies (default: runs/synth/planted.json).",
)
@click.option("--replace", is_flag=True, help="Drop and regenerate existing legacy tables.")
@click.option(
    "--window-activity",
    is_flag=True,
    help="Add what reaches legacy after the snapshot: delayed charges, settlement-centre "
    "payments, orders the window blocks.",
)
@pass_state
def synth(
    state: _State,
    url: str,
    accounts: int,
    seed: int,
    anomaly_rate: float,
    manifest_path: Path | None,
    replace: bool,
    window_activity: bool,
) -> int:
    """Generate a realistic legacy billing database with planted anomalies."""
    from migrate.core.runs import RunsFolder
    from migrate.synth import SynthOptions, run_synth

    if manifest_path is None:
        manifest_path = RunsFolder.of(state.config()).synth_manifest
    options = SynthOptions(
        accounts=accounts, seed=seed, anomaly_rate=anomaly_rate, window_activity=window_activity
    )
    result = run_synth(
        url, options, manifest_path, replace=replace, progress=state.console.progress()
    )
    state.console.render(result)
    return result.exit_code


@cli.command()
@click.option("--wave", default=None, help="Extract only the accounts of this configured wave.")
@click.option(
    "--run", "run_id", default=None, help="Name of the new run (default: UTC time + random)."
)
@click.option("--run-id", "old_run_id", hidden=True, callback=_renamed("--run"), expose_value=False)
@pass_state
def extract(state: _State, wave: str | None, run_id: str | None) -> int:
    """Snapshot the legacy database into runs/<run_id>/snapshot/ (read-only)."""
    from migrate.extract.run import run_extract

    result = run_extract(
        state.config(), wave=wave, run_id=run_id, progress=state.console.progress()
    )
    state.console.render(result)
    return result.exit_code


@cli.command(name="map")
@click.option(
    "--run", "run_id", type=RUN, required=True, help="Run whose snapshot to map (from extract)."
)
@pass_state
def map_command(state: _State, run_id: str) -> int:
    """Map runs/<run>/snapshot into the new model under runs/<run>/mapped/."""
    from migrate.mapping.run import run_map

    result = run_map(state.config(), run_id=run_id, progress=state.console.progress())
    state.console.render(result)
    return result.exit_code


@cli.command()
@click.option("--run", "run_id", type=RUN, required=True, help="Run whose mapped output to load.")
@click.option(
    "--export",
    "export_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Write vendor load files (CSV per table + control file) here instead of a database.",
)
@click.option(
    "--exact-cells",
    is_flag=True,
    help="With --export: keep text cells exactly, even those a spreadsheet would run as a "
    "formula (default: such cells get a leading apostrophe; control.json says which).",
)
@click.option(
    "--another-target",
    is_flag=True,
    help="Load a run this workspace loaded into another target (not rolled back) into this "
    "one too; without it that is refused.",
)
@pass_state
def load(
    state: _State, run_id: str, export_dir: Path | None, exact_cells: bool, another_target: bool
) -> int:
    """Load runs/<run>/mapped into the target database (resumable, idempotent)."""
    if exact_cells and export_dir is None:
        raise click.UsageError("--exact-cells goes with --export DIR (vendor files only)")
    if export_dir is not None:
        from migrate.load.export import run_export

        exported = run_export(
            state.config(), run_id=run_id, directory=export_dir, exact_cells=exact_cells
        )
        state.console.render(exported)
        return exported.exit_code
    from migrate.load.run import run_load

    result = run_load(
        state.config(),
        run_id=run_id,
        progress=state.console.progress(),
        another_target=another_target,
    )
    state.console.render(result)
    return result.exit_code


@cli.command()
@click.option(
    "--run", "run_id", type=RUN, required=True, help="Run whose loaded target to validate."
)
@pass_state
def validate(state: _State, run_id: str) -> int:
    """Reconcile the target with the snapshot; verdict in runs/<run>/validation/ (exit 1: FAIL)."""
    from validate.run import run_validate

    result = run_validate(state.config(), run_id=run_id, progress=state.console.progress())
    state.console.render(result)
    return result.exit_code


@cli.command()
@click.option(
    "--run", "run_id", type=RUN, required=True, help="Validated run to build the pack of."
)
@click.option(
    "--unmasked",
    is_flag=True,
    help="Leave personal data in (operator's own use only; recorded in the manifest).",
)
@click.option(
    "--signer",
    default=None,
    help="Signer id whose private key signs (default: $BILLMIG_SIGNER, or the only one here).",
)
@pass_state
def report(state: _State, run_id: str, unmasked: bool, signer: str | None) -> int:
    """Write and sign the sign-off pack runs/<run>/signoff/: report, evidence, manifest."""
    from validate.report import run_report

    result = run_report(
        state.config(), run_id=run_id, unmasked=unmasked, signer=signer,
        progress=state.console.progress(),
    )  # fmt: skip
    state.console.render(result)
    return result.exit_code


@cli.command()
@click.option(
    "--run", "run_id", type=RUN, required=True, help="Run whose sign-off pack is decided on."
)
@click.option("--role", required=True, help="One of [signoff] roles in billmig.toml.")
@click.option("--name", required=True, help="Full name of the person deciding.")
@click.option(
    "--decision",
    required=True,
    type=click.Choice(["approve", "reject"]),
    help="What this signer decides about the pack.",
)
@click.option("--comment", default="", help="Why, or under which condition (a reject needs one).")
@click.option(
    "--signer",
    default=None,
    help="Signer id whose private key signs (default: $BILLMIG_SIGNER, or the only one here).",
)
@pass_state
def signoff(
    state: _State,
    run_id: str,
    role: str,
    name: str,
    decision: str,
    comment: str,
    signer: str | None,
) -> int:
    """Sign a decision on the pack, bound to its current manifest hash (signoffs.jsonl)."""
    from validate.pack import record_signoff

    result = record_signoff(
        state.config(), run_id=run_id, role=role, name=name, decision=decision,
        comment=comment, signer=signer,
    )  # fmt: skip
    state.console.render(result)
    return result.exit_code


@cli.command()
@click.argument("run")
@click.option(
    "--pack-only",
    is_flag=True,
    help="The folder holds the pack alone (received by email): snapshot and mapped output "
    "are not checked, and the output says so.",
)
@pass_state
def verify(state: _State, run: str, pack_only: bool) -> int:
    """Check every hash and signature of a pack (RUN: a run id or a folder holding signoff/)."""
    from migrate.core.run_refs import resolve_run
    from migrate.core.runs import RunDir
    from validate.pack import locate_pack, verify_run

    config = state.config()
    if not Path(run).is_dir() and not RunDir.of(config, run).path.is_dir():
        run = resolve_run(config, run)  # a folder, or a run folder of this workspace, as it is
    result = verify_run(config, locate_pack(config, run), pack_only=pack_only)
    state.console.render(result)
    return result.exit_code


@cli.command()
@pass_state
def runs(state: _State) -> int:
    """List every run with its phase states (the run ledger) and accounts per wave."""
    from migrate.ops.overview import runs_overview

    result = runs_overview(state.config())
    state.console.render(result)
    return result.exit_code


@cli.command()
@click.option("--label", required=True, help="Name of the rehearsal, e.g. mock-3.")
@click.option("--wave", default=None, help="Rehearse only this configured wave.")
@pass_state
def rehearse(state: _State, label: str, wave: str | None) -> int:
    """Run every phase into the rehearsal target; compare with the previous rehearsal."""
    from migrate.ops.rehearse import run_rehearsal

    result = run_rehearsal(
        state.config(), label=label, wave=wave, progress=state.console.progress()
    )
    state.console.render(result)
    return result.exit_code


@cli.command()
@click.argument("run_a", type=RUN)
@click.argument("run_b", type=RUN)
@pass_state
def compare(state: _State, run_a: str, run_b: str) -> int:
    """Drift, exceptions, output equality, timings and window forecast of two runs."""
    from migrate.ops.rehearse import compare_runs

    result = compare_runs(state.config(), run_a, run_b)
    state.console.render(result)
    return result.exit_code


@cli.command()
@click.option("--run", "run_id", type=RUN, required=True, help="Run to take live.")
@pass_state
def cutover(state: _State, run_id: str) -> int:
    """The go/no-go gate: every criterion with its evidence; records the cutover on GO."""
    from migrate.ops.cutover import run_cutover

    result = run_cutover(state.config(), run_id=run_id)
    state.console.render(result)
    return result.exit_code


@cli.command()
@click.option("--run", "run_id", type=RUN, required=True, help="Run the declaration is about.")
@click.argument("what", type=click.Choice(["no-delta", "no-window"]))
@click.option("--reason", required=True, help="Why: it is printed by the gate and the report.")
@click.option("--withdraw", is_flag=True, help="Take a standing declaration back.")
@pass_state
def declare(state: _State, run_id: str, what: str, reason: str, withdraw: bool) -> int:
    """Declare in the ledger that a run needs no delta (frozen legacy) or no window."""
    from migrate.core.ledger import declare as record

    result = record(state.config(), run_id, what, reason, withdraw=withdraw)
    state.console.render(result)
    return result.exit_code


@cli.command()
@click.option("--run", "run_id", type=RUN, required=True, help="Loaded run whose delta to replay.")
@pass_state
def delta(state: _State, run_id: str) -> int:
    """Replay post-snapshot charges and payments onto the target, once (runs/<run>/delta.json)."""
    from migrate.ops.delta import run_delta

    result = run_delta(state.config(), run_id=run_id)
    state.console.render(result)
    return result.exit_code


@cli.group()
def window() -> None:
    """The restricted-services window: open, status, close, check an operation, breaches."""


@window.command(name="open")
@_day("--from", "start", "First day of the restricted-services window (YYYY-MM-DD).")
@_day("--to", "end", "Last day of the window, inclusive (YYYY-MM-DD).")
@click.option(
    "--run", "run_id", type=RUN, default=None, help="Mapped run whose top-up forecast to notify."
)
@pass_state
def window_open(state: _State, start: datetime, end: datetime, run_id: str | None) -> int:
    """Open the window: runs/window.json, ledger entry, subscriber notices as files."""
    from migrate.ops.window import open_window

    result = open_window(state.config(), start=start.date(), end=end.date(), forecast_run=run_id)
    state.console.render(result)
    return result.exit_code


@window.command(name="status")
@pass_state
def window_status_command(state: _State) -> int:
    """Show the window's state (what front-ends poll in runs/window.json)."""
    from migrate.ops.window import window_status

    result = window_status(state.config())
    state.console.render(result)
    return result.exit_code


@window.command(name="close")
@pass_state
def window_close(state: _State) -> int:
    """Close the window (runs/window.json and the ledger)."""
    from migrate.ops.window import close_window

    result = close_window(state.config())
    state.console.render(result)
    return result.exit_code


@window.command(name="check")
@click.argument("operation")
@pass_state
def window_check(state: _State, operation: str) -> int:
    """Exit 0 if OPERATION may run now, 1 if the open window blocks it; says why."""
    from migrate.ops.window import check_operation

    result = check_operation(state.config(), operation)
    state.console.render(result)
    return result.exit_code


@window.command(name="breaches")
@click.option("--run", "run_id", type=RUN, required=True, help="Run the breaches are recorded for.")
@pass_state
def window_breaches(state: _State, run_id: str) -> int:
    """List orders of a blocked kind created in legacy inside the window (FREEZE_BREACH)."""
    from migrate.ops.window import find_breaches

    result = find_breaches(state.config(), run_id=run_id)
    state.console.render(result)
    return result.exit_code


@cli.command()
@click.argument("rules", type=click.Path(path_type=Path))
@click.option("--incident", required=True, help="Incident id: part of every idempotency key.")
@_day("--from", "start", "First day of the incident to compensate (YYYY-MM-DD).")
@_day("--to", "end", "Last day of the incident, inclusive (YYYY-MM-DD).")
@click.option("--region", default=None, help="Only accounts of this region.")
@click.option(
    "--accounts",
    "accounts_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Only these accounts: a file with one account number per line.",
)
@click.option(
    "--signer",
    default=None,
    help="Signer id whose private key signs (default: $BILLMIG_SIGNER, or the only one here).",
)
@pass_state
def compensate(
    state: _State,
    rules: Path,
    incident: str,
    start: datetime,
    end: datetime,
    region: str | None,
    accounts_file: Path | None,
    signer: str | None,
) -> int:
    """Credit an incident's compensation once; texts and totals in a verifiable pack."""
    from migrate.ops.compensation import Scope, read_accounts, run_compensate

    scope = Scope(region=region, accounts=read_accounts(accounts_file) if accounts_file else None)
    result = run_compensate(
        state.config(), rules=rules, incident=incident, start=start.date(), end=end.date(),
        scope=scope, signer=signer, progress=state.console.progress(),
    )  # fmt: skip
    state.console.render(result)
    return result.exit_code


@cli.command()
@click.option(
    "--run", "run_id", type=RUN, required=True, help="Run whose rows to remove from the target."
)
@click.option("--force", is_flag=True, help="Roll back even after cutover.")
@click.option("--yes", is_flag=True, help="Do not ask: delete at once (for scripts).")
@click.option("--dry-run", is_flag=True, help="Only show what would be deleted (nothing changes).")
@pass_state
def rollback(state: _State, run_id: str, force: bool, yes: bool, dry_run: bool) -> int:
    """Remove exactly one run's rows from every target table; shows them first and asks."""
    from migrate.load.run import plan_rollback, run_rollback

    config = state.config()
    if dry_run or not yes:
        plan = plan_rollback(config, run_id=run_id, force=force)
        state.console.render(plan)
        if dry_run or plan.outcome == "already rolled back":
            return plan.exit_code
        if not state.console.confirm(f"delete these rows of run {run_id} from the target?"):
            state.console.note("nothing deleted")
            return EXIT_CHECKS_FAILED
    result = run_rollback(config, run_id=run_id, force=force, progress=state.console.progress())
    state.console.render(result)
    return result.exit_code


@cli.command()
@click.option(
    "--accounts",
    type=click.IntRange(min=1),
    default=20_000,
    show_default=True,
    help="How many synthetic accounts the demo legacy database holds.",
)
@pass_state
def demo(state: _State, accounts: int) -> int:
    """Run the whole job on an embedded SQLite demo database and say where the results are."""
    from migrate.ops.demo import run_demo

    result = run_demo(state.config(), accounts=accounts, progress=state.console.progress())
    state.console.render(result)
    return result.exit_code


@cli.group()
def keys() -> None:
    """Signing keys: make one (private half outside the workspace), list the registered ones."""


@keys.command(name="new")
@click.argument("signer_id")
@click.option("--name", required=True, help="Full name of the key's owner.")
@click.option(
    "--role",
    "roles",
    multiple=True,
    required=True,
    help="builder (builds packs) or one of [signoff] roles; repeat for several.",
)
@pass_state
def keys_new(state: _State, signer_id: str, name: str, roles: tuple[str, ...]) -> int:
    """Make an Ed25519 key pair for SIGNER_ID and register its public half in signers.toml."""
    from validate.signing import new_key

    result = new_key(state.config(), signer_id, name, roles)
    state.console.render(result)
    return result.exit_code


@keys.command(name="list")
@pass_state
def keys_list(state: _State) -> int:
    """Every registered signer: roles, key fingerprint, and whether its private key is here."""
    from validate.signing import list_keys

    result = list_keys(state.config())
    state.console.render(result)
    return result.exit_code


@cli.command()
@click.option("--run", "run_id", type=RUN, required=True, help="Run whose exceptions to list.")
@click.option("--code", default=None, help="Only this reason code (e.g. DEBT_BELOW_THRESHOLD).")
@click.option("--account", default=None, help="Only rows of this legacy key or account number.")
@click.option("--severity", default=None, help="Only block, review or info.")
@click.option("--csv", "as_csv", is_flag=True, help="Every matching row as CSV on stdout.")
@pass_state
def exceptions(
    state: _State,
    run_id: str,
    code: str | None,
    account: str | None,
    severity: str | None,
    as_csv: bool,
) -> int:
    """List a run's exceptions (map's table, else extract's), filtered."""
    from migrate.ops.inspect import ExceptionFilter, list_exceptions

    wanted = ExceptionFilter(code=code, account=account, severity=severity)
    result = list_exceptions(state.config(), run_id, wanted)
    if as_csv:
        state.console.write(result.to_csv())
    else:
        state.console.render(result)
    return result.exit_code


@cli.command()
@click.option("--run", "run_id", type=RUN, required=True, help="Run to follow the account in.")
@click.argument("account")
@pass_state
def trace(state: _State, run_id: str, account: str) -> int:
    """Follow one legacy ACCOUNT: legacy rows, exceptions, lineage, mapped, target, verdict."""
    from migrate.ops.inspect import trace_account

    result = trace_account(state.config(), run_id, account)
    state.console.render(result)
    return result.exit_code


@cli.command()
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False), default=".")
@pass_state
def init(state: _State, directory: Path) -> int:
    """Create a workspace in DIRECTORY: billmig.toml, mappings, runbooks, docs, git."""
    from migrate.ops.workspace import init_workspace

    result = init_workspace(directory)
    state.console.render(result)
    return result.exit_code


@cli.command()
@pass_state
def doctor(state: _State) -> int:
    """Check configuration, database URLs and servers, drivers, PDF libraries and disk."""
    from migrate.ops.doctor import run_doctor

    result = run_doctor(state.config_path)
    state.console.render(result)
    return result.exit_code


EXAMPLES: dict[str, tuple[str, str]] = {
    "synth": ("billmig synth --url sqlite:///legacy.sqlite --accounts 20000", ""),
    "extract": ("billmig extract --wave kcell --run w1", "BILLMIG_SOURCE_URL"),
    "map": ("billmig map --run w1", ""),
    "load": ("billmig load --run w1", "BILLMIG_TARGET_URL"),
    "validate": ("billmig validate --run w1", "BILLMIG_TARGET_URL"),
    "report": ("billmig report --run w1", "BILLMIG_SIGNER"),
    "signoff": (
        "billmig signoff --run w1 --role internal_audit --name 'A. Auditor' --decision approve",
        "BILLMIG_SIGNER",
    ),
    "verify": ("billmig verify w1   (or: billmig verify path/to/received-pack)", ""),
    "runs": ("billmig runs --json", ""),
    "rehearse": ("billmig rehearse --label mock-3", "BILLMIG_SOURCE_URL, BILLMIG_REHEARSAL_URL"),
    "compare": ("billmig compare mock-2 mock-3", ""),
    "cutover": ("billmig cutover --run w1", "BILLMIG_TARGET_URL"),
    "delta": ("billmig delta --run w1", "BILLMIG_SOURCE_URL, BILLMIG_TARGET_URL"),
    "declare": ("billmig declare --run w1 no-delta --reason 'legacy read-only from 00:00'", ""),
    "window": ("billmig window open --from 2016-07-01 --to 2016-07-05 --run w1", ""),
    "compensate": (
        "billmig compensate mappings/compensation/kcell-2017-12-billing.toml "
        "--incident INC-1 --from 2017-12-01 --to 2017-12-03",
        "BILLMIG_TARGET_URL, BILLMIG_SIGNER",
    ),
    "rollback": ("billmig rollback --run w1 --dry-run", "BILLMIG_TARGET_URL"),
    "demo": ("billmig demo --accounts 2000", ""),
    "keys": ("billmig keys new alice --name 'Alice A.' --role migration_lead", ""),
    "exceptions": ("billmig exceptions --run w1 --severity block --csv > block.csv", ""),
    "trace": ("billmig trace --run w1 ACC-0000123", "BILLMIG_TARGET_URL"),
    "init": ("billmig init kcell-2016 && cd kcell-2016 && billmig doctor", ""),
    "doctor": ("billmig doctor", "BILLMIG_SOURCE_URL, BILLMIG_TARGET_URL, BILLMIG_REHEARSAL_URL"),
}
"""One example per command for ``--help``, and the environment variables it reads."""

for _name, (_example, _variables) in EXAMPLES.items():
    _reads = f"\n\n\b\nReads: {_variables}" if _variables else ""
    cli.commands[_name].epilog = f"\b\nExample:\n  {_example}{_reads}"

GLOBAL_FLAGS = ("--json", "--quiet", "--debug")


def _globals_first(args: list[str]) -> list[str]:
    """Global options may follow the subcommand (``billmig runs --json``): move them ahead.

    Only before a ``--`` separator; ``--config`` takes its value along.
    """
    end = args.index("--") if "--" in args else len(args)
    moved: list[str] = []
    rest: list[str] = []
    index = 0
    while index < end:
        token = args[index]
        if token in GLOBAL_FLAGS or token.startswith("--config="):
            moved.append(token)
        elif token == "--config" and index + 1 < end:
            moved += [token, args[index + 1]]
            index += 1
        else:
            rest.append(token)
        index += 1
    return [*moved, *rest, *args[end:]]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``billmig`` script; returns the process exit code."""
    args = _globals_first(sys.argv[1:] if argv is None else list(argv))
    debug = "--debug" in args
    console = Console(json_mode="--json" in args, quiet="--quiet" in args)
    console.show_warnings()
    try:
        code = cli.main(args=args, prog_name="billmig", standalone_mode=False)
    except BillmigError as exc:
        if debug:
            raise
        console.error(exc.one_line())
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        if debug:
            raise
        console.error(f"{exc.format_message()} (see billmig --help)")
        return EXIT_USAGE
    except (KeyboardInterrupt, click.Abort):
        console.error("interrupted; rerun the phase to start it again")
        return EXIT_INTERRUPTED
    except Exception as exc:
        if debug:
            raise
        console.error(f"unexpected {type(exc).__name__}: {exc}; rerun with --debug and report it")
        return EXIT_USAGE
    return code if isinstance(code, int) else EXIT_OK
