"""``billmig report``: the sign-off pack auditors receive (SPEC §10, §13).

Writes ``runs/<run_id>/signoff/``:

* ``report.html``: self-contained (inline CSS and SVG charts, no script, no external file);
* ``report.pdf``: the same content through WeasyPrint, with real text;
* ``verdict.json``, ``totals.json``, ``differences.csv`` and ``gx/``: validate's evidence;
* ``exceptions.csv``: every exception of the run with its disposition, personal data masked
  and spreadsheet formulas neutralised;
* ``manifest.json``: :mod:`validate.pack`.

Personal data is masked by default (:mod:`validate.masking`); ``unmasked`` is for the
operator's own use and is recorded in the manifest.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from migrate.core.artifacts import DeltaRecord
from migrate.core.config import Config
from migrate.core.display import count, money
from migrate.core.errors import EXIT_OK, InputError
from migrate.core.ledger import LedgerEntry, read_ledger, rolled_back_since, run_phase
from migrate.core.manifest import sha256_file
from migrate.core.progress import SILENT, Progress, Task
from migrate.core.provenance import operator
from migrate.core.rendering import TableData
from migrate.core.runs import PackFolder, PhaseFiles, RunDir, ValidationFolder
from validate.artifacts import Totals, Verdict
from validate.charts import SEVERITY_COLOURS, bar_chart, coloured_bars, waterfall
from validate.masking import Masker, masking_secret, neutralise
from validate.pack import read_signoffs, tool_version, write_manifest
from validate.readiness import assess
from validate.signing import BUILDER, load_registry, signing_key

SAMPLES_PER_CODE = 3
REPORT = PhaseFiles(
    "report",
    inputs=lambda run: (run.validation.manifest,),
    output=lambda run: run.signoff.manifest,
)
"""What report reads (validate's evidence, through its manifest) and leaves, for the ledger."""


def _copied(validation: ValidationFolder) -> tuple[Path, ...]:
    """Validate's evidence the pack carries a copy of."""
    return (
        validation.verdict,
        validation.totals,
        validation.differences,
        validation.gx_suite("target"),
        validation.gx_suite("snapshot"),
    )


@dataclass(frozen=True)
class ReportResult:
    """Where the pack is and what it says."""

    run_id: str
    directory: Path
    verdict: str
    masked: bool
    manifest_sha256: str
    exceptions: int

    @property
    def html(self) -> Path:
        """The report to open."""
        return PackFolder(self.directory).report_html

    @property
    def exit_code(self) -> int:
        """0: the pack was written (its verdict is in it, whatever it is)."""
        return EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "run_id": self.run_id,
            "directory": str(self.directory),
            "report_html": str(self.html),
            "report_pdf": str(PackFolder(self.directory).report_pdf),
            "verdict": self.verdict,
            "masked": self.masked,
            "manifest_sha256": self.manifest_sha256,
            "exceptions": self.exceptions,
        }

    def tables(self) -> list[TableData]:
        """Where the pack is, for the terminal."""
        pack = PackFolder(self.directory)
        return [
            TableData(
                title=f"sign-off pack for {self.run_id}: verdict {self.verdict}",
                headers=("what", "where"),
                rows=[
                    ("report (open offline)", self.html),
                    ("report (PDF)", pack.report_pdf),
                    (
                        "exceptions (masked)" if self.masked else "exceptions (UNMASKED)",
                        pack.exceptions,
                    ),
                    ("manifest", pack.manifest),
                    ("manifest sha256 (sign-offs bind to it)", self.manifest_sha256),
                ],
            )
        ]


def run_report(
    config: Config,
    *,
    run_id: str,
    unmasked: bool = False,
    signer: str | None = None,
    progress: Progress = SILENT,
) -> ReportResult:
    """Build and sign the sign-off pack of a validated run.

    ``signer`` is the builder's signer id (else ``$BILLMIG_SIGNER``, else the one registered
    builder whose private key is on this machine).

    Raises:
        InputError: the run has not been validated, was rolled back since it was loaded, its
            inputs changed since (the ledger), or there is no builder key to sign with.
    """
    if (when := rolled_back_since(config, run_id)) is not None:  # refused before it is recorded
        raise InputError(
            f"run {run_id} was rolled back at {when}: a pack of it would describe nothing",
            hint=f"load and validate it again (billmig load --run {run_id}), then report",
        )
    return run_phase(
        config, REPORT, run_id, lambda: _report(config, run_id, unmasked, signer, progress)
    )


