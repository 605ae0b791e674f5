"""Join a multi-process run, print "ready", then meet the others in a collective every 0.1 s until
killed (the liveness tests kill one process of such a run; no model, so it starts in seconds)."""

from __future__ import annotations

import argparse
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--coordinator", required=True)
    parser.add_argument("--num-processes", type=int, required=True)
    parser.add_argument("--process-id", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args()

    from jax.experimental import multihost_utils

    from sar_jax.training import distributed

    distributed.initialize(args.coordinator, args.num_processes, args.process_id, args.timeout)
    with distributed.errors_stop_every_process():
        multihost_utils.sync_global_devices("start")
        print("ready", flush=True)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            multihost_utils.sync_global_devices("wait")
            time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main())
