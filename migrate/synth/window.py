"""``synth --window-activity``: what reaches legacy after the snapshot (SPEC §8; seed 001).

During the restricted-services window (the five days after ``as_of``) legacy keeps rating
calls late and receiving payments through the settlement centre, and some dealers keep
placing orders they should not. Deterministic for a seed, independent of the chunking:

* delayed charges for 3 % of accounts: voice, SMS, data or roaming (10 %), 1.00–600.00 KZT,
  occurred up to a day before the snapshot or during the window, rated after the snapshot;
* settlement-centre payments for 1 % of accounts: 500–5 000 KZT received during the window;
* orders of kinds the window blocks for 0.3 % of accounts, created inside the window (each a
  ``FREEZE_BREACH`` once ``billmig window breaches`` runs).
"""

from __future__ import annotations

import numpy as np

from migrate.synth.generate import DAY, SECOND, Array, SynthOptions, _choice, _format_minor

FIRST_ID = 9_000_000_000
"""Event ids start here, clear of every id the snapshot's generator hands out."""
WINDOW_DAYS = 5
BREACHING_KINDS = ("tariff_change", "new_number", "vas", "sim_swap", "reregistration")


def window_rows(options: SynthOptions) -> dict[str, dict[str, Array]]:
    """The post-snapshot rows per legacy table."""
    rng = np.random.default_rng([options.seed, 8])
    as_of = np.datetime64(options.as_of, "s")
    n = options.accounts
    window = WINDOW_DAYS * 86400

    def accounts(share: float) -> Array:
        chosen = np.flatnonzero(rng.random(n) < share)
        return (4_000_000_001 + chosen).astype(str).astype(object)

    charged = accounts(0.03)
    c = len(charged)
    occurred = as_of + rng.integers(-86400, window, c) * SECOND
    charges = {
        "charge_id": np.arange(FIRST_ID, FIRST_ID + c, dtype=np.int64),
        "account_no": charged,
        "msisdn": np.full(c, None, dtype=object),
        "kind": _choice(rng, ("voice", "sms", "data", "roaming"), (0.5, 0.1, 0.3, 0.1), c),
        "amount": _format_minor(rng.integers(1, 600, c) * 100 + rng.integers(0, 100, c)),
        "currency": np.full(c, "KZT", dtype=object),
        "occurred_at": occurred,
        "rated_at": np.maximum(occurred, as_of) + rng.integers(3600, 2 * 86400, c) * SECOND,
        "roaming_partner": np.full(c, None, dtype=object),
    }
    roaming = charges["kind"] == "roaming"
    charges["roaming_partner"][roaming] = "TUR-TCELL"
    paying = accounts(0.01)
    p = len(paying)
    received = as_of + rng.integers(60, window, p) * SECOND
    payments = {
        "payment_id": np.arange(FIRST_ID, FIRST_ID + p, dtype=np.int64),
        "account_no": paying,
        "amount": _format_minor(rng.integers(5, 51, p) * 100 * 100),
        "currency": np.full(p, "KZT", dtype=object),
        "channel": np.full(p, "settlement_centre", dtype=object),
        "received_at": received,
        "posted_at": received + rng.integers(3600, 86400, p) * SECOND,
    }
    ordering = accounts(0.003)
    o = len(ordering)
    orders = {
        "order_id": np.arange(FIRST_ID, FIRST_ID + o, dtype=np.int64),
        "account_no": ordering,
        "msisdn": np.full(o, None, dtype=object),
        "kind": _choice(rng, BREACHING_KINDS, None, o),
        "created_at": as_of + rng.integers(60, WINDOW_DAYS * DAY // SECOND, o) * SECOND,
        "status": np.full(o, "completed", dtype=object),
    }
    return {"charges": charges, "payments": payments, "orders": orders}
