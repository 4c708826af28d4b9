"""One comparison, run fairly: the request validated, every row loaded and warm, then timed one at a time on the
same starting noise (`comparison.Comparison`, `rows.RowSet`)."""