REPORT_STEPS = ("evidence copied", "exceptions masked", "HTML written", "PDF written", "signed")
"""The steps of report, as its progress bar counts them (the PDF is most of the time)."""


def _report(
    config: Config, run_id: str, unmasked: bool, signer: str | None, progress: Progress
) -> ReportResult:
    with progress.task("report: steps", len(REPORT_STEPS), unit="steps") as steps:
        return _build(config, run_id, unmasked, signer, steps)


def _build(
    config: Config, run_id: str, unmasked: bool, signer: str | None, steps: Task
) -> ReportResult:
    run = RunDir.of(config, run_id)
    validation = run.validation
    if not validation.manifest.is_file():
        raise InputError(f"run {run_id} has not been validated", hint="run billmig validate first")
    registry = load_registry(config)
    signing = signing_key(config, registry, BUILDER, signer)
    out = run.signoff
    _clear(out)
    for source in _copied(validation):
        if source.is_file():
            copy = out.path / source.relative_to(validation.path)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, copy)
    steps.advance(1)
    masker = _masker(config, run, unmasked)
    exceptions = _exceptions(run, masker)
    _write_exceptions(out.exceptions, exceptions)
    steps.advance(1)
    who = operator()
    verdict = Verdict.read(validation.verdict)
    readiness = assess(config, run, registry, manifest_sha256=None, check_pack=False)
    context = _context(config, run, verdict, exceptions, masker, who)
    context["readiness"] = readiness.to_dict()
    html = _render(context)
    out.report_html.write_text(html, encoding="utf-8")
    steps.advance(1)
    _pdf(html, out.report_pdf)
    steps.advance(1)
    _, digest = write_manifest(config, run, masked=not unmasked, signing=signing)
    steps.advance(1)
    return ReportResult(run_id, out.path, verdict.verdict, not unmasked, digest, len(exceptions))


def _clear(out: PackFolder) -> None:
    """Empty the pack folder, keeping the sign-off history (bound to earlier manifests)."""
    out.path.mkdir(parents=True, exist_ok=True)
    for path in out.path.iterdir():
        if path in out.signoff_history:  # the history survives a rebuild
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def _masker(config: Config, run: RunDir, unmasked: bool) -> Masker:
    """A masker that also knows the names and raw numbers the exceptions may quote."""
    exceptions = pq.read_table(run.mapped.exceptions, columns=["entity", "legacy_key"])
    snapshot = run.snapshot

    def mentioned(entity: str, key: str, column: str, cast: pa.DataType) -> list[str | None]:
        keys = exceptions.filter(pc.equal(exceptions["entity"], entity))["legacy_key"]
        if not len(keys):
            return []
        wanted = pc.cast(keys, cast, safe=False).unique().to_pylist()
        rows = pq.read_table(
            snapshot.entity(entity), columns=[key, column], filters=[(key, "in", wanted)]
        )
        values: list[str | None] = rows[column].to_pylist()
        return values

    return (
        Masker(masking_secret(config), enabled=not unmasked, plan=config.numbering.plan())
        .with_names(mentioned("clients", "client_id", "name", pa.int64()))
        .with_national_ids(mentioned("clients", "client_id", "national_id", pa.int64()))
        .with_numbers(mentioned("lines", "iccid", "msisdn", pa.string()))
        .with_numbers(mentioned("subscriptions", "subscription_id", "msisdn", pa.int64()))
    )


def _exceptions(run: RunDir, masker: Masker) -> pd.DataFrame:
    # nullable Int64, never float64: an amount with nulls beside it must stay exact
    found = pq.read_table(run.mapped.exceptions).to_pandas(
        types_mapper={pa.int64(): pd.Int64Dtype()}.get
    )
    for column in ("detail", "disposition_why"):
        found[column] = [masker.text(v) if isinstance(v, str) else v for v in found[column]]
    ordered: pd.DataFrame = found.sort_values(
        ["reason_code", "entity", "legacy_key"], ignore_index=True
    )
    return ordered


def _write_exceptions(path: Path, exceptions: pd.DataFrame) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(exceptions.columns)
        for row in exceptions.itertuples(index=False):
            writer.writerow(["" if pd.isna(v) else neutralise(v) for v in row])


