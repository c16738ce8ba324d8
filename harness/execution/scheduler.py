"""Scheduling the units of one evaluation (model x shard of images): each unit's maps
are looked up in the salience cache, the missing ones computed by an engine and written
back, then every model's maps are assembled for the measures."""

from __future__ import annotations

import collections
import dataclasses

import numpy as np

from harness.errors import HarnessError
from harness.execution.cache import Entry, entry_key
from harness.execution.engines import ModelRef
from harness.execution.plan import (
    CLEAN,
    INSET,
    SECOND_SEED,
    Group,
    Perturbation,
    Task,
    Unit,
    cascade_step,
    distinct_keys,
    image_hashes,
    model_identity,
    split_units,
)
from harness.maps import ModelMaps, Perturbed, normalize, normalize_upsampled, scale
from harness.salience.curves import CURVE_VERSION
from harness.salience.methods import CODE_VERSION


class Scheduler:
    """The units of one evaluation and the maps they produce: looked up in the cache,
    the rest computed by an engine, then assembled per model."""

    def __init__(self, clfs, inset, oos, config, seed, perts, shard_size, cache):
        self.clfs = {c.name: c for c in clfs}
        self.sets = {INSET: inset} | oos
        self.hashes = {part: image_hashes(s.images) for part, s in self.sets.items()}
        self.config, self.seed, self.cache = config, seed, cache
        self.salience_json = config.to_json()  # part of every key
        self.perts = {INSET: perts} | {part: [CLEAN] for part in oos}
        self.identity = {c.name: model_identity(c) for c in clfs}
        self.units = [u for c in clfs for part, s in self.sets.items()
                      for u in self._split(c.name, part, len(s), shard_size)]
        self.groups = {}  # (model, part, start) -> perturbation -> Group
        self.costs = {}  # (model, part, start) -> forward passes per image of its groups
        self.providers = {}  # model -> providers that computed its maps
        self.first_failure = {}  # model -> index of its first failing unit
        self.computed_passes = self.reused_maps = self.cached_units = self.computed_maps = 0

    def image_keys(self, part: str) -> list[str]:
        """The distinct keys of a set's images (its hashes, made once for the cache)."""
        return distinct_keys(self.hashes[part])

    def _split(self, model: str, part: str, n: int, shard_size: int) -> list[Unit]:
        """Units of at most ``shard_size`` images that never mix images whose maps the
        cache holds whole with images it does not, so a run over a few more images than
        an earlier one (a larger --limit, a full run after a sequential one) reads the
        earlier maps instead of computing their unit again."""
        if self.cache is None or n == 0:
            return split_units(model, part, n, shard_size)
        keys = self._keys(Unit(model, part, 0, n))
        present = self.cache.present([k for ks in keys.values() for k in ks])
        whole = [all(ks[i] in present for ks in keys.values()) for i in range(n)]
        units, start = [], 0
        for i in range(1, n + 1):
            if i == n or whole[i] != whole[start] or i - start == shard_size:
                units.append(Unit(model, part, start, i))
                start = i
        return units

    def _keys(self, unit) -> dict[Perturbation, list[str]]:
        hashes = self.hashes[unit.part][unit.start:unit.stop]
        return {p: [entry_key(self.identity[unit.model], h, p.key, self.salience_json,
                              CURVE_VERSION if p.kind == "curve" else CODE_VERSION)
                    for h in hashes] for p in self.perts[unit.part]}

    def _lookup(self, unit):
        """The unit's groups found whole in the cache, and a task for the rest (or None)."""
        keys = self._keys(unit)
        found = self.cache.get_many([k for ks in keys.values() for k in ks]) \
            if self.cache is not None else {}
        hits = {p: [found[k] for k in ks] for p, ks in keys.items() if all(k in found for k in ks)}
        groups = {p: _group_of(entries) for p, entries in hits.items()}
        for entries in hits.values():
            self.providers.setdefault(unit.model, set()).update(e.provider for e in entries)
        self.reused_maps += sum(len(e) for e in hits.values())
        todo = [p for p in self.perts[unit.part] if p not in groups]
        if not todo:
            return groups, None
        task = Task(unit, self.sets[unit.part].images[unit.start:unit.stop],
                    self.hashes[unit.part][unit.start:unit.stop], todo,
                    groups[CLEAN].maps if CLEAN in groups else None, self.config, self.seed)
        return groups, task

    def run(self, engine, keep_going, progress, on_unit) -> dict[str, str]:
        """Fill every unit's groups; returns model -> why it failed."""
        failed, done, tasks = {}, 0, []
        for unit in self.units:
            groups, task = self._lookup(unit)
            self.groups[(unit.model, unit.part, unit.start)] = groups
            self.costs[(unit.model, unit.part, unit.start)] = [g.passes for g in groups.values()]
            if task is not None:
                tasks.append(task)
                continue
            self.cached_units += 1
            done += 1
            if progress is not None:
                progress(done, len(self.units), unit, self.computed_passes)

        if hasattr(progress, "plan"):
            progress.plan(len(self.units), self.cached_units,
                          sum(self.task_passes(t) for t in tasks))
        # lazily, so an in-process run skips the units of a model once it has failed
        pending = (t for t in tasks if t.unit.model not in failed)
        if hasattr(progress, "start"):
            pending = _announced(pending, progress.start)
        order = {u.id: i for i, u in enumerate(self.units)}
        refs = {name: ModelRef(c.path, c.spec, self.identity[name], c.batch_size, c.timeout)
                for name, c in self.clfs.items()}
        # a model's sessions are closed once its last unit is done (or it failed), so a
        # run of many models holds few at a time
        left = collections.Counter(t.unit.model for t in tasks)
        for name, clf in self.clfs.items():
            if not left[name]:
                clf.release()
        for task, outcome in engine.run(refs, pending):
            unit = task.unit
            left[unit.model] -= 1
            done += 1
            if isinstance(outcome, HarnessError):
                if not keep_going:
                    raise outcome
                # the first failing unit in unit order names the failure, as in-process,
                # whatever order a cluster finishes them in
                if order[unit.id] < self.first_failure.get(unit.model, len(order)):
                    self.first_failure[unit.model] = order[unit.id]
                    failed[unit.model] = str(outcome)
            elif unit.model not in failed:
                provider, computed = outcome
                self._store(unit, task, provider, computed)
                if on_unit is not None:
                    on_unit(unit)
            if left[unit.model] <= 0 or unit.model in failed:
                self.clfs[unit.model].release()
            if progress is not None:
                progress(done, len(self.units), unit, self.computed_passes)
        return failed

    def task_passes(self, task) -> int:
        """The forward passes ``task`` will cost (:meth:`Perturbation.passes`; a curve's
        counted over maps of the settings' grid)."""
        per_map, cells = self.config.passes_per_image(), self.config.grid ** 2
        return len(task.images) * sum(p.passes(per_map, cells) for p in task.todo)

    def _store(self, unit, task, provider, computed):
        keys = self._keys(unit)
        entries = {}
        for p, group in computed.items():
            m = group.maps
            for i, key in enumerate(keys[p]):
                entries[key] = Entry(m.raw[i], float(m.target_score[i]), float(m.target_prob[i]),
                                     int(m.predicted[i]), group.passes, provider)
            self.computed_passes += group.passes * len(task.images)
        self.computed_maps += len(entries)
        if self.cache is not None:
            self.cache.put_many(entries)
        self.groups[(unit.model, unit.part, unit.start)].update(computed)
        self.costs[(unit.model, unit.part, unit.start)] += [g.passes for g in computed.values()]
        self.providers.setdefault(unit.model, set()).add(provider)

    def _concat(self, model, part, pert) -> Perturbed:
        """One perturbation's maps of every shard, joined; the shards' copies are let go."""
        parts = [self.groups[(model, part, u.start)].pop(pert).maps for u in self.units
                 if u.model == model and u.part == part]
        return Perturbed(*(np.concatenate([getattr(p, f.name) for p in parts])
                           for f in dataclasses.fields(Perturbed)))

    def model_maps(self, model) -> ModelMaps:
        """Every map of one model, shards joined in image order (once: the shards'
        groups are dropped as they are joined)."""
        clean = self._concat(model, INSET, CLEAN)
        q, flat = normalize(clean.raw)
        q_up, _ = normalize_upsampled(clean.raw, self.sets[INSET].size)
        perts = self.perts[INSET]

        def of_kind(kind):
            return {p.arg: self._concat(model, INSET, p) for p in perts if p.kind == kind}

        oos = {part: self._concat(model, part, CLEAN).raw for part in self.sets if part != INSET}
        second = self._concat(model, INSET, SECOND_SEED).raw if SECOND_SEED in perts else None
        twins = tuple(self._concat(model, INSET, p) for p in perts if p.kind == "twin")
        cascade = {cascade_step(p.arg): self._concat(model, INSET, p) for p in perts
                   if p.kind == "cascade"}
        return ModelMaps(clean, q, flat, scale(clean.raw)[0], q_up, of_kind("noise"),
                         of_kind("transform"), of_kind("degrade"), oos, second, twins,
                         cascade, of_kind("curve"))

    def passes(self, model) -> int:
        """Forward passes this model's maps cost, computed now or earlier; for a failed
        model, those of its units before the first failing one (what an in-process run
        spends before it stops the model, whatever else a cluster finished)."""
        stop = self.first_failure.get(model, len(self.units))
        return sum(p * (u.stop - u.start) for u in self.units[:stop] if u.model == model
                   for p in self.costs[(model, u.part, u.start)])

    def provider(self, clf) -> str:
        return "+".join(sorted(self.providers.get(clf.name) or {clf.execution}))


def _group_of(entries) -> Group:
    """A cached group: the entries of a shard's images for one perturbation."""
    return Group(Perturbed(np.stack([e.raw for e in entries]),
                           np.array([e.score for e in entries]),
                           np.array([e.prob for e in entries]),
                           np.array([e.predicted for e in entries], np.int64)),
                 entries[0].passes)


def _announced(tasks, start):
    """``tasks``, each announced with ``start(unit)`` as it is taken: in-process, just
    before it is computed."""
    for task in tasks:
        start(task.unit)
        yield task
