"""A separate worker process for the shared-state tests: `python provider_worker.py MODE ARGS_JSON`.

Runs against the database named by DATABASE_URL (the test database) and prints
one JSON line with what happened."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mytrader.settings")

import django  # noqa: E402

django.setup()

from enrichment.providers.clients import get_client  # noqa: E402
from enrichment.providers.errors import ProviderError  # noqa: E402


def main() -> None:
    mode, args = sys.argv[1], json.loads(sys.argv[2])
    client = get_client(
        args["provider"],
        max_attempts=1,
        rate_window=args.get("window"),
        rate_max_wait=60,
        batched=args.get("batched", False),
    )
    outcomes, sends = [], []
    send = client.session.get

    def timed_get(*args, **kwargs):  # when each request left this process (wall clock)
        sends.append(time.time())
        return send(*args, **kwargs)

    client.session.get = timed_get
    for _ in range(args["calls"]):
        try:
            client.fetch_asset_info(provider_symbol=args["symbol"])
            outcomes.append("ok")
        except ProviderError as exc:
            outcomes.append(exc.reason or "error")
    client.close()
    print(json.dumps({"mode": mode, "outcomes": outcomes, "sends": sends}))


if __name__ == "__main__":
    main()
