"""Seconds per 1024² tile of two shipped despeckle versions, in one process, in fp32 and in
bf16 (where the CPU has it), batch norms folded and channels-last, as the pipeline runs them
(the rule for a U-shaped despeckler, docs/benchmarks.md, 2026-12-07).

    python benchmarks/scripts/despeckle_tile_speed.py 3 4 benchmarks/staining-despeckle-tile-speed.json
"""

import json
import platform
import sys
import time

import torch

from napari_medseg.bench.staining_slide import shipped_entry
from napari_medseg.core.nets import fuse_conv_bn


def seconds(net, bf16: bool, repeats: int = 5) -> float:
    x = torch.rand(1, 1, 1024, 1024).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        net(x)
        best = float("inf")
        for _ in range(repeats):  # the best of several: this shared CPU's noise only adds time
            t0 = time.perf_counter()
            net(x)
            best = min(best, time.perf_counter() - t0)
    return best


def main(a: int, b: int, out: str) -> None:
    nets = {}
    for v in (a, b):
        entry = shipped_entry("despeckle", v)
        nets[v] = fuse_conv_bn(entry.load("cpu")[0].eval()).to(memory_format=torch.channels_last)
    bf16_ok = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    result = {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
              "bf16_supported": bool(bf16_ok), "seconds_per_1024_tile": {}}
    for bf16 in (False, True) if bf16_ok else (False,):
        for _round in range(2):  # alternate, so drift in the machine's speed hits both
            for v, net in nets.items():
                key = f"v{v}_{'bf16' if bf16 else 'fp32'}"
                s = seconds(net, bf16)
                result["seconds_per_1024_tile"][key] = min(s, result["seconds_per_1024_tile"].get(key, s))
    t = result["seconds_per_1024_tile"]
    result["ratio_b_over_a"] = {p: t[f"v{b}_{p}"] / t[f"v{a}_{p}"] for p in ("fp32", "bf16") if f"v{a}_{p}" in t}
    print(json.dumps(result, indent=1))
    with open(out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
