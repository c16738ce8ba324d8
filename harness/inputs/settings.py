"""The settings of one ``harness run``: read from TOML, overridden by flags, validated
once before any work starts.

Every key, its default and its meaning are in docs/running.md's run.toml example (a test
keeps it complete and valid): the top-level keys are :class:`RunConfig`'s fields, the
``[salience]`` table :class:`~harness.salience.settings.SalienceConfig`'s.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from harness.errors import HarnessError, excerpt
from harness.execution.plan import DEFAULT_SHARD
from harness.model.session import DEFAULT_TIMEOUT
from harness.numerics.perturb import NOISE_LEVELS
from harness.results.decision import DecisionConfig
from harness.salience.settings import SalienceConfig
from harness.tomlfile import check_keys, read_toml

_SALIENCE_KEYS = {f.name for f in dataclasses.fields(SalienceConfig)}
_DECISION_KEYS = {f.name for f in dataclasses.fields(DecisionConfig)}


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything a run needs; ``()`` / None mean "the built-in default"."""

    zoo: tuple[Path, ...] = ()
    models: tuple[Path, ...] = ()
    data: Path | None = None
    split: str | None = None
    out_of_set: tuple[Path, ...] = ()
    measures: tuple[str, ...] = ()
    limit: int = 0
    seed: int = 0
    test: str = "bootstrap-t"
    out: Path | None = None
    noise_levels: tuple[float, ...] = NOISE_LEVELS
    sanity_twins: int | None = None
    sanity: str = "twins"  # or "cascade": also redraw the weights layer by layer
    model_timeout: float | None = DEFAULT_TIMEOUT
    cache: Path | None = None
    shard_size: int = DEFAULT_SHARD
    engine: str = "in-process"
    scheduler: str | None = None
    workers: int | None = None
    # sequential evaluation (harness.sequential): look after every `look` images, stop
    # when the questions of `rules` (against `baseline_run`) or of the decision are
    # decided, at most `budget` images (0: all)
    until_decided: bool = False
    rules: Path | None = None
    baseline_run: Path | None = None
    look: int = 10
    budget: int = 0
    salience: SalienceConfig = SalienceConfig()
    decision: DecisionConfig = DecisionConfig()

    @property
    def cache_dir(self) -> Path:
        """The salience cache folder: ``<out>/cache`` unless given."""
        return self.cache if self.cache is not None else self.out / "cache"


_TOP_KEYS = {f.name for f in dataclasses.fields(RunConfig)}
_PATH_LISTS = ("zoo", "models", "out_of_set")  # settings that name files
_PATH_KEYS = ("data", "out", "cache", "rules", "baseline_run")
# A time limit beyond this (11.6 days) is no limit, and inf or 1e300 overflow the timer.
MAX_TIMEOUT = 10**6
MAX_TWINS = 1000  # each twin is a graph held in memory and a map of every image


def _integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) \
        and math.isfinite(value)


def read_config(path) -> dict:
    """Read a run TOML into keyword overrides for :func:`build_config` (paths resolved
    against the file's folder)."""
    path = Path(path)
    doc = read_toml(path, "config file")
    for key in doc:  # a salience setting written at the top, the commonest slip
        if key not in _TOP_KEYS and key in _SALIENCE_KEYS:
            raise HarnessError(f"{path}: unknown key {key!r} at the top; did you mean "
                               f"[salience] {key}?")
    check_keys(doc, _TOP_KEYS, str(path))
    salience = doc.pop("salience", {})
    if not isinstance(salience, dict):
        raise HarnessError(f"{path}: [salience] must be a table")
    for key in salience:
        if key not in _SALIENCE_KEYS and key in _TOP_KEYS:
            raise HarnessError(f"{path}: unknown key {key!r} under [salience]; did you mean "
                               f"{key} at the top, before [salience]?")
    check_keys(salience, _SALIENCE_KEYS, f"{path} [salience]")
    decision = doc.pop("decision", {})
    if not isinstance(decision, dict):
        raise HarnessError(f"{path}: [decision] must be a table")
    check_keys(decision, _DECISION_KEYS, f"{path} [decision]")
    root = path.parent
    for key in _PATH_LISTS:
        if key in doc:
            values = doc[key] if isinstance(doc[key], list) else [doc[key]]
            if not all(isinstance(v, str) for v in values):
                raise HarnessError(f"{path}: {key} must be a path or a list of paths")
            doc[key] = tuple(root / v for v in values)
    for key in _PATH_KEYS:
        if key in doc:
            if not isinstance(doc[key], str):
                raise HarnessError(f"{path}: {key} must be a path (a string)")
            doc[key] = root / doc[key]
    if "measures" in doc and isinstance(doc["measures"], str):
        doc["measures"] = tuple(m.strip() for m in doc["measures"].split(","))
    return {**doc, **{f"salience.{k}": v for k, v in salience.items()},
            **{f"decision.{k}": v for k, v in decision.items()}}


