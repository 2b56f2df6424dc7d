"""Model configuration: read ``config.pbtxt`` into ModelConfig, auto-complete and check it against a graph."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from .datatypes import datatype_of, type_of
from .errors import InvalidArgument

CONFIG_FILE = "config.pbtxt"

class ConfigError(InvalidArgument):
    pass


def read_config(model_dir: Path) -> mc.ModelConfig:
    """Parse ``<model_dir>/config.pbtxt``; a missing file gives an empty config for auto-complete."""
    path = model_dir / CONFIG_FILE
    cfg = mc.ModelConfig()
    if path.exists():
        try:
            text_format.Parse(path.read_text(), cfg)
        except text_format.ParseError as e:
            # ParseError's text starts with "line:column : message".
            m = re.match(r"(\d+):(\d+) : (.*)", str(e), re.S)
            where = f"line {m.group(1)} column {m.group(2)}: {m.group(3)}" if m else str(e)
            raise ConfigError(f"failed to parse {path}: {where}") from e
    if not cfg.name:
        cfg.name = model_dir.name
    elif cfg.name != model_dir.name:
        raise ConfigError(f"{path}: model name '{cfg.name}' does not match its folder '{model_dir.name}'")
    return cfg


@dataclass(frozen=True)
class TensorSpec:
    """A graph tensor: name, protocol datatype and full shape (-1 for a dynamic dimension)."""

    name: str
    datatype: str
    shape: tuple[int, ...]


def autocomplete(cfg: mc.ModelConfig, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> None:
    """Fill in what Triton's auto-complete would: max_batch_size, inputs and outputs from the graph."""
    batchable = all(t.shape and t.shape[0] == -1 for t in inputs + outputs)
    if not cfg.input and not cfg.output and cfg.max_batch_size == 0 and batchable:
        cfg.max_batch_size = 4
        if not cfg.HasField("dynamic_batching"):
            cfg.dynamic_batching.SetInParent()
    skip = 1 if cfg.max_batch_size > 0 else 0
    if not cfg.input:
        for t in inputs:
            cfg.input.add(name=t.name, data_type=type_of(t.datatype), dims=list(t.shape[skip:]))
    if not cfg.output:
        for t in outputs:
            cfg.output.add(name=t.name, data_type=type_of(t.datatype), dims=list(t.shape[skip:]))
    if not cfg.instance_group:
        cfg.instance_group.add(count=1, kind=mc.ModelInstanceGroup.KIND_CPU)


def _dims_compatible(config_dims: list[int], graph_dims: tuple[int, ...]) -> bool:
    if len(config_dims) != len(graph_dims):
        return False
    return all(c == g or g == -1 or c == -1 for c, g in zip(config_dims, graph_dims))


def check_against_graph(cfg: mc.ModelConfig, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> None:
    """Every configured tensor must exist in the graph with the same datatype and compatible dims."""
    skip = 1 if cfg.max_batch_size > 0 else 0
    for kind, configured, graph in (("input", cfg.input, inputs), ("output", cfg.output, outputs)):
        by_name = {t.name: t for t in graph}
        for c in configured:
            g = by_name.get(c.name)
            if g is None:
                raise ConfigError(
                    f"unable to load model '{cfg.name}', configuration expects {kind} '{c.name}' "
                    f"but the model has {sorted(by_name)}")
            if datatype_of(c.data_type) != g.datatype:
                raise ConfigError(
                    f"unable to load model '{cfg.name}', configuration expects datatype "
                    f"{mc.DataType.Name(c.data_type)} for {kind} '{c.name}', model provides {g.datatype}")
            if skip and (not g.shape or g.shape[0] not in (-1,)):
                raise ConfigError(
                    f"unable to load model '{cfg.name}': max_batch_size > 0 but {kind} '{c.name}' "
                    f"has no dynamic batch dimension")
            dims = list(c.reshape.shape) if c.HasField("reshape") else list(c.dims)
            if not _dims_compatible(dims, g.shape[skip:]):
                raise ConfigError(
                    f"unable to load model '{cfg.name}', {kind} '{c.name}' dims {list(c.dims)} don't match "
                    f"the model's {list(g.shape[skip:])}")
    required = {t.name for t in inputs}
    missing = required - {c.name for c in cfg.input}
    if missing:
        raise ConfigError(f"unable to load model '{cfg.name}', configuration lacks model inputs {sorted(missing)}")


def select_versions(cfg: mc.ModelConfig, available: list[int]) -> list[int]:
    """Apply version_policy (latest 1 by default) to the version folders that exist."""
    available = sorted(available)
    policy = cfg.version_policy
    which = policy.WhichOneof("policy_choice")
    if which == "all":
        return available
    if which == "specific":
        return [v for v in available if v in set(policy.specific.versions)]
    n = policy.latest.num_versions if which == "latest" and policy.latest.num_versions > 0 else 1
    return available[-n:]
