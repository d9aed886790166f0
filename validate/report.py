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
import getpass
import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from migrate.core.config import Config
from migrate.core.errors import EXIT_OK, InputError
from migrate.core.ledger import run_phase
from migrate.core.manifest import sha256_file
from migrate.core.rendering import TableData
from validate.charts import bar_chart
from validate.masking import Masker, neutralise
from validate.pack import PACK_DIR, read_signoffs, tool_version, write_manifest

SAMPLES_PER_CODE = 3
COPIED = ("verdict.json", "totals.json", "differences.csv", "gx/target.json", "gx/snapshot.json")


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
        return self.directory / "report.html"

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
            "report_pdf": str(self.directory / "report.pdf"),
            "verdict": self.verdict,
            "masked": self.masked,
            "manifest_sha256": self.manifest_sha256,
            "exceptions": self.exceptions,
        }

    def tables(self) -> list[TableData]:
        """Where the pack is, for the terminal."""
        return [
            TableData(
                title=f"sign-off pack for {self.run_id}: verdict {self.verdict}",
                headers=("what", "where"),
                rows=[
                    ("report (open offline)", self.html),
                    ("report (PDF)", self.directory / "report.pdf"),
                    (
                        "exceptions (masked)" if self.masked else "exceptions (UNMASKED)",
                        self.directory / "exceptions.csv",
                    ),
                    ("manifest", self.directory / "manifest.json"),
                    ("manifest sha256 (sign-offs bind to it)", self.manifest_sha256),
                ],
            )
        ]


def run_report(config: Config, *, run_id: str, unmasked: bool = False) -> ReportResult:
    """Build the sign-off pack of a validated run.

    Raises:
        InputError: the run has not been validated, or its inputs changed since (the ledger).
    """
    return run_phase(config, "report", run_id, lambda: _report(config, run_id, unmasked))


def _report(config: Config, run_id: str, unmasked: bool) -> ReportResult:
    run_dir = config.runs_path / run_id
    validation = run_dir / "validation"
    if not (validation / "manifest.json").is_file():
        raise InputError(f"run {run_id} has not been validated", hint="run billmig validate first")
    out = run_dir / PACK_DIR
    _clear(out)
    for name in COPIED:
        if (validation / name).is_file():
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(validation / name, out / name)
    masker = _masker(config, run_dir, unmasked)
    exceptions = _exceptions(run_dir, masker)
    _write_exceptions(out / "exceptions.csv", exceptions)
    operator = getpass.getuser()
    context = _context(config, run_dir, exceptions, masker, operator)
    html = _render(context)
    (out / "report.html").write_text(html, encoding="utf-8")
    _pdf(html, out / "report.pdf")
    _, digest = write_manifest(config, run_dir, masked=not unmasked, operator=operator)
    return ReportResult(
        run_id, out, context["verdict"]["verdict"], not unmasked, digest, len(exceptions)
    )


def _clear(out: Path) -> None:
    """Empty the pack folder, keeping the sign-off history (bound to earlier manifests)."""
    out.mkdir(parents=True, exist_ok=True)
    for path in out.iterdir():
        if path.name == "signoffs.jsonl":
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def _masker(config: Config, run_dir: Path, unmasked: bool) -> Masker:
    """A masker that also knows the names and raw numbers the exceptions may quote."""
    exceptions = pq.read_table(
        run_dir / "mapped" / "exceptions.parquet", columns=["entity", "legacy_key"]
    )
    snapshot = run_dir / "snapshot"

    def mentioned(entity: str, key: str, column: str, cast: pa.DataType) -> list[str | None]:
        keys = exceptions.filter(pc.equal(exceptions["entity"], entity))["legacy_key"]
        if not len(keys):
            return []
        wanted = pc.cast(keys, cast, safe=False).unique().to_pylist()
        rows = pq.read_table(
            snapshot / f"{entity}.parquet", columns=[key, column], filters=[(key, "in", wanted)]
        )
        values: list[str | None] = rows[column].to_pylist()
        return values

    return (
        Masker(config.workspace.namespace, enabled=not unmasked)
        .with_names(mentioned("clients", "client_id", "name", pa.int64()))
        .with_numbers(mentioned("lines", "iccid", "msisdn", pa.string()))
        .with_numbers(mentioned("subscriptions", "subscription_id", "msisdn", pa.int64()))
    )


def _exceptions(run_dir: Path, masker: Masker) -> pd.DataFrame:
    # nullable Int64, never float64: an amount with nulls beside it must stay exact
    found = pq.read_table(run_dir / "mapped" / "exceptions.parquet").to_pandas(
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


def _read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _context(
    config: Config, run_dir: Path, exceptions: pd.DataFrame, masker: Masker, operator: str
) -> dict[str, Any]:
    validation = run_dir / "validation"
    verdict = _read(validation / "verdict.json")
    totals = _read(validation / "totals.json")
    phases = _phases(run_dir, verdict)
    codes = _by_code(exceptions)
    gx = {name: _read(validation / "gx" / f"{name}.json") or [] for name in ("target", "snapshot")}
    signoffs, _ = read_signoffs(run_dir)
    distribution = totals.get("control_totals", {}).get("balance_distribution", [])
    return {
        "run_id": run_dir.name,
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "operator": operator,
        "tool_version": tool_version(),
        "masked": masker.enabled,
        "hashes": _hashes(config, run_dir),
        "verdict": verdict,
        "totals": totals,
        "phases": phases,
        "codes": codes,
        "gx": {name: _gx_summary(found) for name, found in gx.items()},
        "delta": _read(run_dir / "delta.json") or None,
        "roles": config.signoff.roles,
        "signoffs": [s.to_dict() for s in signoffs],
        "charts": {
            "balances": _balance_chart(distribution, config.workspace.default_currency),
            "exceptions": bar_chart(
                "Exceptions by reason code",
                [(f"{c['code']} ({c['entity']})", [c["rows"]]) for c in codes],
                ["rows"],
            ),
            "phases": bar_chart(
                "Phase durations", [(p["phase"], [p["seconds"]]) for p in phases], ["s"], " s"
            ),
        },
    }


def _gx_summary(findings: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "passed": sum(bool(f["success"]) for f in findings),
        "failed": [f for f in findings if not f["success"]],
    }


def _phase(name: str, record: dict[str, Any]) -> dict[str, Any]:
    return {
        "phase": name,
        "seconds": float(record.get("seconds", 0.0)),
        "operator": record.get("operator", ""),
        "finished_at": record.get("finished_at", ""),
    }


def _phases(run_dir: Path, verdict: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for phase, name in (
        ("extract", "run.json"),
        ("map", "map-run.json"),
        ("load", "load-run.json"),
    ):
        record = _read(run_dir / name)
        if record:
            found.append(_phase(phase, record))
    if verdict:
        found.append(_phase("validate", verdict))
    return found


def _hashes(config: Config, run_dir: Path) -> list[tuple[str, str]]:
    names = ("snapshot/manifest.json", "mapped/manifest.json", "validation/manifest.json")
    found = [(name, sha256_file(run_dir / name)) for name in names if (run_dir / name).is_file()]
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


def _balance_chart(distribution: list[dict[str, Any]], currency: str) -> str:
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
    environment.filters["n"] = lambda v: f"{int(v):,}".replace(",", " ")
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
