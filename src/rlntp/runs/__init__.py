"""Run directories: what every stage writes, and how it is claimed, checkpointed and resumed.

Layout of a pre- or post-training run directory:

    config.json                    the full resolved config ({"stage": ..., "task": ..., ...})
    metrics.jsonl                  one JSON object per evaluation (`step`, `samples_seen`, `eval/...`)
    checkpoints/step_0000500/      one per save, all kept (`checkpoints`)
    rlntp.lock                     held by the process writing the run (`dirs.DirLock`)
    plot.png                       written by `rlntp plot`

    dirs.py         claiming a directory (runs, sweeps, recipes) and its lock; the resume point of a run
    checkpoints.py  saving, verifying and loading checkpoints (safetensors and JSON; nothing is unpickled)
    metrics.py      metrics.jsonl

A new run goes only into a missing or empty directory, an existing one is continued only with
`--resume`, and one process at a time writes it. Everything is written to a temporary name and
renamed into place, so a kill at any moment leaves either the previous complete file or the new
complete one. Every reader turns a damaged file into one line naming the file (and the line of
metrics.jsonl).
"""
