"""Foundations every stage uses: errors, threads, stop signals, memory, paths, progress,
messages."""