def build_config(default_measures=None, **settings) -> RunConfig:
    """A validated RunConfig from settings (``salience.<key>`` for salience fields,
    ``decision.<key>`` for the decision's);
    ``None`` values are ignored so flags that were not given do not override the file.
    ``default_measures``: what ``measures = ()`` stands for (default: all seven; a
    parity run: none), for the check of the grid against them.

    Raises:
        HarnessError: a value out of range or of the wrong kind, naming the setting.
    """
    top, sal, dec = {}, {}, {}
    for key, value in settings.items():
        if value is None:
            continue
        if key.startswith("salience."):
            sal[key.split(".", 1)[1]] = value
        elif key.startswith("decision."):
            dec[key.split(".", 1)[1]] = value
        elif key in _TOP_KEYS:
            top[key] = value
        else:
            check_keys([key], _TOP_KEYS, "run settings")
    salience = SalienceConfig.checked(**sal)
    config = RunConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in top.items()},
                       salience=salience, decision=DecisionConfig.checked(**dec))
    if not _integer(config.limit) or config.limit < 0:
        raise HarnessError(f"limit must be an integer >= 0, got {excerpt(config.limit)}")
    # a seed past int64 fails only when the results are written, after all the work
    if not _integer(config.seed) or not 0 <= config.seed < 2**63:
        raise HarnessError(f"seed must be an integer in [0, 2^63), got {excerpt(config.seed)}")
    from harness.stats.paired import TESTS

    if config.test not in TESTS:
        raise HarnessError(f"test must be one of {', '.join(TESTS)}, got "
                           f"{excerpt(config.test)}")
    if not isinstance(config.measures, tuple) or not all(
            isinstance(m, str) for m in config.measures):
        raise HarnessError(f"measures must be a list of measure names, got "
                           f"{excerpt(config.measures)}")
    levels = config.noise_levels
    if not isinstance(levels, tuple) or not levels \
            or any(not _number(a) or not 0 < a <= 1 for a in levels) \
            or list(levels) != sorted(set(levels)):
        raise HarnessError(f"noise_levels must be increasing numbers in (0, 1], got "
                           f"{excerpt(levels)}")
    if config.sanity_twins is not None and not (
            _integer(config.sanity_twins) and 1 <= config.sanity_twins <= MAX_TWINS):
        raise HarnessError(f"sanity_twins must be an integer in [1, {MAX_TWINS}], got "
                           f"{excerpt(config.sanity_twins)}")
    if config.sanity not in ("twins", "cascade"):
        raise HarnessError(f'sanity must be "twins" or "cascade", got {excerpt(config.sanity)}')
    if config.model_timeout is not None and not (
            _number(config.model_timeout) and 0 < config.model_timeout <= MAX_TIMEOUT):
        raise HarnessError(f"model_timeout must be a number of seconds > 0 and at most "
                           f"{MAX_TIMEOUT:,}, got {excerpt(config.model_timeout)}")
    if not _integer(config.shard_size) or config.shard_size < 1:
        raise HarnessError(f"shard_size must be an integer >= 1, got "
                           f"{excerpt(config.shard_size)}")
    from harness.execution.engines import ENGINES

    if config.engine not in ENGINES:
        raise HarnessError(f"engine must be one of {', '.join(ENGINES)}, got "
                           f"{excerpt(config.engine)}")
    if config.workers is not None and (not _integer(config.workers) or config.workers < 1):
        raise HarnessError(f"workers must be an integer >= 1, got {excerpt(config.workers)}")
    for key in ("split", "scheduler"):
        if getattr(config, key) is not None and not isinstance(getattr(config, key), str):
            raise HarnessError(f"{key} must be a string, got {excerpt(getattr(config, key))}")
    if config.engine != "dask" and (config.scheduler or config.workers):
        raise HarnessError("scheduler and workers need engine = \"dask\" (--engine dask)")
    for key in ("look", "budget"):
        value = getattr(config, key)
        if not _integer(value) or value < (1 if key == "look" else 0):
            raise HarnessError(f"{key} must be an integer >= {1 if key == 'look' else 0}, "
                               f"got {excerpt(value)}")
    if not isinstance(config.until_decided, bool):
        raise HarnessError(f"until_decided must be true or false, got "
                           f"{excerpt(config.until_decided)}")
    if not config.until_decided and (config.rules or config.baseline_run):
        raise HarnessError("rules and baseline_run belong to --until-decided; to gate a "
                           "finished run use harness gate RUN --rules FILE --baseline DIR")
    if config.baseline_run is not None and config.rules is None:
        raise HarnessError("baseline_run needs rules (--rules gate.toml): they say what a "
                           "regression is")
    from harness.measures import DEFAULT, check_grid, get_measures

    implied = DEFAULT if default_measures is None else default_measures
    check_grid(get_measures(list(config.measures or implied)), config.salience)
    return config




