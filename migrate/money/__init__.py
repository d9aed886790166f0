"""Money as integer minor units: exact reading of legacy amounts, proration, rounding."""
