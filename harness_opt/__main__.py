"""`python -m harness_opt` is the `harness-opt` command (handy when scripts are not on PATH)."""

from harness_opt.cli.app import main

main()
