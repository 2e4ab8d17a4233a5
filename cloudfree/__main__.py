"""Allow ``python -m cloudfree``."""

from cloudfree.cli.launch import main

main()
