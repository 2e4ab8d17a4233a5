"""Allow ``python -m cloudfree``."""

from cloudfree.launch import main

main()
