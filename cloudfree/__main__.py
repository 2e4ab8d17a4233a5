"""Allow ``python -m cloudfree``."""

from cloudfree.cli import main

main()