def _gx_findings(path: Path) -> list[dict[str, Any]]:
    """One suite's findings as validate wrote them (none when the file is absent)."""
    found: list[dict[str, Any]] = (
        json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    )
    return found


def _context(
    config: Config,
    run: RunDir,
    verdict: Verdict,
    exceptions: pd.DataFrame,
    masker: Masker,
    operator: str,
) -> dict[str, Any]:
    validation = run.validation
    totals = Totals.read(validation.totals)
    locale = config.workspace.locale
    phases = _phases(config, run)
    codes = _by_code(exceptions)
    gx = {name: _gx_findings(validation.gx_suite(name)) for name in ("target", "snapshot")}
    signoffs, _ = read_signoffs(run)
    distribution = totals.control_totals.balance_distribution
    delta = DeltaRecord.read_if_present(run.delta_record)
    return {
        "run_id": run.run_id,
        "locale": locale,
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "operator": operator,
        "tool_version": tool_version(),
        "masked": masker.enabled,
        "hashes": _hashes(config, run),
        "verdict": verdict.to_dict(),
        "totals": totals.to_dict(),
        "bridges": _bridges(totals, locale),
        "differences": _differences(validation.differences, masker, locale),
        "phases": phases,
        "codes": codes,
        "gx": {name: _gx_summary(found) for name, found in gx.items()},
        "validation_manifest_sha256": sha256_file(validation.manifest),
        "delta": delta.to_dict() if delta else None,
        "roles": config.signoff.roles,
        "signoffs": [s.to_dict() for s in signoffs],
        "charts": {
            "balances": _balance_chart(distribution, config.workspace.default_currency),
            "exceptions": _exceptions_chart(codes),
        },
    }


def _gx_summary(findings: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "passed": sum(bool(f["success"]) for f in findings),
        "failed": [f for f in findings if not f["success"]],
        "all": sorted(findings, key=lambda f: (bool(f["success"]), f["table"], f["expectation"])),
    }


def _bridges(totals: Totals, locale: str) -> list[dict[str, Any]]:
    """Each currency's bridge as the report shows it: major units, counts, a waterfall."""
    out = []
    for found in totals.bridges:

        def major(amount: int, currency: str = found.currency) -> str:
            return money(amount, currency, locale)

        lines = [
            {
                "label": line.label,
                "total": line.key in ("legacy", "target_net"),
                "accounts": "" if line.accounts is None else count(line.accounts, locale),
                "amount": major(line.amount_minor),
                "reasons": [
                    (why, count(n, locale), major(a)) for why, (n, a) in line.by_reason.items()
                ],
            }
            for line in found.lines
        ]
        steps = [(line.label, line.amount_minor, major(line.amount_minor)) for line in found.lines]
        out.append(
            {
                "currency": found.currency,
                "lines": lines,
                "explained": major(found.explained_minor),
                "difference": major(found.difference_minor),
                "balanced": found.difference_minor == 0,
                "chart": waterfall(f"{found.currency}: legacy balances to target net", steps),
            }
        )
    return out


DIFFERENCES_SHOWN = 50
"""Differing fields the report lists; differences.csv holds every one."""
DIFFERENCE_COLUMNS = ("legacy_account_no", "field", "expected", "actual")


def _differences(path: Path, masker: Masker, locale: str) -> dict[str, Any]:
    """Per field, how many accounts differ, and the first differences, masked (streamed).

    Money fields (``*_minor``) are shown in major units with the account's currency, with
    the difference (actual − expected) beside them.
    """
    per_field: dict[str, int] = {}
    shown: list[tuple[str, str, str, str, str]] = []
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            per_field[row["field"]] = per_field.get(row["field"], 0) + 1
            if len(shown) < DIFFERENCES_SHOWN:
                shown.append(_difference_row(row, masker, locale))
    return {
        "fields": sorted(per_field.items(), key=lambda item: (-item[1], item[0])),
        "rows": shown,
        "total": sum(per_field.values()),
    }


