"""Issue 5: the staining CycleGAN (Combalia et al. 2019, section 2.2) and its training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_medseg.core import nets
from napari_medseg.core.errors import InputError
from napari_medseg.core.jobs import Job, collect
from napari_medseg.methods.staining.cyclegan import (
    ARCH_NAME, PATCH_SIZE, STRIDE, ImagePool, ResidualBlock, ResnetGenerator, lsgan_loss, patch_discriminator,
    receptive_radius, resize_from)
from napari_medseg.methods.staining.cyclegan_training import lr_at, recalibrate_norm, stain_preview, train_cyclegan
from tests.conftest import randomize_batchnorm



def smooth_images(seed, n=4, size=48, c1=(0.9, 0.3, 0.8), c2=(0.2, 0.1, 0.9)):
    """Smooth random textures blending two colours (a stand-in for a stained slide)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        t = ndimage.gaussian_filter(rng.random((size, size)), 2)
        t = ((t - t.min()) / np.ptp(t))[..., None]
        out.append((t * np.array(c1) + (1 - t) * np.array(c2)).astype(np.float32))
    return out


def test_generator_layout_shapes_and_range():
    torch.manual_seed(0)
    g = nets.build({"name": ARCH_NAME, "kwargs": {"ngf": 4, "n_blocks": 2}})
    assert isinstance(g, ResnetGenerator) and g.arch == {"name": ARCH_NAME, "kwargs": g.config}
    assert not nets.has_instance_norm(g) and any(isinstance(m, torch.nn.BatchNorm2d) for m in g.modules())
    convs = [m for m in g.modules() if type(m) is torch.nn.Conv2d]
    assert [c.stride[0] for c in convs if c.stride[0] > 1] == [2, 2] and convs[1].out_channels == 8
    assert convs[2].out_channels == 16 and convs[0].kernel_size == convs[-1].kernel_size == (7, 7)
    assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in g.modules()) == 2
    assert sum(isinstance(m, ResidualBlock) for m in g.modules()) == 2
    assert STRIDE == 4
    randomize_batchnorm(g)
    for shape in [(1, 3, 32, 32), (2, 3, 36, 44), (1, 3, 8, 12)]:
        y = g(torch.rand(shape) * 2 - 1)
        assert y.shape == shape and y.abs().max() <= 1
    g.model[-2].bias.data.fill_(100.0)  # tanh saturates: still within [-1, 1]
    y = g(torch.rand(1, 3, 16, 16))
    assert torch.allclose(y, torch.ones_like(y))


@pytest.mark.parametrize("upsample", ["transposed", "resize", "bilinear"])
def test_generator_receptive_radius_is_an_exact_bound(upsample):
    torch.manual_seed(0)
    g = randomize_batchnorm(ResnetGenerator(ngf=4, n_blocks=2, upsample=upsample))
    radius = receptive_radius(2, upsample)
    assert radius == {"transposed": 28, "resize": 31, "bilinear": 33}[upsample] and g.receptive_radius == radius
    assert receptive_radius(6) == 60
    if upsample != "transposed":  # resize-convolution: no transposed convolution, and it rebuilds from its arch
        assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in g.modules())
        assert nets.build(g.arch).config["upsample"] == upsample
    x = torch.rand(4, 3, 160, 160) * 2 - 1
    perturbed = x.clone()
    pixels = [(80, 80), (81, 82), (82, 81), (83, 3)]  # every phase of the stride, and one at a border
    for b, (py, px) in enumerate(pixels):
        perturbed[b, :, py, px] += 1.5
    with torch.no_grad():
        changed = (g(perturbed) - g(x)).abs().amax(1) > 0
    reach = []
    for b, (py, px) in enumerate(pixels):
        ys, xs = torch.nonzero(changed[b], as_tuple=True)
        reach.append(int(max((ys - py).abs().max(), (xs - px).abs().max())))
    assert max(reach) == radius, reach  # never farther, and the bound is reached
    assert min(reach) >= radius - 3


