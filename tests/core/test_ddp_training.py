"""Data-parallel training (torchrun, DDP over gloo on CPU): two ranks train what one
process trains on both ranks' batches (or, where a single-process replay is not possible,
keep one set of weights), only rank 0 writes, and the CLI runs under torchrun."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from napari_medseg.core import distributed
from napari_medseg.core.jobs import collect
from napari_medseg.core.training import train_supervised

STEPS, BATCH = 5, 3


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 1))


def _batch(rank: int, step: int):
    """The patches rank ``rank`` draws at ``step`` (a fixed function, so a single process
    can replay both ranks' batches)."""
    g = torch.Generator().manual_seed(1000 * rank + step)
    x = torch.rand(BATCH, 1, 12, 12, generator=g)
    return x, 0.5 * x.roll(1, dims=-1) + 0.1


def _validate(net):
    x, y = _batch(7, 0)
    return {"mse": float(torch.nn.functional.mse_loss(net(x), y))}


def _rank_main(rank: int, store: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    torch.set_num_threads(1)
    with distributed.leaving_group_after():
        model, saved = _model(), []
        gen = train_supervised(model, lambda s: _batch(rank, s), torch.nn.functional.mse_loss, steps=STEPS,
                               lr=1e-2, validate=_validate, val_every=2, monitor="mse", mode="min",
                               save_best=lambda state, m, step: saved.append(step))
        reports, result = collect(gen)
        torch.save({"state": model.state_dict(), "saved": saved, "losses": [r.metrics["loss"] for r in reports],
                    "best_step": result["best_step"]}, f"{out}/rank{rank}.pt")


def test_two_ranks_train_what_one_process_trains_on_both_batches(tmp_path):
    mp.spawn(_rank_main, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    # DDP keeps the ranks' weights identical ...
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k
    # ... and averaging the ranks' gradients is one step on their concatenated batches
    single = _model()
    both = lambda s: tuple(torch.cat(t) for t in zip(_batch(0, s), _batch(1, s)))  # noqa: E731
    _, result = collect(train_supervised(single, both, torch.nn.functional.mse_loss, steps=STEPS, lr=1e-2,
                                         validate=_validate, val_every=2, monitor="mse", mode="min"))
    for k, v in single.state_dict().items():
        assert torch.allclose(r0["state"][k], v, atol=1e-5), k
    assert r0["state"]["0.weight"].abs().sum() != _model().state_dict()["0.weight"].abs().sum()  # it trained
    # only rank 0 saves; both agree on the best step and report the same (rank-mean) losses
    assert r0["saved"] and r1["saved"] == []
    assert r0["best_step"] == r1["best_step"] == result["best_step"]
    np.testing.assert_allclose(r0["losses"], r1["losses"], rtol=1e-6)


def _averaging_rank(rank: int, store: str, out: str) -> None:
    """A loop that runs the model twice per step (as the joint trainer does), its gradients
    averaged by hand; rank 1 starts from other weights, which the broadcast replaces."""
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    torch.set_num_threads(1)
    with distributed.leaving_group_after():
        model = _model()
        if rank == 1:
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(1.0)
        distributed.broadcast_weights(model)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for step in range(1, STEPS + 1):
            x, y = _batch(rank, step)
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y) + 0.5 * torch.nn.functional.mse_loss(model(y), x)
            loss.backward()
            distributed.average_gradients(model)
            opt.step()
        torch.save(model.state_dict(), f"{out}/avg{rank}.pt")


def test_gradient_averaging_by_hand_equals_one_process_on_both_batches(tmp_path):
    mp.spawn(_averaging_rank, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"avg{r}.pt", weights_only=True) for r in (0, 1))
    single = _model()
    opt = torch.optim.Adam(single.parameters(), lr=1e-2)
    for step in range(1, STEPS + 1):
        (x0, y0), (x1, y1) = _batch(0, step), _batch(1, step)
        opt.zero_grad()
        loss = sum(torch.nn.functional.mse_loss(single(x), y) + 0.5 * torch.nn.functional.mse_loss(single(y), x)
                   for x, y in ((x0, y0), (x1, y1))) / 2
        loss.backward()
        opt.step()
    for k, v in single.state_dict().items():
        assert torch.equal(r0[k], r1[k]), k
        assert torch.allclose(r0[k], v, atol=1e-5), k


def _gan_losses(g, d, batches):
    """D and G losses (least squares) averaged over ``batches``; one rank passes its own."""
    def d_loss():
        return sum(((d(y) - 1) ** 2).mean() + (d(g(x).detach()) ** 2).mean() for x, y in batches) / len(batches)

    def g_loss():
        return sum(((d(g(x)) - 1) ** 2).mean() + torch.nn.functional.l1_loss(g(x), y) for x, y in batches) / len(batches)

    return d_loss, g_loss


def _gan_nets(shift: float = 0.0):
    g = _model()
    torch.manual_seed(1)
    d = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3, stride=2), torch.nn.ReLU(), torch.nn.Conv2d(3, 1, 3))
    with torch.no_grad():
        for p in [*g.parameters(), *d.parameters()]:
            p.add_(shift)
    return g, d


