"""The Axon tracking controller's fine-tuning rounds: fine-tune on the traces, keep or
gate the new version, roll back, and autosave the corrections (a mixin of
:class:`~.controller.TrackingController`; no Qt widgets)."""

from __future__ import annotations

import datetime as _dt
import json

from ...core.corrections import corrections_dir
from ...core.errors import InputError, MedsegError
from ...methods.tracking import finetune, finetune_round
from ...methods.tracking.curves import arc_length
from ...methods.tracking.env import EnvConfig
from ...methods.tracking.model import MODEL_NAME, policy_from_entry
from ...methods.tracking.track import TrackConfig


class FinetuneRounds:
    """Fine-tuning rounds on the controller's traces (needs the controller's settings,
    registry, runner, layers and messages)."""

    # ------------------------------------------------------------ fine-tune
    def finetune(self, updates: int | None = None, block: bool = False, **ppo):
        """Autosave the traces, fine-tune the agent on them as a new model version (button
        **Fine-tune on corrected traces**). ``ppo``: PPOConfig changes (e.g. episodes_per_batch)."""
        return self._run(lambda: self._start_finetune(updates, ppo), block)

    def _start_finetune(self, updates, ppo):
        self._check_idle()
        s, items = self.settings, self.current_traces()
        if not items:
            raise InputError("There are no traces in the 'traces' layer to learn from: track or import some first.")
        image = self.prepared_image()
        entry = self.entry()
        policy, _ = self.policy()
        traces = [p for _, p in items]
        truths = finetune_round.usable(traces)
        edited = [t for t, p in items if self.layers.is_edited(t, p)]
        saved = self.autosave(items, edited, entry)
        cfg = finetune.finetune_config(updates or s.finetune_updates, device=str(self.device())).replace(**ppo)
        info = {"round": len(self.rounds) + 1, "model": entry.name, "from_version": entry.version,
                "previous_current": self.registry.get(entry.name).version, "n_traces": len(items),
                "edited": edited, "saved": str(saved)}
        longest = max(arc_length(t)[-1] for t in truths) if truths else 100.0
        ev = TrackConfig(check_starts=False, scale=s.scale, max_steps=max(200, int(2 * longest)))

        def job():
            out = yield from finetune_round.finetune_round(
                self.registry, policy, [image], [traces], cfg, ev, name=entry.name,
                env_config=EnvConfig(max_steps=cfg.max_steps, scale=s.scale, agent_input=policy.agent_input),
                extra_meta={"finetuned_from": entry.version, "corrections": str(saved)}, report=info)
            info.update(after=out["after"], gate_after=out["gate_after"], made_current=out["made_current"],
                        held_out=out["held_out"],
                        new_version=out["entry"].version, gate_note=out["note"])
            return out["train"]

        self._say(f"{len(items)} traces ({len(edited)} edited, {len(items) - len(edited)} as tracked) saved to {saved}")
        return self.runner.start(job(), on_done=lambda r: self._finetune_done(info, image, truths, ev))

    def _finetune_done(self, info, image, truths, ev):
        if "new_version" not in info:
            saved = [e for e in self.registry.list(info["model"]) if e.meta.get("finetuned_from") == info["from_version"]
                     and e.version > info["previous_current"]]
            if "before" not in info or not saved:
                return self._say("Fine-tuning stopped before a model was saved; the model is unchanged.")
            new = saved[-1]  # stopped: the best so far was saved, not made current
            info["after"] = finetune.evaluate_traces(policy_from_entry(new)[0], image, truths, ev)
            info.update(new_version=new.version, made_current=False,
                        gate_note=f"v{new.version} was kept but not made current (the round was stopped before it "
                                  f"could be judged). To use it: napari-medseg models restore {info['model']} "
                                  f"{new.version}")
        new = self.registry.get(info["model"], info["new_version"])
        info["version"] = new.version
        self.rounds.append(info)
        self._rollback.append((info["model"], info["previous_current"]))
        self._result = info
        self.settings.version = None
        self._emit("settings")
        self._emit("rounds", info)
        self._say(f"Fine-tuned {new.label}. " + self.round_text(info) + " " + info.get("gate_note", ""),
                  error=not info.get("made_current", True))

    @staticmethod
    def round_text(r) -> str:
        b, a = r["before"], r["after"]
        return (f"round {r['round']}: v{r['from_version']} → v{r['version']}, {r['n_traces']} traces "
                f"({len(r['edited'])} edited): coverage {b['coverage_pct']:.1f} → {a['coverage_pct']:.1f} %, "
                f"error {b['error_px']:.2f} → {a['error_px']:.2f} px")

    def rollback(self):
        """Make the version that was current before the last fine-tuning round current again
        (or, without a round here, the version before the current one)."""
        try:
            self._check_idle()
            if self._rollback:
                name, target = self._rollback.pop()
            else:
                name = self.settings.model or MODEL_NAME
                cur = self.registry.get(name).version
                older = [e.version for e in self.registry.list(name) if e.version < cur]
                if not older:
                    raise InputError(f"{name} v{cur} is the oldest version: there is nothing to roll back to.")
                target = older[-1]
            entry = self.registry.restore(name, target)
        except MedsegError as exc:
            return self._say(str(exc), error=True)
        self.settings.version = None
        self._emit("settings")
        self._say(f"Rolled back: {entry.label} is current again.")
        return entry

    def autosave(self, items, edited, entry):
        folder = corrections_dir(entry.name)
        n = 1 + max((int(p.stem.split("_")[1]) for p in folder.glob("traces_*.swc")), default=0)
        path = folder / f"traces_{n:04d}.swc"
        self.layers.write_swc(path, items)
        img = self.settings.image
        (folder / f"traces_{n:04d}.json").write_text(json.dumps({
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "model": entry.name,
            "version": entry.version, "image_layer": img.name if img is not None else None, "edited": edited,
            "trace_ids": [t for t, _ in items]}, indent=2))
        return path

