"""The sign-off pack: ``billmig demo`` end to end, ``report``, ``signoff`` and ``verify``.

One demo run per module (20 000 accounts, seed 42, the anomalies synth plants at 0.2 % of
accounts per code): SQLite legacy → extract → map → load into a SQLite target → validate →
report. Its ``totals.json`` and its ``report.html`` (run id, times, hashes, durations, operator
and host replaced) are golden files; regenerate them after an intended change with

    BILLMIG_REGENERATE_GOLDEN=1 .venv/bin/pytest tests/validate/test_signoff.py

and review the diff before committing it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from migrate.cli.main import main
from migrate.core.config import load_config
from migrate.core.display import money
from migrate.core.runs import RunDir
from migrate.ops.demo import run_demo
from tests.migrate.helpers import new_workspace
from validate import pack as pack_module
from validate.masking import Masker, neutralise
from validate.pack import Verification, read_signoffs, record_signoff, verify_pack
from validate.report import run_report
from validate.signing import load_registry

GOLDEN = Path(__file__).parent / "golden" / "demo_totals.json"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("signoff")
    new_workspace(root)
    config = load_config(root / "billmig.toml", environ={})
    result = run_demo(config)
    return {
        "root": root,
        "config": result.config,  # the demo's: its own databases and signer registry
        "registry": load_registry(result.config),
        "result": result,
        "run": result.report.directory.parent,
        "env": {"BILLMIG_SIGNOFF__SIGNERS": result.config.signoff.signers},
    }


def _verify(demo: dict[str, Any], run: Path | None = None) -> Verification:
    return verify_pack(run or demo["run"], demo["registry"])


def test_demo_writes_a_complete_pack_whose_verdict_explains_itself(demo: dict[str, Any]) -> None:
    pack = demo["result"].report.directory
    names = {p.relative_to(pack).as_posix() for p in pack.rglob("*") if p.is_file()}
    assert names == {
        "report.html", "report.pdf", "manifest.json", "manifest.json.sig", "SHA256SUMS",
        "verdict.json", "totals.json", "differences.csv", "exceptions.csv", "gx/target.json",
        "gx/snapshot.json",
    }  # fmt: skip
    html = (pack / "report.html").read_text(encoding="utf-8")
    assert "<script" not in html and "src=" not in html and "href=" not in html  # offline
    assert html.count("<svg") == 3
    verdict = json.loads((pack / "verdict.json").read_text())
    for criterion in verdict["criteria"]:
        assert criterion["name"] in html
    exceptions = (pack / "exceptions.csv").read_text(encoding="utf-8")
    assert "PREPAID_NEGATIVE_BALANCE" in exceptions and "TARIFF_UNMAPPED" in html
    manifest = json.loads((pack / "manifest.json").read_text())
    assert manifest["masked"] is True
    assert manifest["previous"]["manifest"] == "validation/manifest.json"
    assert {"snapshot/accounts.parquet", "mapped/lineage.parquet", "signoff/report.pdf"} <= set(
        manifest["artifacts"]
    )
    assert set(manifest["workspace"]) >= {"commit", "dirty", "config_sha256", "mappings"}


def test_totals_match_the_golden_file(demo: dict[str, Any]) -> None:
    produced = (demo["result"].report.directory / "totals.json").read_text(encoding="utf-8")
    if os.environ.get("BILLMIG_REGENERATE_GOLDEN") == "1":
        GOLDEN.write_text(produced, encoding="utf-8")
    assert produced == GOLDEN.read_text(encoding="utf-8"), (
        "totals.json changed; if intended, regenerate (see this module's docstring)"
    )


GOLDEN_HTML = Path(__file__).parent / "golden" / "demo_report.html"


def _stable_html(html: str, run_id: str) -> str:
    """The report with what differs between two demo runs replaced.

    Run id, times, hashes, pseudonyms (keyed by the workspace's secret), durations, who and
    where.
    """
    from migrate.core.provenance import host, operator

    html = html.replace(run_id, "RUN")
    html = re.sub(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?( UTC|\+00:00)?", "TIME", html)
    html = re.sub(r"\b[0-9a-f]{64}\b", "SHA256", html)
    html = re.sub(r"\b[0-9a-f]{16}…", "SHA256…", html)
    html = re.sub(r"\b([A-Z]+)#[0-9a-f]{10}\b", r"\1#PSEUDONYM", html)  # keyed per workspace
    html = re.sub(r"<td class=\"num\">\d+\.\d</td>", '<td class="num">SECONDS</td>', html)
    for name, value in (("OPERATOR", operator()), ("HOST", host())):
        html = html.replace(f"<td>{value}</td>", f"<td>{name}</td>")
        html = html.replace(f" by {value} ", f" by {name} ")
    return html


def test_the_report_html_matches_the_golden_file(demo: dict[str, Any]) -> None:
    """The whole report, but for run id, times, hashes, durations, operator and host."""
    report = demo["result"].report
    produced = _stable_html(report.html.read_text(encoding="utf-8"), report.run_id)
    if os.environ.get("BILLMIG_REGENERATE_GOLDEN") == "1":
        GOLDEN_HTML.write_text(produced, encoding="utf-8")
    elif os.environ.get("BILLMIG_GOLDEN_DIFF"):  # where to leave what was produced, to diff
        Path(os.environ["BILLMIG_GOLDEN_DIFF"]).write_text(produced, encoding="utf-8")
    assert produced == GOLDEN_HTML.read_text(encoding="utf-8"), (
        "report.html changed; if intended, regenerate (see this module's docstring) and look "
        "at the diff and the rendered report"
    )


def test_the_pdf_has_the_control_totals_as_text(demo: dict[str, Any]) -> None:
    import pypdf

    pack = demo["result"].report.directory
    text = " ".join(page.extract_text() for page in pypdf.PdfReader(pack / "report.pdf").pages)
    totals = json.loads((pack / "totals.json").read_text())["money_by_currency"]["KZT"]
    assert "Reconciliation bridge per currency" in text

    def spaced(value: str) -> str:  # Babel's no-break spaces come back as spaces or as they are
        return value.replace("\xa0", " ").replace("\u202f", " ")

    for key in ("legacy_minor", "explained_minor", "target_net_minor"):
        shown = money(totals[key], "KZT", demo["config"].workspace.locale)
        assert spaced(shown) in spaced(text), (key, shown)


def test_an_intact_pack_verifies(demo: dict[str, Any]) -> None:
    found = _verify(demo)
    assert found.intact and found.exit_code == 0 and found.checked > 30
    assert found.built_by == "demo"


def test_any_changed_byte_of_any_artifact_is_named(demo: dict[str, Any]) -> None:
    run: Path = demo["run"]
    listed = json.loads((run / "signoff" / "manifest.json").read_text())["artifacts"]
    for name in [*listed, "signoff/manifest.json"]:
        path = run / name
        original = path.read_bytes()
        at = len(original) // 2
        path.write_bytes(original[:at] + bytes([original[at] ^ 0x01]) + original[at + 1 :])
        try:
            found = _verify(demo)
        finally:
            path.write_bytes(original)
        assert not found.intact and found.exit_code == 1, name
        named = [*found.changed, *found.problems]
        assert any(name in item for item in named), (name, named)
    assert _verify(demo).intact


def test_missing_and_added_files_are_named(demo: dict[str, Any], tmp_path: Path) -> None:
    run: Path = demo["run"]
    kept = tmp_path / "differences.csv"
    shutil.move(run / "validation" / "differences.csv", kept)
    (run / "signoff" / "extra.txt").write_text("slipped in")
    try:
        found = _verify(demo)
    finally:
        shutil.move(kept, run / "validation" / "differences.csv")
        (run / "signoff" / "extra.txt").unlink()
    assert found.missing == ("validation/differences.csv",)
    assert found.added == ("signoff/extra.txt",)


def test_a_pack_received_alone_verifies_and_says_what_it_lacks(
    demo: dict[str, Any], tmp_path: Path, capsys: Any
) -> None:
    received = tmp_path / "mail" / demo["run"].name
    shutil.copytree(demo["run"] / "signoff", received / "signoff")
    config = ["--config", str(demo["root"] / "billmig.toml")]
    with _environ(demo["env"]):
        assert main([*config, "verify", str(received)]) == 1  # incomplete unless pack only
        assert "INCOMPLETE" in capsys.readouterr().out
        assert main([*config, "verify", "--pack-only", str(received)]) == 0
        out = capsys.readouterr().out
        assert "pack only: snapshot and mapped output not checked" in out
        assert "not received" in out
        report = received / "signoff" / "report.html"
        report.write_text(report.read_text(encoding="utf-8") + " ", encoding="utf-8")
        assert main([*config, "verify", "--pack-only", str(received / "signoff")]) == 1
        assert "signoff/report.html" in capsys.readouterr().out


def _personal_data(legacy: Path) -> tuple[set[str], set[str], set[str]]:
    """MSISDNs and national IDs as digits, as legacy wrote them, and full names."""
    with sqlite3.connect(legacy) as db:
        names = {n for (n,) in db.execute("SELECT name FROM clients") if n}
        ids = {i for (i,) in db.execute("SELECT national_id FROM clients") if i}
        numbers = {m for (m,) in db.execute('SELECT msisdn FROM "lines"') if m}
    digits = {re.sub(r"\D", "", v) for v in numbers | ids}
    written = {v for v in numbers | ids if not v.isdigit()}
    return {d for d in digits if len(d) >= 10}, written, names


def _pack_texts(pack: Path) -> dict[str, str]:
    import pypdf

    texts = {}
    for path in pack.rglob("*"):
        if path.suffix == ".pdf":
            pages = pypdf.PdfReader(path).pages
            texts[path.name] = " ".join(p.extract_text() for p in pages)
        elif path.suffix == ".sig":
            continue  # raw signature bytes
        elif path.is_file():
            texts[path.name] = path.read_text(encoding="utf-8")
    return texts


def test_no_personal_data_in_the_default_pack(demo: dict[str, Any]) -> None:
    legacy = demo["root"] / "runs" / "demo" / "legacy.sqlite"
    digits, written, names = _personal_data(legacy)
    for name, text in _pack_texts(demo["result"].report.directory).items():
        runs = set(re.findall(r"\d{10,}", text))
        assert not runs & digits, (name, sorted(runs & digits)[:3])
        assert not [w for w in written if w in text], name
        words = re.findall(r"\w+", text)
        grams = {" ".join(words[i : i + k]) for k in (2, 3) for i in range(len(words))}
        assert not grams & names, (name, sorted(grams & names)[:3])


def test_the_unmasked_pack_says_so_and_shows_the_numbers(demo: dict[str, Any]) -> None:
    config, run_id = demo["config"], demo["run"].name
    try:
        run_report(config, run_id=run_id, unmasked=True, signer="demo")
        manifest = json.loads((demo["run"] / "signoff" / "manifest.json").read_text())
        exceptions = (demo["run"] / "signoff" / "exceptions.csv").read_text(encoding="utf-8")
        assert manifest["masked"] is False
        assert re.search(r"national ID '\d{12}'", exceptions)
    finally:
        run_report(config, run_id=run_id, signer="demo")


def test_signoffs_bind_to_the_current_manifest(demo: dict[str, Any]) -> None:
    config, run = demo["config"], demo["run"]
    recorded = record_signoff(
        config, run_id=run.name, role="internal_audit", name="A. Auditor", decision="approve"
    )
    found = _verify(demo)
    assert found.intact and found.signoffs[-1]["current"] is True
    assert recorded.manifest_sha256 == found.manifest_sha256
    assert recorded.signer == "demo" and recorded.os_user and recorded.host
    run_report(config, run_id=run.name, signer="demo")  # a new pack: approvals were for the old
    found = _verify(demo)
    assert found.intact and found.signoffs[-1]["current"] is False
    signoffs, problems = read_signoffs(run, demo["registry"])
    assert [s.role for s in signoffs][-1] == "internal_audit" and not problems


def test_an_edited_signoff_line_is_named(demo: dict[str, Any]) -> None:
    config, run = demo["config"], demo["run"]
    for who in ("Первый", "Second"):
        record_signoff(config, run_id=run.name, role="finance_controller", name=who,
                       decision="approve")  # fmt: skip
    path = run / "signoff" / "signoffs.jsonl"
    original = path.read_text(encoding="utf-8")
    path.write_text(original.replace('"approve"', '"reject"', 1), encoding="utf-8")
    try:
        found = _verify(demo)
    finally:
        path.write_text(original, encoding="utf-8")
    assert not found.intact and any("signoffs.jsonl line" in p for p in found.problems)


def test_a_signoff_killed_between_its_writes_is_completed_never_left_torn(
    demo: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four files change per decision; a kill between any two of them loses nothing.

    Before: a kill between appending the line and re-signing the head left the chain and its
    head disagreeing, and verify said NOT intact for good.
    """
    config, run, registry = demo["config"], demo["run"], demo["registry"]
    pending = run / "signoff" / "signoffs.pending.json"
    real = pack_module.write_atomic
    for survived in range(4):  # killed after 0, 1, 2 or 3 of the four files were replaced
        pack_module.finish_pending(RunDir.at(run))  # the previous round's, completed for real
        before = [s.name for s in read_signoffs(run, registry)[0]]
        monkeypatch.setattr(pack_module, "write_atomic", _killed_after(survived, real))
        with pytest.raises(KeyboardInterrupt):
            record_signoff(config, run_id=run.name, role="finance_controller",
                           name=f"killed after {survived}", decision="approve")  # fmt: skip
        monkeypatch.setattr(pack_module, "write_atomic", real)
        found = _verify(demo)
        assert found.intact, found.problems
        after = [s.name for s in read_signoffs(run, registry)[0]]
        assert after == [*before, f"killed after {survived}"]  # the decision counts, once
        assert pending.is_file()
    record_signoff(config, run_id=run.name, role="finance_controller", name="next",
                   decision="approve")  # fmt: skip
    assert not pending.exists()
    assert _verify(demo).intact
    names = [s.name for s in read_signoffs(run, registry)[0]]
    assert names[-2:] == ["killed after 3", "next"]


def _killed_after(writes: int, real: Any) -> Any:
    """``write_atomic`` that does ``writes`` writes, then is killed."""
    done: list[Path] = []

    def write(path: Path, data: bytes | str) -> None:
        if len(done) == writes:
            raise KeyboardInterrupt  # as if SIGKILLed here
        done.append(path)
        real(path, data)

    return write


def test_signoff_refuses_an_unknown_role(demo: dict[str, Any], capsys: Any) -> None:
    config = str(demo["root"] / "billmig.toml")
    code = main(["--config", config, "signoff", "--run", demo["run"].name, "--role", "janitor",
                 "--name", "X", "--decision", "approve"])  # fmt: skip
    assert code == 2 and "not one of the configured roles" in capsys.readouterr().err


def test_masking_keeps_stable_pseudonyms_and_neutralises_formulas() -> None:
    masker = Masker("ns").with_names(["Козлова Айгүл Ғалымқызы"])
    for written in ("+7 701 123 45 67", "87011234567", "7(701)123-45-67", "77011234567"):
        assert masker.text(f"number {written} twice") == "number +7 701 *** ** 67 twice"
    assert masker.text("ID 400101401106") == masker.text("ID 400101401106")
    assert "400101401106" not in masker.text("ID 400101401106")
    assert "Козлова" not in masker.text("client Козлова Айгүл Ғалымқызы")
    assert masker.text("ICCID 89970100000000000041") == "ICCID 89970100000000000041"
    garbage = masker.with_numbers(["12020000096"])
    assert garbage.text("not a Kazakh mobile number: '12020000096'") == (
        "not a Kazakh mobile number: '*** ** 96'"
    )
    assert Masker("ns", enabled=False).text("+77011234567") == "+77011234567"
    assert [neutralise(v) for v in ("=1+1", "+SUM(A1)", "-2", "@x", "ok", 5)] == [
        "'=1+1", "'+SUM(A1)", "'-2", "'@x", "ok", 5,
    ]  # fmt: skip


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Any:
    """Set environment variables for a CLI call (the demo's signer registry)."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