def test_discriminator_is_the_70px_patchgan():
    torch.manual_seed(0)
    d = patch_discriminator(ndf=8).eval()
    assert sum(type(m) is torch.nn.Conv2d for m in d.modules()) == 5
    assert [m.stride[0] for m in d.modules() if type(m) is torch.nn.Conv2d] == [2, 2, 2, 1, 1]
    x = torch.rand(1, 3, 160, 160, requires_grad=True)
    out = d(x)
    assert isinstance(out, torch.Tensor) and out.shape == (1, 1, 18, 18)
    out[0, 0, 9, 9].backward()  # one score, far from the borders
    ys, xs = torch.nonzero(x.grad.abs().sum(1)[0], as_tuple=True)
    assert PATCH_SIZE == 70
    assert int(ys.max() - ys.min()) + 1 == 70 and int(xs.max() - xs.min()) + 1 == 70
    assert patch_discriminator(ndf=8)(torch.rand(2, 3, 32, 32)).shape == (2, 1, 2, 2)  # the smallest crop works


def test_image_pool_stores_then_swaps_at_random():
    images = [torch.full((1, 3, 2, 2), float(k)) for k in range(40)]
    assert torch.equal(ImagePool(0).query(images[5]), images[5])
    pool = ImagePool(3, np.random.default_rng(0))
    for k in range(3):  # filling: the new image comes back and is stored
        assert torch.equal(pool.query(images[k]), images[k]) and len(pool) == k + 1
    given, returned_old, returned_new = {0, 1, 2}, 0, 0
    for k in range(3, 40):
        value = int(pool.query(images[k])[0, 0, 0, 0])
        assert value == k or value in given - {k}
        returned_new += value == k
        returned_old += value != k
        given.add(k)
        assert len(pool) == 3
    assert returned_old > 8 and returned_new > 8  # about half each
    stored = sorted(int(im[0, 0, 0, 0]) for im in pool.images)
    assert len(set(stored)) == 3 and all(v in given for v in stored)
    a, b = ImagePool(3, np.random.default_rng(7)), ImagePool(3, np.random.default_rng(7))
    assert [int(a.query(im)[0, 0, 0, 0]) for im in images] == [int(b.query(im)[0, 0, 0, 0]) for im in images]
    batch = ImagePool(2, np.random.default_rng(0)).query(torch.cat(images[:3]))
    assert batch.shape == (3, 3, 2, 2)
    with pytest.raises(ValueError):
        ImagePool(-1)


def test_lsgan_loss_is_mse_to_one_or_zero():
    p = torch.full((2, 1, 3, 3), 0.5)
    assert lsgan_loss(p, True).item() == pytest.approx(0.25) and lsgan_loss(p, False).item() == pytest.approx(0.25)
    assert lsgan_loss(torch.zeros(1, 1, 2, 2), True).item() == 1.0
    assert lsgan_loss(torch.zeros(1, 1, 2, 2), False).item() == 0.0
    assert lsgan_loss(torch.full((1, 1, 2, 2), 3.0), False).item() == 9.0


def test_lr_is_constant_then_decays_linearly_to_zero():
    lr = 2e-4
    first = [lr_at(s, 100, 50, lr) for s in range(1, 101)]
    second = [lr_at(s, 100, 50, lr) for s in range(101, 151)]
    assert all(v == lr for v in first)
    assert all(a > b for a, b in zip(second, second[1:]))
    assert np.allclose(np.diff(second), -lr / 51)
    assert second[-1] == pytest.approx(lr / 51) and lr_at(151, 100, 50, lr) == 0.0
    assert lr_at(10_000, 10_000, 10_000, lr) == lr and lr_at(20_000, 10_000, 10_000, lr) < 1e-3 * lr
    assert lr_at(5, 5, 0, lr) == lr