def _gan_rank(rank: int, store: str, out: str) -> None:
    """The adversarial methods' trainer (core.adversarial.gan) on two ranks: rank 1 starts
    from other weights (the trainer broadcasts rank 0's) and draws its own batches."""
    from napari_medseg.core.adversarial.gan import AdversarialTrainer

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    torch.set_num_threads(1)
    with distributed.leaving_group_after():
        g, d = _gan_nets(1.0 if rank else 0.0)
        trainer = AdversarialTrainer(g, d, torch.optim.Adam(g.parameters(), lr=1e-2),
                                     torch.optim.Adam(d.parameters(), lr=1e-2), amp=False)
        for step in range(1, STEPS + 1):
            trainer.step(*_gan_losses(g, d, [_batch(rank, step)]))
        torch.save({"g": g.state_dict(), "d": d.state_dict()}, f"{out}/gan{rank}.pt")


def test_adversarial_trainer_on_two_ranks_equals_one_process_on_both_batches(tmp_path):
    from napari_medseg.core.adversarial.gan import AdversarialTrainer

    mp.spawn(_gan_rank, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"gan{r}.pt", weights_only=True) for r in (0, 1))
    g, d = _gan_nets()
    trainer = AdversarialTrainer(g, d, torch.optim.Adam(g.parameters(), lr=1e-2),
                                 torch.optim.Adam(d.parameters(), lr=1e-2), amp=False)
    for step in range(1, STEPS + 1):
        trainer.step(*_gan_losses(g, d, [_batch(0, step), _batch(1, step)]))
    for net, single in (("g", g), ("d", d)):
        for k, v in single.state_dict().items():
            assert torch.equal(r0[net][k], r1[net][k]), (net, k)
            assert torch.allclose(r0[net][k], v, atol=1e-5), (net, k)
    assert not torch.equal(r0["g"]["0.weight"], _gan_nets()[0].state_dict()["0.weight"])  # it trained


def _cyclegan_rank(rank: int, store: str, out: str) -> None:
    from napari_medseg.methods.staining.cyclegan_training import train_cyclegan

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    torch.set_num_threads(1)
    with distributed.leaving_group_after():
        rng = np.random.default_rng(5)
        a = [rng.random((48, 48, 3)).astype(np.float32) for _ in range(2)]
        b = [rng.random((48, 48, 3)).astype(np.float32) for _ in range(2)]
        kept = []
        _, result = collect(train_cyclegan(a, b, steps_256=3, steps_512=0, crop_small=32, ngf=4, n_blocks=1,
                                           preview_every=3, keep=lambda state, m, step: kept.append(step),
                                           seed=rank * 7))  # a different seed: the broadcast must even it out
        torch.save({"g": result["generator_state"], "kept": kept}, f"{out}/cg{rank}.pt")


