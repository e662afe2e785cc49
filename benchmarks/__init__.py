"""Performance benchmarks for MNIST Lab (scripts, not tests).

Each one runs as `python -m benchmarks.NAME` from the repository root, prints a table, writes
benchmarks/results/NAME.json and ends with one line `RESULT key=value ...`. BENCHMARKS.md gives the
method and the latest figures.
"""
