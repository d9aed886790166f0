"""Numbers and money as people read them: the locale's separators, major units, the symbol.

Amounts stay integers in minor units everywhere; only the text shown to people is made here,
by Babel from the workspace's ``locale`` (``[workspace] locale``), exactly: the minor units
are scaled by the currency's exponent as a :class:`~decimal.Decimal` and never rounded
(``decimal_quantization=False``), so KWD keeps three decimals and JPY none.
"""

from __future__ import annotations

from decimal import Decimal

from migrate.core.legacy_schema import CURRENCY_EXPONENTS


def money(amount_minor: int, currency: str, locale: str) -> str:
    """Minor units as major-unit text: ``396686885`` KZT in ``ru_KZ`` → ``3 966 868,85 ₸``.

    Exact at any size; a currency of unknown exponent is shown in minor units, saying so.
    """
    from babel.numbers import format_currency

    exponent = CURRENCY_EXPONENTS.get(currency)
    if exponent is None:
        return f"{count(amount_minor, locale)} {currency} minor units"
    major = Decimal(amount_minor).scaleb(-exponent)
    text: str = format_currency(major, currency, locale=locale, decimal_quantization=False)
    return text


def count(number: int, locale: str) -> str:
    """A count with the locale's thousands separator: ``158971`` → ``158 971`` (``ru_KZ``)."""
    from babel.numbers import format_decimal

    text: str = format_decimal(number, locale=locale)
    return text
