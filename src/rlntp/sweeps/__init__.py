"""Sweeps: grids of ordinary pretrain/posttrain runs from a file, on a local process pool or a Ray cluster.

`spec` reads and checks a sweep file and expands it into jobs; `engine` runs them (resumable, one
failed run never stops the others) and writes the results table; `executors` says where they run.
"""