def to_json(config: RunConfig) -> dict:
    """The config as JSON-ready settings that :func:`from_json` turns back into it.
    Paths are made absolute, so a run can be resumed from another folder."""
    out = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field.name in _PATH_LISTS:
            value = [str(Path(p).resolve()) for p in value]
        elif field.name in _PATH_KEYS and value is not None:
            value = str(Path(value).resolve())
        elif isinstance(value, tuple):
            value = list(value)
        out[field.name] = value
    out["salience"] = dataclasses.asdict(config.salience)
    out["decision"] = {"objective": config.decision.objective,
                       "constraints": list(config.decision.constraints)}
    return out


_EMPTY = {"zoo": "the built-in zoo (unless models are given)",
          "out_of_set": "the zoo's own out-of-set sets", "measures": "all seven"}


def to_toml(config: RunConfig) -> str:
    """The config as a run.toml that :func:`read_config` reads back into it (paths
    absolute; a setting left to its built-in choice is a comment saying so)."""
    import json

    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return json.dumps(v) if isinstance(v, str) else repr(v)

    settings = to_json(config)
    salience = settings.pop("salience")
    decision = settings.pop("decision")
    unset = {"data": "the zoo's own data", "split": "the zoo's split", "out": "results/<time>",
             "cache": "OUT/cache", "scheduler": "a local cluster",
             "workers": "one per core", "model_timeout": "no limit",
             "sanity_twins": "50 with cam, 10 otherwise"}
    lines = []
    for key, v in settings.items():
        if v is None:
            lines.append(f"# {key}: not set ({unset.get(key, 'built-in default')})")
        elif v == [] and key in _EMPTY:
            lines.append(f"{key} = []  # {_EMPTY[key]}")
        else:
            lines.append(f"{key} = {value(v)}")
    lines += ["", "[salience]"] + [
        f"# {k}: not set (cam: the last spatial feature map)" if v is None
        else f"{k} = {value(v)}" for k, v in salience.items()]
    lines += ["", "[decision]"] + [f"{k} = {value(v)}" for k, v in decision.items()]
    return "\n".join(lines) + "\n"


def from_json(settings: dict) -> RunConfig:
    """Inverse of :func:`to_json` (settings as read back from plan.json)."""
    doc = dict(settings)
    salience = doc.pop("salience", {})
    decision = doc.pop("decision", {})
    for key in _PATH_LISTS:
        doc[key] = tuple(Path(p) for p in doc.get(key, ()))
    for key in _PATH_KEYS:
        if doc.get(key) is not None:
            doc[key] = Path(doc[key])
    return build_config(**doc, **{f"salience.{k}": v for k, v in salience.items()},
                        **{f"decision.{k}": v for k, v in decision.items()})
