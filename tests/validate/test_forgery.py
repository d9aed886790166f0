"""Forged packs and decisions are named by verify and refused by the gate (issue 16).

An insider with a copy of the workspace can edit any file and recompute any plain hash; what
they cannot do is sign with a key registered for a role they do not hold. Each test plays one
forgery through to the end (every hash rewritten, chains rebuilt) and checks that verify names
it and, where the gate is involved, that cutover refuses. A pack is also checked with openssl
and sha256sum alone, following runbook 05.

One small demo per module (2 000 accounts); destructive forgeries work on a copy of the run.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from migrate.core.config import load_config
from migrate.core.errors import InputError
from migrate.core.manifest import canonical_json, sha256_file
from migrate.core.runs import RunDir
from migrate.load.run import run_rollback
from migrate.ops.cutover import run_cutover
from migrate.ops.demo import run_demo
from tests.migrate.helpers import new_workspace
from validate.pack import record_signoff, verify_pack
from validate.report import run_report
from validate.signing import Registry, load_registry

ROLES = ("migration_lead", "finance_controller", "internal_audit")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("forgery")
    new_workspace(root, signers=False)
    result = run_demo(load_config(root / "billmig.toml", environ={}), accounts=2_000)
    config = result.config
    run = RunDir.at(result.report.directory.parent)
    for role in ROLES:
        record_signoff(config, run_id=run.run_id, role=role, name=f"{role} person",
                       decision="approve", signer="demo")  # fmt: skip
    return {"config": config, "registry": load_registry(config), "run": run}


@pytest.fixture
def copy(demo: dict[str, Any], tmp_path: Path) -> Iterator[RunDir]:
    """The demo run copied, for a forgery that must not touch the workspace."""
    target = tmp_path / demo["run"].run_id
    shutil.copytree(demo["run"].path, target)
    yield RunDir.at(target)


def _problems(run: RunDir, registry: Registry) -> list[str]:
    found = verify_pack(run, registry)
    assert not found.intact and found.exit_code == 1
    return [*found.problems, *found.changed, *found.missing, *found.added]


def _rehash_manifest(run: RunDir) -> None:
    """What a forger does after editing artifacts: every plain hash recomputed to match."""
    from validate.pack import PackManifest, artifacts

    pack = run.signoff
    listed = artifacts(run)
    pack.checksums.write_text(
        "".join(f"{d}  {n}\n" for n, d in sorted(listed.items())), encoding="utf-8"
    )
    manifest = PackManifest.read(pack.manifest)
    forged = replace(manifest, artifacts=listed, checksums_sha256=sha256_file(pack.checksums))
    forged = replace(forged, manifest_sha256=forged.self_hash())
    pack.manifest.write_text(canonical_json(forged.to_dict()), encoding="utf-8")


def test_an_edited_report_with_every_hash_rewritten_is_named(
    copy: RunDir, demo: dict[str, Any]
) -> None:
    report = copy.signoff.report_html
    report.write_text(report.read_text(encoding="utf-8").replace("PASS", "PASS!"), "utf-8")
    _rehash_manifest(copy)
    problems = _problems(copy, demo["registry"])
    assert problems == ["signoff/manifest.json: the signature of demo does not verify "
                        "(forged or edited)"]  # fmt: skip


def test_a_snapshot_balance_raised_by_a_million_is_named(
    copy: RunDir, demo: dict[str, Any]
) -> None:
    accounts = copy.snapshot.entity("accounts")
    table = pq.read_table(accounts)
    raised = pc.add(table["balance_minor"], 100_000_000)  # one million tenge, in tiyn
    pq.write_table(table.set_column(table.schema.get_field_index("balance_minor"),
                                    "balance_minor", raised), accounts)  # fmt: skip
    _rehash_manifest(copy)
    assert any("signature of demo does not verify" in p for p in _problems(copy, demo["registry"]))


def test_a_pack_re_signed_with_an_unregistered_key_is_named(
    copy: RunDir, demo: dict[str, Any]
) -> None:
    from validate.pack import PackManifest

    manifest = PackManifest.read(copy.signoff.manifest)
    forged = replace(manifest, built_by=replace(manifest.built_by, signer="mallory"))
    forged = replace(forged, manifest_sha256=forged.self_hash())
    copy.signoff.manifest.write_text(canonical_json(forged.to_dict()), encoding="utf-8")
    mallory = Ed25519PrivateKey.generate()
    copy.signoff.manifest_signature.write_bytes(mallory.sign(copy.signoff.manifest.read_bytes()))
    assert "not a registered builder" in " ".join(_problems(copy, demo["registry"]))
    # the same forgery claiming to be the registered builder: the signature does not match
    copy.signoff.manifest.write_text(canonical_json(manifest.to_dict()), encoding="utf-8")
    copy.signoff.manifest_signature.write_bytes(mallory.sign(copy.signoff.manifest.read_bytes()))
    assert any("signature of demo does not verify" in p for p in _problems(copy, demo["registry"]))


def _lines(run: RunDir) -> list[bytes]:
    return run.signoff.signoffs.read_bytes().splitlines(keepends=True)


def _rechain(run: RunDir, lines: list[bytes]) -> None:
    """A forger's rebuilt chain: each line's previous hash and the head recomputed."""
    previous, rebuilt = None, []
    for raw in lines:
        data = json.loads(raw)
        data["previous_line_sha256"] = previous
        line = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        rebuilt.append(line.encode() + b"\n")
        previous = hashlib.sha256(rebuilt[-1]).hexdigest()
    run.signoff.signoffs.write_bytes(b"".join(rebuilt))
    head = json.loads(run.signoff.signoffs_head.read_bytes())
    head.update(lines=len(rebuilt), head_sha256=previous)
    run.signoff.signoffs_head.write_bytes(
        json.dumps(head, sort_keys=True, separators=(",", ":")).encode()
    )


def test_a_reject_turned_into_an_approval_with_a_rebuilt_chain_is_named(
    copy: RunDir, demo: dict[str, Any]
) -> None:
    lines = _lines(copy)
    lines[-1] = lines[-1].replace(b'"approve"', b'"reject"')  # any edit of a signed line
    _rechain(copy, lines)
    problems = _problems(copy, demo["registry"])
    assert any("signoffs.jsonl line 3: the signature of demo does not verify" in p
               for p in problems), problems  # fmt: skip


def test_a_deleted_last_decision_is_named(copy: RunDir, demo: dict[str, Any]) -> None:
    copy.signoff.signoffs.write_bytes(b"".join(_lines(copy)[:-1]))
    sigs = copy.signoff.signoff_signatures.read_text().splitlines()[:-1]
    copy.signoff.signoff_signatures.write_text("".join(s + "\n" for s in sigs))
    problems = _problems(copy, demo["registry"])
    assert any("says 3 decision(s), the file has 2: a line was removed" in p for p in problems)


def _forge_appended_approval(run: RunDir) -> None:
    """A forger's approval with a valid chain link, signed with a key nobody registered."""
    last = json.loads(_lines(run)[-1])
    forged = {**last, "signer": "mallory", "name": "Mallory", "role": "internal_audit",
              "previous_line_sha256": hashlib.sha256(_lines(run)[-1]).hexdigest()}  # fmt: skip
    line = json.dumps(forged, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
    mallory = Ed25519PrivateKey.generate()
    with run.signoff.signoffs.open("ab") as handle:
        handle.write(line + b"\n")
    with run.signoff.signoff_signatures.open("a") as handle:
        handle.write(base64.b64encode(mallory.sign(line)).decode() + "\n")


def test_an_appended_forged_approval_is_named(copy: RunDir, demo: dict[str, Any]) -> None:
    _forge_appended_approval(copy)
    problems = _problems(copy, demo["registry"])
    assert any("line 4: signer 'mallory' is not registered" in p for p in problems)
    assert any("says 3 decision(s), the file has 4: a line was appended" in p for p in problems)


def test_deleted_run_data_is_incomplete_unless_the_pack_came_alone(
    copy: RunDir, demo: dict[str, Any]
) -> None:
    shutil.rmtree(copy.snapshot.path)
    shutil.rmtree(copy.mapped.path)
    found = verify_pack(copy, demo["registry"])
    assert found.incomplete and not found.intact and found.exit_code == 1
    assert "INCOMPLETE" in found.tables()[0].title
    alone = verify_pack(copy, demo["registry"], pack_only=True)
    assert alone.intact and "pack only" in alone.tables()[0].title


def test_the_pack_verifies_with_openssl_and_sha256sum_alone(demo: dict[str, Any]) -> None:
    """Runbook 05, "Verify without billmig": the commands as an auditor types them."""
    run, config = demo["run"], demo["config"]
    signer = json.loads(run.signoff.manifest.read_text())["built_by"]["signer"]
    public = config.root / f"runs/demo/signers/{signer}.pub.pem"
    done = subprocess.run(
        ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(public), "-rawin",
         "-in", "signoff/manifest.json", "-sigfile", "signoff/manifest.json.sig"],
        cwd=run.path, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0 and "Signature Verified Successfully" in done.stdout
    sums = hashlib.sha256(run.signoff.checksums.read_bytes()).hexdigest()
    assert sums in run.signoff.manifest.read_text()  # grep "$(sha256sum SHA256SUMS …)"
    checked = subprocess.run(["sha256sum", "--quiet", "-c", "signoff/SHA256SUMS"], cwd=run.path)
    assert checked.returncode == 0
    line = run.signoff.signoffs.read_bytes().splitlines()[0]
    signature = base64.b64decode(run.signoff.signoff_signatures.read_text().splitlines()[0])
    (run.path.parent / "line.json").write_bytes(line)
    (run.path.parent / "line.sig").write_bytes(signature)
    done = subprocess.run(
        ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(public), "-rawin",
         "-in", "../line.json", "-sigfile", "../line.sig"],
        cwd=run.path, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def _forge_report(run: RunDir) -> None:
    report = run.signoff.report_html
    report.write_text(report.read_text(encoding="utf-8").replace("PASS", "PASS!"), "utf-8")
    _rehash_manifest(run)


def _forge_reject_into_approval(run: RunDir) -> None:
    lines = _lines(run)
    lines[-1] = lines[-1].replace(b'"approve"', b'"reject"')
    _rechain(run, lines)


def _forge_deleted_last_line(run: RunDir) -> None:
    run.signoff.signoffs.write_bytes(b"".join(_lines(run)[:-1]))


def _forge_deleted_run_data(run: RunDir) -> None:
    shutil.rmtree(run.snapshot.path)
    shutil.rmtree(run.mapped.path)


@pytest.mark.parametrize(
    "forge",
    [_forge_report, _forge_reject_into_approval, _forge_deleted_last_line,
     _forge_appended_approval, _forge_deleted_run_data],
    ids=lambda f: f.__name__.removeprefix("_forge_"),
)  # fmt: skip
def test_the_gate_refuses_every_forgery(demo: dict[str, Any], tmp_path: Path, forge: Any) -> None:
    run, config = demo["run"], demo["config"]
    kept = tmp_path / "kept"
    shutil.copytree(run.path, kept)
    try:
        forge(run)
        try:
            gate = run_cutover(config, run_id=run.run_id)
        except InputError as refused:  # the ledger saw a changed file: refused before the gate
            assert "stale" in str(refused) or "missing" in str(refused)
        else:
            assert not gate.go and gate.exit_code == 1
            failed = [c for c in gate.checks if not c.passed]
            assert any(c.name.startswith("sign-off pack") for c in failed), failed
    finally:
        shutil.rmtree(run.path)
        shutil.copytree(kept, run.path)
    assert verify_pack(run, demo["registry"]).intact


def test_a_forged_pack_with_a_rebuilt_ledger_is_refused_by_the_gate(
    demo: dict[str, Any],
) -> None:
    run, config = demo["run"], demo["config"]
    report = run.signoff.report_html
    original_report, original_manifest = report.read_bytes(), run.signoff.manifest.read_bytes()
    original_sums, ledger = run.signoff.checksums.read_bytes(), config.runs_path / "ledger.jsonl"
    original_ledger = ledger.read_bytes()
    try:
        report.write_bytes(original_report.replace(b"PASS", b"PASS!"))
        _rehash_manifest(run)
        text = original_ledger.decode()
        old = hashlib.sha256(original_manifest).hexdigest()
        ledger.write_text(text.replace(old, sha256_file(run.signoff.manifest)))  # rebuilt
        gate = run_cutover(config, run_id=run.run_id)
        assert not gate.go and gate.exit_code == 1
        pack = next(c for c in gate.checks if c.name.startswith("sign-off pack"))
        assert not pack.passed and "does not verify" in pack.evidence
    finally:
        report.write_bytes(original_report)
        run.signoff.manifest.write_bytes(original_manifest)
        run.signoff.checksums.write_bytes(original_sums)
        ledger.write_bytes(original_ledger)
    assert verify_pack(run, demo["registry"]).intact


def test_a_rolled_back_run_gets_no_pack_no_decision_and_no_go(demo: dict[str, Any]) -> None:
    """Last in the module: it rolls the demo run back."""
    run, config = demo["run"], demo["config"]
    run_rollback(config, run_id=run.run_id)
    with pytest.raises(InputError, match="rolled back"):
        run_report(config, run_id=run.run_id, signer="demo")
    with pytest.raises(InputError, match="its pack is void"):
        record_signoff(config, run_id=run.run_id, role=ROLES[0], name="x", decision="approve",
                       signer="demo")  # fmt: skip
    gate = run_cutover(config, run_id=run.run_id)
    assert not gate.go
    assert any("rolled back at" in c.evidence for c in gate.checks if not c.passed)
    from validate.pack import verify_run

    assert any(p.startswith("void: run") for p in verify_run(config, run).problems)


def test_a_reject_needs_a_comment(demo: dict[str, Any]) -> None:
    with pytest.raises(InputError, match="a reject needs a comment"):
        record_signoff(demo["config"], run_id=demo["run"].run_id, role=ROLES[2], name="A",
                       decision="reject", signer="demo")  # fmt: skip