def test_cyclegan_on_two_ranks_keeps_one_set_of_weights_and_only_rank_0_keeps(tmp_path):
    mp.spawn(_cyclegan_rank, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"cg{r}.pt", weights_only=True) for r in (0, 1))
    weights = [k for k in r0["g"] if "running_" not in k and "num_batches" not in k]  # BN statistics are per rank
    assert len(weights) > 4
    for k in weights:
        assert torch.equal(r0["g"][k], r1["g"][k]), k  # averaged updates from the same start
    assert r0["kept"] == [3] and r1["kept"] == []


def test_one_process_is_unchanged():
    assert not distributed.active() and distributed.is_main() and distributed.world_size() == 1
    assert distributed.rank_seed(5) == 5
    model = _model()
    assert distributed.wrap(model, torch.device("cpu")) is model
    assert distributed.mean_metrics({"loss": 0.5}) == {"loss": 0.5}
    model.zero_grad()
    model(torch.ones(1, 1, 4, 4)).sum().backward()
    before = [p.grad.clone() for p in model.parameters()]
    distributed.average_gradients(model)
    assert all(torch.equal(a, p.grad) for a, p in zip(before, model.parameters()))
    assert distributed.init_from_env(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("method, model, extra", [
    ("tissue", "tissue", []),
    ("despeckle", "despeckle", ["--patch", "32", "--batch-size", "2"]),
    ("joint", "joint_lesion_tissue", ["--shape", "32,36,32", "--spacing", "5", "--subjects", "1", "--patch", "16"]),
    ("adversarial_segmentation", "chen_cardiac", ["--phantoms", "2", "--batch-size", "2"]),
    ("modality_transfer", "segan_tumour", ["--phantoms", "3", "--batch-size", "2"]),
    ("site_normalization", "delisle_normalization", ["--phantoms", "2", "--batch-size", "2"]),
])
def test_torchrun_trains_on_two_ranks_into_one_version(tmp_path, method, model, extra):
    torchrun = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable), "torchrun")
    env = {**os.environ, "NAPARI_MEDSEG_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "napari_medseg", "train",
                           method, "--steps", "2", "--device", "cpu", *extra], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    versions = sorted((tmp_path / "home" / "models" / model).glob("v*.pt"))
    assert len(versions) == 1  # rank 1 saved nothing
    assert proc.stdout.count(f"saved {model}") == 1
    # rank 0's run folder is dropped when its version is saved; a second rank's would be left over
    runs = tmp_path / "home" / "models" / model / "runs"
    assert not runs.exists() or not any(runs.iterdir())


def _failing_rank(rank: int, store: str, out: str) -> None:
    """Rank 1 fails mid-run: it must leave the group without waiting at the barrier (rank 0
    would never arrive there), so the error reaches the launcher instead of a hang."""
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        with distributed.leaving_group_after():
            if rank == 1:
                raise RuntimeError("rank 1 broke")
            dist.barrier()  # rank 0 would wait here for a peer that never comes
    except RuntimeError as exc:
        with open(f"{out}/rank{rank}.txt", "w") as f:
            f.write(f"{type(exc).__name__}: {exc}; group left: {not dist.is_initialized()}")
        if rank == 1:
            raise