def test_training_moves_the_colours_toward_domain_b(one_thread):
    a = smooth_images(0)
    b = [im[..., ::-1].copy() for im in smooth_images(1)]  # the same textures, red and blue swapped
    previews, kept = [], []
    reports, summary = collect(train_cyclegan(
        a, b, steps_256=60, steps_512=10, crop_small=32, crop_large=64, ngf=4, n_blocks=1, ndf=8, pool_size=10,
        seed=0, preview=a[0], preview_every=35, on_preview=lambda s, rgb: previews.append((s, rgb)),
        keep=lambda state, m, s: kept.append((s, m))))
    assert [r.step for r in reports] == list(range(1, 71)) and reports[-1].total == 70
    assert "32 px" in reports[0].message and "48 px" in reports[-1].message  # the large crop clipped to the images
    for r in reports:
        assert set(r.metrics) == {"loss_g", "loss_d", "loss_cycle", "loss_identity"}
        assert all(np.isfinite(v) for v in r.metrics.values())
    assert [s for s, _ in previews] == [s for s, _ in kept] == [35, 70]
    assert previews[0][1].shape == (48, 48, 3) and previews[0][1].dtype == np.float32
    assert summary["steps"] == 70 and summary["loss_g"] == reports[-1].metrics["loss_g"]
    assert summary["seconds"] > 0 and summary["arch"]["name"] == ARCH_NAME

    g = ResnetGenerator(ngf=4, n_blocks=1)
    g.load_state_dict(summary["generator_state"], strict=True)
    mean_a, mean_b = np.mean([im.mean((0, 1)) for im in a], 0), np.mean([im.mean((0, 1)) for im in b], 0)
    stained = [stain_preview(g, im, "cpu") for im in a]
    mean_out = np.mean([im.mean((0, 1)) for im in stained], 0)
    gap = np.linalg.norm(mean_a - mean_b)
    assert gap > 0.4
    assert np.linalg.norm(mean_out - mean_b) < 0.5 * gap, (mean_a, mean_b, mean_out)
    ideal = [im[..., ::-1] for im in a]  # B's recipe applied to A: structure kept, colours swapped
    error = np.mean([np.abs(out - want).mean() for out, want in zip(stained, ideal)])
    assert error < 0.5 * np.mean([np.abs(im - want).mean() for im, want in zip(a, ideal)])
    assert np.allclose(stained[0], previews[-1][1], atol=1e-6)  # the last preview is the returned model


def test_input_errors_say_what_is_wrong():
    ok = [np.zeros((40, 40, 3), np.float32)]
    kw = dict(steps_256=1, steps_512=0, crop_small=32)
    cases = [([], ok, "at least one Domain A"), (ok, [], "at least one Domain B"),
             ([np.zeros((40, 40), np.float32)], ok, "RGB"), (ok, [np.zeros((40, 40, 4), np.float32)], "RGB"),
             ([np.full((40, 40, 3), np.nan, np.float32)], ok, "NaN"),
             (ok, [np.zeros((40, 20, 3), np.float32)], "Domain B.*image 0 is 40x20.*32"),
             ([np.full((40, 40, 3), 2.0, np.float32)], ok, r"values in \[0, 1\]")]
    for a, b, message in cases:
        with pytest.raises(InputError, match=message):
            next(train_cyclegan(a, b, **kw))
    with pytest.raises(InputError, match="multiple of 4"):
        next(train_cyclegan(ok, ok, steps_256=1, steps_512=0, crop_small=34))
    with pytest.raises(InputError, match="Preview"):
        next(train_cyclegan(ok, ok, **kw, preview=np.zeros((8, 8))))


def test_stopping_keeps_a_consistent_loadable_generator(one_thread):
    rng = np.random.default_rng(0)
    a = [rng.random((32, 32, 3)).astype(np.float32)]
    torch.manual_seed(1)
    shipped = ResnetGenerator(ngf=4, n_blocks=1)
    before = {k: v.clone() for k, v in shipped.state_dict().items()}
    kept = []
    job = Job(train_cyclegan(a, a, steps_256=50, steps_512=50, crop_small=32, ngf=4, n_blocks=1, ndf=8,
                             preview_every=1000, keep=lambda state, m, s: kept.append((state, m, s)),
                             generators=(shipped, None)))
    for report in job:
        if report.step == 3:
            job.stop()
    assert job.stopped and job.result is None and job.last.step == 3
    assert len(kept) == 1 and kept[0][2] == 3 and set(kept[0][1]) >= {"loss_g", "loss_d"}
    state = kept[0][0]
    assert all(v.device.type == "cpu" for v in state.values())
    fresh = ResnetGenerator(ngf=4, n_blocks=1)
    fresh.load_state_dict(state, strict=True)
    # fine-tuned in place, and the kept copy is exactly the model at the stop, not an alias
    assert not torch.equal(before["model.1.weight"], shipped.state_dict()["model.1.weight"])
    assert all(torch.equal(v, shipped.state_dict()[k].cpu()) for k, v in state.items())
    shipped.model[1].weight.data.zero_()
    assert state["model.1.weight"].abs().sum() > 0
    assert not shipped.training  # handed back in eval mode


