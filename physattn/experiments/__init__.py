"""Runnable studies, each importable and a `physattn` CLI subcommand."""
