"""The Textual app. Only this package imports Textual; it drives ``pipeline.Pipeline`` and shows
what ``triage`` computes."""
