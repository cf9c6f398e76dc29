"""Prints an engine's portfolio and its next few lifecycle events, as JSON lines:
    portfolio <JSON array>
    event <JSON object>      (COUNT times)

usage: WHALEWATCHER_LIB=target/release/libwhalewatcher.so \
       python3 examples/python/portfolio_events.py ENGINE [ENDPOINT [COUNT [TIMEOUT_S]]]
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import whalewatcher  # noqa: E402


def main(argv):
    if not 2 <= len(argv) <= 5:
        print(__doc__, file=sys.stderr)
        return 2
    engine = argv[1]
    endpoint = argv[2] if len(argv) > 2 else None
    count = int(argv[3]) if len(argv) > 3 else 5
    timeout_s = float(argv[4]) if len(argv) > 4 else 30
    try:
        with whalewatcher.Watcher(engine, endpoint) as w:
            w.wait_ready(timeout_s)
            print("portfolio", json.dumps(w.portfolio(), separators=(",", ":")), flush=True)
            with w.subscribe() as events:
                seen = 0
                while seen < count:
                    item = events.next(timeout_s)
                    if item is None:
                        print(f"no event within {timeout_s} s", file=sys.stderr)
                        return 1
                    if item["type"] in ("gap", "lagged", "attached", "vanished"):
                        print("note", json.dumps(item), file=sys.stderr)
                        continue
                    print("event", json.dumps(item, separators=(",", ":")), flush=True)
                    seen += 1
    except whalewatcher.WhalewatcherError as e:
        print(e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
