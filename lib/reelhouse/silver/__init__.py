"""Silver: bronze events cleaned for analysis — deduplicated, late-data policy applied,
sessionised and joined with the user and video dimensions (maintained with Delta MERGE)."""
