"""Transfer of a SegAN source model to a target modality in every mode, side by side
(Giacomello et al. 2020, Table 3): the source model as it is, fine-tuned in full, fine-tuned
with its critic frozen, and the same architecture trained from scratch; each saved as a
version and scored on the same held-out test slices."""

from __future__ import annotations

from . import segan

MODES = ("full", "frozen_critic", "scratch")
ROW_NAMES = {"source_only": "source only", "full": "full", "frozen_critic": "critic frozen", "scratch": "from scratch"}


def compare_transfer(registry, src: dict, parts, vols: list[dict], modes, config_for, *, name: str, steps: int,
                     device: str, show_stack=None, done: list | None = None):
    """Generator of :class:`~napari_medseg.core.jobs.Progress`; returns the rows.

    ``src``: :func:`segan.load_segan`'s dict with its ``entry``; ``parts``: (train, val, test)
    slices of the target modality (``vols`` their volumes); ``config_for(mode)``: the
    training configuration of a mode; ``name``: the registry name the versions are saved
    under. Each row: ``mode``, the test scores, ``model`` (label), ``version``, ``best_step``,
    ``labels`` (the prediction on ``show_stack``, or None) and ``stopped``. ``done``: a list
    the rows are appended to as they finish, so that a caller sees them after a Stop.
    """
    from ...core.jobs import Progress

    train, val, test = parts
    done = [] if done is None else done
    entry, spacing = src["entry"], vols[0]["spacing"]
    mod = config_for(modes[0]).modality
    seg_arch, crit_arch = src["segmentor"].arch()["kwargs"], src["critic"].arch()["kwargs"]
    total = len(modes) * int(steps)

    def finish(mode, model, e, best_step=None, stopped=False):
        scores = segan.evaluate(model, test, mod, device, spacing)
        pred = None if show_stack is None else segan.predict_slices(model, show_stack, device)
        done.append({"mode": mode, **scores, "model": e.label, "version": e.version, "best_step": best_step,
                     "labels": pred, "stopped": stopped})

    yield Progress(0, total, f"scoring the source model {entry.label} on the {mod} test slices")
    finish("source_only", src["segmentor"], entry)
    for i, mode in enumerate(modes):
        cfg = config_for(mode)
        gen = segan.train_segan_model(
            registry, train, val, cfg, name=name, resume=None if mode == "scratch" else src,
            seg_features=tuple(seg_arch["features"]), critic_features=tuple(crit_arch["features"]),
            data_name=f"{len(vols)} {mod} layer(s) ({mode}): " + ", ".join(v["name"] for v in vols))
        before = {e.version for e in registry.list(name)}
        result, finished = None, False
        try:
            while True:
                try:
                    p = next(gen)
                except StopIteration as end:
                    result, finished = end.value, True
                    break
                yield Progress(i * int(steps) + p.step, total, f"{ROW_NAMES[mode]}: {p.message}",
                               {**p.metrics, "mode": mode, "mode_step": p.step})
        finally:
            gen.close()  # on Stop: the engine saves the best weights so far
            if finished and result and result.get("entry") is not None:
                e = result["entry"]
                finish(mode, e.load(device)[0], e, result.get("best_step"))
            elif not finished:
                new = [e for e in registry.list(name) if e.version not in before]
                if new:
                    finish(mode, new[-1].load(device)[0], new[-1], stopped=True)
    yield Progress(total, total, "done")
    return list(done)