def _difference_row(
    row: dict[str, str], masker: Masker, locale: str
) -> tuple[str, str, str, str, str]:
    account, field, want, have = (masker.text(row.get(k) or "") for k in DIFFERENCE_COLUMNS)
    currency = row.get("currency") or ""
    if not field.endswith("_minor") or not currency:
        return account, field, want or "(none)", have or "(none)", ""
    raw = (row.get("expected") or "", row.get("actual") or "")  # amounts: never masked
    expected, actual = (int(v) if v.lstrip("-").isdigit() else None for v in raw)

    def shown(value: int | None) -> str:
        return "(none)" if value is None else money(value, currency, locale)

    gap = "" if expected is None or actual is None else shown(actual - expected)
    return account, field, shown(expected), shown(actual), gap


def _exceptions_chart(codes: list[dict[str, Any]]) -> str:
    """Rows per reason code and entity, most first, each bar in its severity's colour."""
    ranked = sorted(codes, key=lambda c: (-c["rows"], c["code"], c["entity"]))
    return coloured_bars(
        "Exceptions by reason code (rows), coloured by severity",
        [
            (f"{c['code']} ({c['entity']})", c["rows"], SEVERITY_COLOURS[c["severity"]])
            for c in ranked
        ],
        [(name, colour) for name, colour in SEVERITY_COLOURS.items()],
    )


def _phases(config: Config, run: RunDir) -> list[dict[str, Any]]:
    """Every phase the ledger recorded for the run: who, on which host, when, the outcome."""
    started: dict[str, LedgerEntry] = {}
    out = []
    for entry in read_ledger(config.runs_path):
        if entry.run_id != run.run_id:
            continue
        if entry.outcome == "started":
            started[entry.phase] = entry
            continue
        begun = started.pop(entry.phase, None)
        out.append(
            {
                "phase": entry.phase,
                "outcome": entry.outcome,
                "operator": entry.operator,
                "host": entry.host,
                "started_at": _when(begun.at if begun else None),
                "finished_at": _when(entry.at),
                "seconds": entry.seconds,
                "note": entry.message or "",
            }
        )
    return out


def _when(at: str | None) -> str:
    return "" if at is None else at.replace("T", " ").replace("+00:00", " UTC")


def _hashes(config: Config, run: RunDir) -> list[tuple[str, str]]:
    manifests = (run.snapshot.manifest, run.mapped.manifest, run.validation.manifest)
    found = [(run.relative(path), sha256_file(path)) for path in manifests if path.is_file()]
    if config.sha256:
        found.append(("billmig.toml", config.sha256))
    return found


def _by_code(exceptions: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for (code, entity, severity), rows in exceptions.groupby(
        ["reason_code", "entity", "severity"], sort=True
    ):
        decided = rows["disposition"].fillna("none").value_counts().sort_index()
        out.append(
            {
                "code": str(code),
                "entity": str(entity),
                "severity": str(severity),
                "rows": len(rows),
                "open": int(rows["disposition"].isna().sum()),
                "dispositions": ", ".join(f"{k} {v}" for k, v in decided.items()),
                "samples": [
                    (str(key), str(detail) if isinstance(detail, str) else "")
                    for key, detail in _first(rows, SAMPLES_PER_CODE)
                ],
            }
        )
    return out


def _first(rows: pd.DataFrame, n: int) -> Iterable[tuple[object, object]]:
    return zip(rows["legacy_key"].head(n), rows["detail"].head(n), strict=True)


def _balance_chart(distribution: Sequence[Mapping[str, Any]], currency: str) -> str:
    rows = [
        (d["band"], [d["legacy"], d["target"]]) for d in distribution if d["currency"] == currency
    ]
    return bar_chart(
        f"Accounts by balance ({currency}): legacy balance vs target main − debt",
        rows,
        ["legacy", "target"],
    )


def _render(context: dict[str, Any]) -> str:
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("validate", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    locale = context["locale"]
    environment.filters["n"] = lambda v: count(int(v), locale)
    environment.filters["money"] = lambda v, currency: money(int(v), currency, locale)
    return environment.get_template("report.html.j2").render(**context)


def _pdf(html: str, path: Path) -> None:
    import logging
    import warnings

    with warnings.catch_warnings():  # "HarfBuzz-Subset will be required by future versions"
        warnings.simplefilter("ignore", DeprecationWarning)
        import weasyprint

        logging.getLogger("weasyprint").setLevel(logging.ERROR)
        logging.getLogger("fontTools").setLevel(logging.ERROR)
        weasyprint.HTML(string=html).write_pdf(path)
