"""`python -m controlplane.cli`: how Letterhead's own background processes run its commands."""

from controlplane.cli import main

main()
