"""Review: decisions on labels, the catalog rows the pages show, and background jobs."""
