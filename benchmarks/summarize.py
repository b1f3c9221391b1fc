"""Print the headline figures of benchmark JSON files (one line per file and per target)."""

from __future__ import annotations

import json
import sys


def main() -> None:
    for path in sys.argv[1:]:
        try:
            r = json.load(open(path))
        except (OSError, ValueError) as exc:
            print(path, "unreadable:", exc)
            continue
        print(path, {k: v for k, v in r.items() if not isinstance(v, dict)})
        for target, row in r.get("per_target", {}).items():
            print("  ", target, {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})


if __name__ == "__main__":
    main()
