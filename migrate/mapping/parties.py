"""Clients into parties (SPEC §5.8): national IDs, duplicates, damaged names.

Runs on one partition by national ID, so every client sharing an ID is in the same partition.

* A national ID failing the IIN/BIN check is ``INVALID_NATIONAL_ID`` (review): the party
  migrates with no national ID until the client is re-identified.
* Clients sharing one valid national ID merge into one party, the earliest (lowest client id)
  surviving; each merged-away client is ``DUPLICATE_CLIENT`` (info) and its lineage points to
  the surviving party. Accounts of merged clients belong to that party.
* A name showing mojibake is ``ENCODING_DAMAGE`` (review); it migrates as it is, for repair.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from migrate.core.reasons import ReasonCode
from migrate.mapping.identity import damaged_names, merged_away, valid_national_ids
from migrate.mapping.outcomes import (
    EXCEPTION_COLUMNS,
    LINEAGE_COLUMNS,
    Outcome,
    concat,
    id_column,
    lookup,
)
from migrate.mapping.outcomes import exceptions as exception_rows
from migrate.mapping.outcomes import lineage as lineage_rows

PARTY_TYPES = {"individual": "individual", "corporate": "organization"}
UNREADABLE_KEY = f"{ReasonCode.VALUE_UNPARSEABLE.value}: client_id unreadable"
"""Lineage rule of a client without a readable key (its exception names the raw key)."""


@dataclass(frozen=True)
class MappedParties:
    """Parties of one partition and what became of each client."""

    party: pd.DataFrame
    exceptions: pd.DataFrame
    lineage: pd.DataFrame
    merges: pd.DataFrame
    """client_id → survivor_client_id for every merged-away client."""


def map_parties(
    clients: pd.DataFrame, namespace: str, withheld: Mapping[str, str] | None = None
) -> MappedParties:
    """Map one partition of clients.

    A client whose ``client_id`` the extractor could not read (``'one'``, beyond 2^63) is in
    the snapshot with a null key and a blocking exception under its raw key: it becomes no
    party, and the other clients' ids stay integers (never a float round trip to ``'2.0'``).
    A client extract raised a blocking code on (``withheld``: client id → code, e.g. an
    unknown ``client_type``) becomes no party either, and merges with nobody: its lineage
    names the code, and its accounts are held with it.
    """
    unreadable = clients["client_id"].isna().to_numpy()
    clients = clients[~unreadable].reset_index(drop=True)
    clients = clients.assign(client_id=clients["client_id"].astype(np.int64))
    unkeyed = lineage_rows(
        "clients", [None] * int(unreadable.sum()), Outcome.EXCEPTION, UNREADABLE_KEY
    )
    codes = lookup(clients["client_id"].astype(str), dict(withheld or {}))
    held = codes.notna().to_numpy()
    held_lineage = lineage_rows(
        "clients", clients["client_id"][held], Outcome.EXCEPTION, codes[held].astype(str)
    )
    clients = clients[~held].reset_index(drop=True)
    national = pa.array(clients["national_id"].astype(object), type=pa.string())
    valid = valid_national_ids(national)
    damaged = damaged_names(pa.array(clients["name"].astype(object), type=pa.string()))
    order = pa.array(clients["client_id"].to_numpy())
    merged = merged_away(national, order, valid)
    client_ids = clients["client_id"]
    survivors = _survivors(clients, valid, merged)
    survivor_party = id_column(namespace, "party", survivors.astype(str).tolist())
    kept = ~merged
    party_ids = id_column(namespace, "party", client_ids[kept].astype(str).tolist())
    party = pd.DataFrame(
        {
            "party_id": party_ids,
            "national_id": clients["national_id"].where(valid)[kept].array,
            # client_type is required and coded (extract holds any other value): no default
            "party_type": lookup(clients["client_type"][kept], PARTY_TYPES),
            "name": clients["name"][kept].array,
            "legacy_client_id": client_ids[kept].astype(str).array,
        }
    )
    found = [
        exception_rows(
            "clients",
            client_ids[~valid],
            ReasonCode.INVALID_NATIONAL_ID,
            "national ID '"
            + clients["national_id"][~valid].fillna("").astype(str)
            + "' fails the IIN/BIN check; party migrates without it",
        ),
        exception_rows(
            "clients",
            client_ids[merged],
            ReasonCode.DUPLICATE_CLIENT,
            "same national ID as client " + survivors.astype(str) + ", merged into it",
        ),
        exception_rows(
            "clients",
            client_ids[damaged],
            ReasonCode.ENCODING_DAMAGE,
            "name shows mojibake (UTF-8 read as Latin-1); migrated as is for repair",
        ),
    ]
    lineage = concat(
        [
            unkeyed,
            held_lineage,
            lineage_rows("clients", client_ids[kept], Outcome.MAPPED, "party", "party", party_ids),
            lineage_rows(
                "clients",
                client_ids[merged],
                Outcome.MERGED,
                "DUPLICATE_CLIENT",
                "party",
                survivor_party,
            ),
        ],
        LINEAGE_COLUMNS,
    )
    merges = pd.DataFrame(
        {"client_id": client_ids[merged].to_numpy(), "survivor_client_id": survivors.to_numpy()}
    )
    return MappedParties(party, concat(found, EXCEPTION_COLUMNS), lineage, merges)


def _survivors(clients: pd.DataFrame, valid: np.ndarray, merged: np.ndarray) -> pd.Series:
    """For each merged-away client, the lowest client id sharing its national ID."""
    eligible = clients[valid]
    first = eligible.groupby("national_id", sort=False)["client_id"].min()
    return clients["national_id"][merged].map(first).reset_index(drop=True)
