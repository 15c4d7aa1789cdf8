"""The reporting plugin: results JSON, run archive, compare, HTML (filled in by issue 3)."""
