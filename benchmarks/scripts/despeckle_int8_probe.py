"""Issue 22: what int8 convolutions would give the despeckler on a CPU without bf16.

The current despeckler (batch norms folded) has its body (the 3x3 convolutions and PReLUs)
quantised to int8 with PyTorch's FX static quantisation (per-channel weights, the x86/fbgemm
engine), calibrated on speckled crops of its *training* images; the output convolutions, tanh,
gate and median stay in fp32. Reported: seconds per 1024^2 tile (fp32 channels-last, as tiled
inference runs it, against int8) and PSNR on the *validation* image (slideflow's tile) at the
bench's four speckle levels. No held-out image is read. A probe, not a shipped path.
Run from the repository root: python benchmarks/scripts/despeckle_int8_probe.py [--json PATH]."""
import json
import sys
import time
import warnings

import numpy as np
import torch

warnings.filterwarnings("ignore")
torch.set_num_threads(2)
from torch.ao.quantization import get_default_qconfig_mapping  # noqa: E402
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx  # noqa: E402

from napari_medseg.core.nets import fuse_conv_bn  # noqa: E402
from napari_medseg.core.registry import Registry  # noqa: E402
from napari_medseg.methods.staining import hne  # noqa: E402
from napari_medseg.methods.staining.speckle import add_speckle, inverted_luma  # noqa: E402

STDS = (0.1, 0.2, 0.35, 0.5)
entry = Registry().get("despeckle")
net = fuse_conv_bn(entry.load("cpu")[0].eval())
split = hne.despeckle_split()
rng = np.random.default_rng(0)
calib = [inverted_luma(c) for c in hne.tissue_crops(split.train, 256, 16, rng)]
calib = torch.from_numpy(np.stack([add_speckle(c, STDS[i % 4], rng) for i, c in enumerate(calib)]))[:, None]

torch.backends.quantized.engine = "x86"
qnet = fuse_conv_bn(entry.load("cpu")[0].eval())
prepared = prepare_fx(qnet.body, get_default_qconfig_mapping("x86"), example_inputs=(calib[:1],))
with torch.inference_mode():
    for i in range(0, len(calib), 4):
        prepared(calib[i : i + 4])
qnet.body = convert_fx(prepared)


def seconds(model, x, n=2):
    with torch.inference_mode():
        model(x)
        t0 = time.perf_counter()
        for _ in range(n):
            model(x)
    return (time.perf_counter() - t0) / n


tile = torch.rand(1, 1, 1024, 1024)
fp32 = net.to(memory_format=torch.channels_last)
out = {"model": entry.label, "engine": "x86", "calibration": "16 speckled 256-px crops of the training images",
       "seconds_per_1024_tile_fp32": seconds(fp32, tile.contiguous(memory_format=torch.channels_last)),
       "seconds_per_1024_tile_int8": seconds(qnet, tile)}
out["speedup"] = out["seconds_per_1024_tile_fp32"] / out["seconds_per_1024_tile_int8"]
clean = inverted_luma(split.val[0])
out["val_psnr_fp32_by_std"], out["val_psnr_int8_by_std"] = {}, {}
for std in STDS:
    noisy = torch.from_numpy(add_speckle(clean, std, np.random.default_rng(1)))[None, None]
    with torch.inference_mode():
        for key, model in (("val_psnr_fp32_by_std", net), ("val_psnr_int8_by_std", qnet)):
            est = model(noisy)[0, 0].numpy()
            mse = float(np.mean((np.clip(est, 0, 1) - clean) ** 2))
            out[key][str(std)] = 10 * np.log10(1.0 / mse)
print(json.dumps(out, indent=2))
if "--json" in sys.argv:
    with open(sys.argv[sys.argv.index("--json") + 1], "w") as f:
        json.dump(out, f, indent=2)
