#!/usr/bin/env python3
"""Replace the README block between <!-- NAME:begin --> and <!-- NAME:end -->
with the contents of FILE (no change when the README has no such block).

  readme_block.py NAME FILE [README.md]
"""
import sys


def main():
    name, path = sys.argv[1], sys.argv[2]
    readme_path = sys.argv[3] if len(sys.argv) > 3 else "README.md"
    b, e = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    readme = open(readme_path).read()
    if b not in readme or e not in readme:
        return
    head, rest = readme.split(b, 1)
    _, tail = rest.split(e, 1)
    open(readme_path, "w").write(f"{head}{b}\n{open(path).read()}\n{e}{tail}")


if __name__ == "__main__":
    main()
