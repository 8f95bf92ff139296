"""`python -m rlntp ...`: the same as the `rlntp` command."""

from rlntp.cli import main

main()
