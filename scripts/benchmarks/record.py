"""What every benchmark script writes last: its result with the machine and the date, as JSON
(atomically) under results/benchmarks/, and on stdout."""

from __future__ import annotations

import json
import os
import platform
import time


def write(result: dict, out) -> None:
    import torch

    from dabench.io import save_json

    result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                         "torch": torch.__version__, "platform": platform.platform()}
    result["date"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    save_json(out, result)
    print(json.dumps(result, indent=2))
