"""``python -m edgeconv ...``: the same CLI as the ``edgeconv`` command."""
from edgeconv.cli import main

if __name__ == "__main__":
    main(prog_name="edgeconv")
