"""Golden event logs: interrupted runs and the full logs they must end with once resumed."""
