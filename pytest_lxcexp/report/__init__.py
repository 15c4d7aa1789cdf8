"""Results JSON, archive, compare and the HTML report (pytest-html)."""