def test_a_failing_rank_leaves_the_group_and_reports_its_error(tmp_path):
    with pytest.raises(mp.ProcessRaisedException, match="rank 1 broke"):
        mp.spawn(_failing_rank, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    assert (tmp_path / "rank1.txt").read_text() == "RuntimeError: rank 1 broke; group left: True"


def _box_rank(rank: int, store: str, out: str) -> None:
    """The box-supervised session on two ranks, each with its own registry folder: Stage 1
    (two rounds) then Stage 2 (one round, from the best Stage-1 round), adversarial mode on."""
    from napari_medseg.core.registry import Registry
    from napari_medseg.methods.box_iterative.stages import IterativeTraining, StageConfig
    from napari_medseg.methods.box_iterative.synthetic import synthetic_kidney

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    torch.set_num_threads(1)
    with distributed.leaving_group_after():
        a, b, c = (synthetic_kidney((512, 512), seed, density=3.0) for seed in (11, 12, 13))
        reg = Registry(shipped_root=f"{out}/none", user_root=f"{out}/reg{rank}")
        s = IterativeTraining(reg, StageConfig(steps=3, patch=128, batch_size=2, tile=512, adversarial=0.1),
                              workdir=f"{out}/w{rank}")
        s.set_stage1([a.rgb, b.rgb], [a.boxes, b.boxes])
        s.set_stage2([c.rgb])
        s.set_validation([c.rgb], [c.mask])
        collect(s.stage1(2))
        collect(s.stage2(1))
        labels = np.asarray(s.slides[2][0].labels)
        torch.save({"state": s.model.state_dict(), "history": [(r.stage, r.round, r.version) for r in s.history],
                    "metrics": [r.metrics for r in s.history], "labels": torch.from_numpy(labels.copy())},
                   f"{out}/box{rank}.pt")


def test_box_iterative_rounds_on_two_ranks_keep_one_model_and_only_rank_0_writes(tmp_path):
    mp.spawn(_box_rank, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"box{r}.pt", weights_only=False) for r in (0, 1))
    for k in r0["state"]:  # DDP steps and the same cues between rounds: one model on both ranks
        assert torch.equal(r0["state"][k], r1["state"][k]), k
    assert r0["history"] == r1["history"] == [(1, 1, 1), (1, 2, 2), (2, 1, 3)]
    assert r0["metrics"] == r1["metrics"] and "object_f1" in r0["metrics"][0]
    assert torch.equal(r0["labels"], r1["labels"])  # Stage 2's cues saw the same segmentation on both
    assert sorted(p.name for p in (tmp_path / "reg0" / "glomeruli").glob("v*.pt")) == [
        "v0001.pt", "v0002.pt", "v0003.pt"]
    assert not (tmp_path / "reg1").exists() or not any((tmp_path / "reg1").rglob("*.pt"))  # rank 1 wrote nothing


def _ppo_rank(rank: int, store: str, out: str) -> None:
    """The PPO tracker on two ranks: each rank its own episodes, rank 1 starting from other
    weights (rank 0's are broadcast), gradients averaged in every minibatch."""
    from napari_medseg.methods.tracking.env import EnvConfig
    from napari_medseg.methods.tracking.policy import BetaPolicy
    from napari_medseg.methods.tracking.ppo import PPOConfig, train_tracker

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    torch.set_num_threads(1)
    with distributed.leaving_group_after():
        env = EnvConfig(max_steps=12)
        torch.manual_seed(rank)  # a different start on each rank
        policy = BetaPolicy(3 * env.history, 4 * env.history, env.view_size, env.max_displacement)
        seen, saved = [], []

        def episodes(index, n):
            seen.append(index)
            from napari_medseg.methods.tracking.ppo import synthetic_episodes

            return synthetic_episodes("SI", 3)(index, n)

        config = PPOConfig(updates=3, episodes_per_batch=2, max_steps=12, update_epochs=2, num_minibatches=3,
                           eval_every=1, val_episodes=2)
        _, result = collect(train_tracker(config, policy=policy, env_config=env, episodes=episodes,
                                          save_best=lambda state, m, at: saved.append(at)))
        torch.save({"state": result["state_dict"], "seen": seen, "saved": saved, "best_step": result["best_step"],
                    "history": result["history"]}, f"{out}/ppo{rank}.pt")


def test_ppo_tracker_on_two_ranks_splits_the_episodes_and_keeps_one_policy(tmp_path):
    mp.spawn(_ppo_rank, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"ppo{r}.pt", weights_only=False) for r in (0, 1))
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k  # one policy: same start, averaged updates
    # the ranks split the batches (rank r: b * 2 + r) and share the validation set (-1)
    assert [i for i in r0["seen"] if i >= 0] == [0, 2, 4] and [i for i in r1["seen"] if i >= 0] == [1, 3, 5]
    assert r0["best_step"] == r1["best_step"] and r0["saved"] and r1["saved"] == []
    for h0, h1 in zip(r0["history"], r1["history"]):  # rank-mean training metrics, identical validation
        assert h0["coverage_pct"] == pytest.approx(h1["coverage_pct"]) and h0["val_coverage_pct"] == h1["val_coverage_pct"]
