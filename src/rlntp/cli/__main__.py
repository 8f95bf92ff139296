"""`python -m rlntp.cli ...`: the same as the `rlntp` console script."""

from rlntp.cli import main

main()
