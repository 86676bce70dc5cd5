"""Exchange: labels exported to and imported from other tools' formats."""
