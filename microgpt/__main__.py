"""`python -m microgpt`: see microgpt/cli.py."""

import sys


def run():
    """Import the CLI and run it; a Ctrl-C even while Python is still importing is one quiet line."""
    try:
        from microgpt.cli import main
        return main()
    except KeyboardInterrupt:
        print("microgpt: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(run())
