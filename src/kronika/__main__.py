"""``python -m kronika``: the same as the ``kronika`` command."""

from kronika.cli.app import main

if __name__ == "__main__":
    main()