def test_recalibrated_norm_makes_eval_mode_match_training_mode():
    torch.manual_seed(0)
    g = randomize_batchnorm(ResnetGenerator(ngf=4, n_blocks=1))  # running statistics far from the truth
    image = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    image = (image + image[::-1] + image[:, ::-1] + image[::-1, ::-1]) / 4  # the random flips leave it unchanged
    x = torch.from_numpy(image.transpose(2, 0, 1)[None] * 2 - 1)
    with torch.no_grad():
        trained_like = g.train()(x)  # each image normalised by its own statistics, as in training
        before = (g.eval()(x) - trained_like).abs().mean()
        recalibrate_norm(g, [image], 32, 8, np.random.default_rng(0), "cpu")
        after = (g(x) - trained_like).abs().mean()
    assert after < 0.01 and before > 0.1, (before, after)
    assert not g.training and all(m.momentum == 0.1 for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_checkpoint_choice_weighs_colour_and_structure():
    from napari_medseg.methods.staining.models import better_checkpoint

    g = 0.40  # Gareau's SSIM
    soft = {"color_distance": 5.0, "ssim": 0.35}  # best palette, but structure lost
    sharp = {"color_distance": 8.0, "ssim": 0.395}
    sharper = {"color_distance": 7.0, "ssim": 0.41}
    assert better_checkpoint(sharp, soft, g) and not better_checkpoint(soft, sharp, g)
    assert better_checkpoint(sharper, sharp, g)  # both keep structure: the palette decides
    assert not better_checkpoint({"color_distance": 9.0, "ssim": 0.5}, sharp, g)
    assert better_checkpoint({"color_distance": 9.0, "ssim": 0.37}, soft, g)  # neither: structure decides


def test_resize_copy_keeps_the_weights_and_loses_the_checkerboard():
    """A transposed-convolution generator's resize-convolution copy (to fine-tune from):
    every other layer is copied, the up-sampling kernels are the transposed ones flipped
    and swapped, and a flat input gives a flat interior (the original's has a period-2
    pattern from the uneven overlap of its stride-2 transposed convolutions)."""
    torch.manual_seed(0)
    g = ResnetGenerator(ngf=4, n_blocks=1).eval()
    randomize_batchnorm(g)
    c = resize_from(g).eval()
    assert c.config["upsample"] == "resize" and "upsample" not in g.config
    convs = [m for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    ups = [m for m in c.modules() if isinstance(m, torch.nn.Conv2d)][5:7]  # after 3 encoder, 2 residual convs
    assert len(convs) == 2
    for t, u in zip(convs, ups):
        assert torch.equal(u.weight, t.weight.transpose(0, 1).flip(2, 3))
    first_g, first_c = g.model[1], c.model[1]
    assert torch.equal(first_g.weight, first_c.weight)
    flat = torch.full((1, 3, 96, 96), 0.3)
    with torch.no_grad():
        before, after = g(flat)[0, :, 32:64, 32:64], c(flat)[0, :, 32:64, 32:64]
    spread = lambda y: float(y.flatten(1).std(1).max())  # noqa: E731 - per channel, over the pixels
    assert spread(before) > 1e-3  # the transposed version: a pattern on a flat input
    assert spread(after) < 1e-5


def test_bilinear_copy_of_a_resize_generator_keeps_every_weight():
    torch.manual_seed(0)
    g = randomize_batchnorm(ResnetGenerator(ngf=4, n_blocks=1, upsample="resize")).eval()
    b = resize_from(g, "bilinear").eval()
    assert b.config["upsample"] == "bilinear" and g.config["upsample"] == "resize"
    assert all(torch.equal(x, y) for x, y in zip(g.state_dict().values(), b.state_dict().values()))
    assert [m.mode for m in b.modules() if isinstance(m, torch.nn.Upsample)] == ["bilinear", "bilinear"]
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert not torch.allclose(g(x), b(x))  # the resizing is what differs
    with pytest.raises(ValueError, match="resize-convolution copy"):
        resize_from(g, "transposed")
