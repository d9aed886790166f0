"""The settings every mapping rule sees: policies of SPEC §5 and the snapshot's moment."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import pandas as pd

from migrate.core.numbering import NumberingPlan, default_plan
from migrate.money.arithmetic import RoundingPolicy


@dataclass(frozen=True)
class MapPolicy:
    """Policies and context of one mapping run (``[map]`` in billmig.toml, and the snapshot)."""

    namespace: str
    """Workspace namespace: seeds the stable IDs."""
    cutoff: datetime
    """The snapshot moment, operator local time (naive)."""
    write_off_below_minor: int = 0
    debt_threshold_minor: int = 500
    small_debt: str = "flag"
    unconsented: str = "flag"
    roaming_lookback_days: int = 30
    rounding: RoundingPolicy = field(default_factory=RoundingPolicy)
    numbering: NumberingPlan = field(default_factory=default_plan)
    """``[numbering]``: which numbers are the operator's mobile lines."""
    """``[money]``: the one rounding step of a prorated first charge (SPEC §2)."""

    @property
    def cutoff_ts(self) -> pd.Timestamp:
        """The cutoff as a pandas timestamp (comparable with snapshot columns)."""
        return pd.Timestamp(self.cutoff)

    @property
    def cutoff_date(self) -> date:
        """Calendar day of the cutoff: the day the new platform starts."""
        return self.cutoff.date()

    @property
    def cutover_month_start(self) -> date:
        """First day of the month the cutoff falls in: when the next monthly fee is taken."""
        return self.cutoff.date().replace(day=1)

    @property
    def cutover_month_end(self) -> date:
        """Last day of the cutover month."""
        start = self.cutover_month_start
        return (start.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)

    @property
    def roaming_since(self) -> pd.Timestamp:
        """Earliest roaming charge that can explain a negative balance."""
        return self.cutoff_ts - pd.Timedelta(days=self.roaming_lookback_days)
