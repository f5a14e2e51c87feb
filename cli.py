"""The console entry point (`letterhead`, `python -m cli`): hands over to controlplane/cli."""

from controlplane.cli import main

if __name__ == "__main__":
    main()
