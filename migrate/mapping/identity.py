"""Identity rules (SPEC §5.8): national IDs, phone numbers and damaged names.

* IIN/BIN check digit: weights 1..11 mod 11; if that gives 10, weights 3..11,1,2 mod 11; if 10
  again, the ID is invalid.
* MSISDNs are normalised to E.164 from the ways legacy writes them (``+7 7xx xxx xx xx``,
  ``7…``, ``8…`` with the trunk prefix, a bare national number; ``00`` for ``+``) and must fall
  in a mobile range of the workspace's numbering plan (``[numbering]``, built from the
  phonenumbers metadata: Kazakhstan's ranges by default, Belarus's ``+375 29 …`` when
  configured). A bare national number is read in the first country that takes it.
* Names damaged by a wrong encoding round trip show Latin-1 mojibake of Cyrillic UTF-8
  (``Ð``/``Ñ`` followed by a C1 or Latin-1 symbol character), which no real name contains.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from migrate.core.numbering import NumberingPlan

_WEIGHTS_1 = np.arange(1, 12, dtype=np.int64)
_WEIGHTS_2 = np.array([3, 4, 5, 6, 7, 8, 9, 10, 11, 1, 2], dtype=np.int64)
_MOJIBAKE = "[ÐÑÃÂ][\u0080-\u00bf]"


def valid_national_ids(national_ids: pa.Array) -> npt.NDArray[np.bool_]:
    """True where an IIN/BIN is 12 digits with a correct check digit (nulls are invalid)."""
    texts = pc.fill_null(national_ids.cast(pa.string()), "")
    shaped = pc.match_substring_regex(texts, r"^\d{12}$").to_numpy(zero_copy_only=False)
    valid = np.zeros(len(texts), dtype=np.bool_)
    if not shaped.any():
        return valid
    candidates = np.array(pc.filter(texts, pa.array(shaped)).to_pylist(), dtype="S12")
    digits = candidates.view(np.uint8).reshape(-1, 12).astype(np.int64) - ord("0")
    first = (digits[:, :11] @ _WEIGHTS_1) % 11
    second = (digits[:, :11] @ _WEIGHTS_2) % 11
    check = np.where(first != 10, first, second)
    valid[shaped] = (check != 10) & (check == digits[:, 11])
    return valid


def normalise_msisdns(msisdns: pa.Array, plan: NumberingPlan) -> pa.Array:
    """E.164 form (``+77011234567``) of each number, or null where the plan has no such mobile.

    Column-wise: per country of the plan, the international form (calling code and a mobile
    national number, with or without ``+`` / ``00``) and the national form (an optional trunk
    prefix and a mobile national number, never after a ``+``); the first country that takes a
    number gives its E.164 form.
    """
    texts = pc.fill_null(msisdns.cast(pa.string()), "")
    digits = pc.replace_substring_regex(texts, r"[\s\-().]", "")
    written_international = pc.match_substring_regex(digits, r"^(?:\+|00)")
    digits = pc.replace_substring_regex(digits, r"^(?:\+|00)", "")
    found = pa.nulls(len(digits), pa.string())
    for country in plan.countries:
        code, mobile = country.calling_code, country.mobile
        international = pc.match_substring_regex(digits, rf"^{code}(?:{mobile})$")
        as_international = pc.binary_join_element_wise("+", digits, "")
        trunk = f"(?:{country.trunk})?" if country.trunk else ""
        national_form = rf"^{trunk}((?:{mobile}))$"
        national = pc.and_(
            pc.invert(written_international), pc.match_substring_regex(digits, national_form)
        )
        as_national = pc.replace_substring_regex(digits, national_form, rf"+{code}\1")
        null = pa.scalar(None, pa.string())
        here = pc.if_else(international, as_international, pc.if_else(national, as_national, null))
        found = pc.coalesce(found, here)
    return found


def damaged_names(names: pa.Array) -> npt.NDArray[np.bool_]:
    """True where a name shows encoding damage (UTF-8 Cyrillic read as Latin-1)."""
    texts = pc.fill_null(names.cast(pa.string()), "")
    found = pc.match_substring_regex(texts, _MOJIBAKE)
    return np.asarray(found.to_numpy(zero_copy_only=False), dtype=np.bool_)


def in_duplicate_groups(values: pa.Array, eligible: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """True for every eligible row whose value another eligible row shares (nulls never match).

    Exact across chunks when given the whole column (one MSISDN active on two lines).
    """
    import pandas as pd

    series = pd.Series(values.to_pylist(), dtype=object).where(eligible)
    present = series.notna().to_numpy()
    return np.asarray(series.duplicated(keep=False).to_numpy() & present & eligible)


def merged_away(
    values: pa.Array, order: pa.Array, eligible: npt.NDArray[np.bool_]
) -> npt.NDArray[np.bool_]:
    """True for eligible rows sharing a value with an eligible row of lower ``order``.

    The row with the lowest ``order`` in each group survives (the earliest legacy client);
    the others merge into it and are the ones reported.
    """
    import pandas as pd

    frame = pd.DataFrame({"value": values.to_pylist(), "order": order.to_pylist()})
    frame = frame[eligible & frame["value"].notna().to_numpy()]
    frame = frame.sort_values("order", kind="stable")
    later = frame.index[frame.duplicated("value", keep="first").to_numpy()]
    out = np.zeros(len(values), dtype=np.bool_)
    out[later.to_numpy()] = True
    return out
