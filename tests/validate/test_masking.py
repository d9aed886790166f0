"""Masking that holds: no personal value in any file of a default pack, however it is written.

The fixture is a synthetic legacy database at the highest anomaly rate, then damaged the way
real systems damage personal data (the shapes are listed in ``MALFORMED_IDS`` and
``MALFORMED_NUMBERS``: spaces, dashes, prefixes, a doubled plus, other countries' numbers, too
few or too many digits). Every name, national ID and number of the legacy database — these
included — is searched for in every file of the default pack: HTML, the PDF's text, CSV and
JSON. The unmasked pack says so on every PDF page.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import pypdf
import pytest

from migrate.core.config import load_config
from migrate.core.numbering import build_plan
from migrate.extract.run import run_extract
from migrate.load.run import run_load
from migrate.mapping.run import run_map
from migrate.synth import SynthOptions, run_synth
from tests.migrate.helpers import new_workspace
from validate.masking import Masker
from validate.report import run_report
from validate.run import run_validate

MALFORMED_IDS = (
    "400406 355305", "4004-0635-5305", "IIN400406355305", "40040635530", "4004063553051",
    " 900101300456 ", "９00101300456",
)  # fmt: skip
"""National IDs as legacy systems mangle them (the first is the issue's own example)."""
MALFORMED_NUMBERS = (
    "++77011234553", "8 (701) 123-45-54", "7011234555", "+375291234556", "+7 701 123 45 5",
    "77O11234558", "0077011234559", "+7-701-123-45-60-61",
)  # fmt: skip
"""Numbers as legacy systems mangle them: doubled plus, no country code, Belarus, too short,
a letter O, an international prefix, too long."""


@pytest.fixture(scope="module")
def damaged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("masking")
    url = new_workspace(root)
    run_synth(url, SynthOptions(accounts=3_000, seed=11, anomaly_rate=0.04), root / "p.json")
    legacy = root / "legacy.sqlite"
    with sqlite3.connect(legacy) as db:
        clients = [c for (c,) in db.execute("SELECT client_id FROM clients ORDER BY client_id")]
        for client, value in zip(clients[::97], MALFORMED_IDS, strict=False):
            db.execute("UPDATE clients SET national_id = ? WHERE client_id = ?", (value, client))
        lines = [i for (i,) in db.execute('SELECT iccid FROM "lines" ORDER BY iccid')]
        for iccid, value in zip(lines[::89], MALFORMED_NUMBERS, strict=False):
            db.execute('UPDATE "lines" SET msisdn = ? WHERE iccid = ?', (value, iccid))
    environ = {"BILLMIG_SOURCE_URL": url, "BILLMIG_TARGET_URL": f"sqlite:///{root / 't.sqlite'}"}
    config = load_config(root / "billmig.toml", environ=environ)
    run_extract(config, run_id="damaged")
    run_map(config, run_id="damaged")
    run_load(config, run_id="damaged")
    run_validate(config, run_id="damaged")
    report = run_report(config, run_id="damaged")
    return {"root": root, "config": config, "legacy": legacy, "pack": report.directory}


def personal_values(legacy: Path) -> tuple[set[str], set[str], set[str]]:
    """Digits of every number and ID (10 or more), their written forms, and full names."""
    with sqlite3.connect(legacy) as db:
        names = {n for (n,) in db.execute("SELECT name FROM clients") if n}
        ids = {str(i) for (i,) in db.execute("SELECT national_id FROM clients") if i}
        numbers = {str(m) for (m,) in db.execute('SELECT msisdn FROM "lines"') if m}
    digits = {re.sub(r"\D", "", v) for v in numbers | ids}
    written = {v.strip() for v in numbers | ids if not v.strip().isdigit()}
    return {d for d in digits if len(d) >= 10}, {w for w in written if len(w) >= 6}, names


def pack_texts(pack: Path) -> dict[str, str]:
    """Every file of a pack as text (the PDF's extracted text)."""
    texts = {}
    for path in sorted(pack.rglob("*")):
        if path.suffix == ".pdf":
            texts[path.name] = " ".join(p.extract_text() for p in pypdf.PdfReader(path).pages)
        elif path.suffix == ".sig":
            continue  # raw signature bytes
        elif path.is_file():
            texts[path.name] = path.read_text(encoding="utf-8")
    return texts


def leaks(pack: Path, legacy: Path) -> list[tuple[str, str]]:
    """(file, value) for every personal value of the legacy database found in the pack."""
    digits, written, names = personal_values(legacy)
    found = []
    for name, text in pack_texts(pack).items():
        flat = re.sub(r"[\s\-()]", "", text)
        found += [(name, d) for d in sorted(set(re.findall(r"\d{10,}", flat)) & digits)]
        found += [(name, w) for w in sorted(written) if w in text]
        words = re.findall(r"\w+", text)
        grams = {" ".join(words[i : i + k]) for k in (2, 3) for i in range(len(words))}
        found += [(name, n) for n in sorted(grams & names)]
    return found


def test_the_damaged_values_are_in_the_exceptions(damaged: dict[str, Any]) -> None:
    text = (damaged["pack"] / "exceptions.csv").read_text(encoding="utf-8")
    assert text.count("INVALID_NATIONAL_ID") >= len(MALFORMED_IDS)
    assert text.count("INVALID_MSISDN") >= len(MALFORMED_NUMBERS)


def test_no_personal_value_in_any_file_of_the_default_pack(damaged: dict[str, Any]) -> None:
    assert leaks(damaged["pack"], damaged["legacy"]) == []


def test_the_unmasked_pack_says_so_on_every_page(damaged: dict[str, Any]) -> None:
    config = damaged["config"]
    try:
        unmasked = run_report(config, run_id="damaged", unmasked=True)
        pages = pypdf.PdfReader(unmasked.directory / "report.pdf").pages
        assert len(pages) > 1
        assert all("UNMASKED" in page.extract_text() for page in pages)
        assert leaks(unmasked.directory, damaged["legacy"])  # the real values are there
    finally:
        run_report(config, run_id="damaged")


def test_pseudonyms_need_the_workspace_secret() -> None:
    one, other = Masker("a" * 64), Masker("b" * 64)
    assert one.text("ID 400101401106") == one.text("ID 400101401106")
    assert one.text("ID 400101401106") != other.text("ID 400101401106")


def test_a_known_number_after_a_plus_is_masked_once() -> None:
    masker = Masker("k" * 64).with_numbers(["77711234553"])
    assert masker.text("number +77711234553 is invalid") == "number +7 771 *** ** 53 is invalid"


def test_the_masking_secret_is_made_once_and_a_broken_one_refused(tmp_path: Path) -> None:
    from migrate.core.errors import ConfigError
    from validate.masking import masking_secret

    (tmp_path / "billmig.toml").write_text((Path(__file__).parents[2] / "billmig.toml").read_text())
    config = load_config(tmp_path / "billmig.toml", environ={})
    first = masking_secret(config)
    assert masking_secret(config) == first and len(first) == 64
    secrets = tmp_path / ".secrets.toml"
    assert oct(secrets.stat().st_mode & 0o777) == "0o600"
    secrets.write_text("[masking]\n")
    with pytest.raises(ConfigError, match="32 characters or more"):
        masking_secret(config)


def test_numbers_of_every_country_of_the_plan_are_masked() -> None:
    """Before: only Kazakh numbers were recognised; +375 numbers reached packs in clear."""
    plan = build_plan(("KZ", "BY"), (("KZ", ("701", "707")),))
    masker = Masker("k" * 40, plan=plan).with_numbers(["80 29 123 45 67"])
    text = (
        "lines +375 (29) 765-43-21 and 375447654321 and 80 29 123 45 67 "
        "and +7 701 123 45 67 and 87071234567"
    )
    assert masker.text(text) == (
        "lines +375 297 *** ** 21 and +375 447 *** ** 21 and +375 291 *** ** 67 "
        "and +7 701 *** ** 67 and +7 707 *** ** 67"
    )
