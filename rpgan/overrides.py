"""Settings by name: the one way a `rpgan train` flag, a sweep's search key and a results column
reach a field of the run configuration.

Every scalar field of ModelConfig and TrainConfig is a setting, named as the field (`lr`,
`width`, `routing`, ...), with the type, help and resumability its `rpgan.config.setting`
declares. `Request` is what a user asked `rpgan train` for: a preset with settings on top, or
the run it resumes.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rpgan.config import ModelConfig, RunConfig, TrainConfig, expand_blocks
from rpgan.errors import UserError
from rpgan.presets import DEFAULT_PRESET, get_preset


@dataclass(frozen=True)
class Setting:
    name: str  # the field's name; the flag is --name-with-dashes
    section: str  # "model" or "train"
    kind: Any  # int, float, bool, str or a Literal of the choices
    help: str
    resumable: bool  # may change when a run resumes

    @property
    def flag(self) -> str:
        return f"--{self.name.replace('_', '-')}"

    @property
    def choices(self) -> tuple[str, ...]:
        """The values of a Literal setting (empty for the others)."""
        return typing.get_args(self.kind) if typing.get_origin(self.kind) is typing.Literal else ()


def _settings() -> dict[str, Setting]:
    found = {}
    for section, cls in (("model", ModelConfig), ("train", TrainConfig)):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if "help" in f.metadata:
                found[f.name] = Setting(f.name, section, hints[f.name], f.metadata["help"], f.metadata["resumable"])
    return found


SETTINGS: dict[str, Setting] = _settings()


def with_settings(model: ModelConfig, train: TrainConfig, values: Mapping[str, Any]) -> tuple[ModelConfig, TrainConfig]:
    """The configs with the named settings replaced (not validated)."""
    unknown = set(values) - set(SETTINGS)
    if unknown:
        raise UserError(f"unknown setting {sorted(unknown)[0]!r}; choose from {', '.join(SETTINGS)}")
    by = {"model": {}, "train": {}}
    for name, value in values.items():
        by[SETTINGS[name].section][name] = value
    return dataclasses.replace(model, **by["model"]), dataclasses.replace(train, **by["train"])


@dataclass(frozen=True)
class Request:
    """What a user asked `rpgan train` for: a preset with the settings given on top (None: not given;
    a new run then takes the default preset and seed, a resumed one keeps its own)."""

    preset: str | None = None
    data: str | None = None
    labels: str | None = None
    blocks: str | None = None  # N for every bucket, or a list like 20,20,20,8
    seed: int | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)  # setting name -> value, only those given

    def given(self) -> dict[str, Any]:
        return {k: v for k, v in self.settings.items() if v is not None}

    def new_config(self) -> RunConfig:
        """The preset, with everything the user gave applied on top; UserError if impossible."""
        preset = self.preset or DEFAULT_PRESET
        p = get_preset(preset)
        model, train = with_settings(p.model, p.train, {**self.given(), "seed": self.seed or 0})
        if self.blocks is not None:
            model = dataclasses.replace(model, blocks=expand_blocks(self.blocks, model.natural_n_buckets))
        data = self.data or p.data
        if not data:
            raise UserError(f"preset {preset} has no downloadable data set; pass --data folder:PATH")
        return RunConfig(model=model.validate(), train=train.validate(), data=data, labels=self.labels or "",
                         preset=preset)

    def resumed_config(self, saved: RunConfig, where: str, other: str) -> RunConfig:
        """The saved config of the run at `where`, with the resumable settings given; any other
        value given must agree with it (else UserError naming them and the `other` way out)."""
        given = self.given()
        sections = {"model": saved.model, "train": saved.train}
        clashes = ["--preset"] if self.preset is not None and self.preset != saved.preset else []
        clashes += [SETTINGS[k].flag for k, v in given.items()
                    if not SETTINGS[k].resumable and getattr(sections[SETTINGS[k].section], k) != v]
        if self.data is not None and self.data != saved.data:
            clashes.append("--data")
        if self.labels is not None and self.labels != saved.labels:
            clashes.append("--labels")
        if self.blocks is not None and expand_blocks(self.blocks, saved.model.n_buckets) != saved.model.blocks:
            clashes.append("--blocks")
        if self.seed is not None and self.seed != saved.train.seed:
            clashes.append("--seed")
        if clashes:
            raise UserError(f"{where} was trained with other {', '.join(clashes)}; drop them to resume, "
                            f"or choose another {other}")
        model, train = with_settings(saved.model, saved.train, {k: v for k, v in given.items()
                                                                 if SETTINGS[k].resumable})
        return dataclasses.replace(saved, model=model, train=train.validate())

    def config(self, saved: RunConfig | None, where: str, other: str) -> RunConfig:
        """The resumed run's config if there is one (see resumed_config), else a new one."""
        return self.resumed_config(saved, where, other) if saved else self.new_config()
