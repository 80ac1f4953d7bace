"""One home per default (issue 20, item 1). The rule (docs/configuration.md, "One home per default"): the
dataclass or class that reads a config node holds its defaults and registers them as `schema/<name>`
(musicvae.config.register_schema); a YAML file pulls that node in and sets only what differs or wires an
interpolation. This walks every file of every config group and fails on a key that restates its default, a
key no code reads, or an object's argument its `_target_` does not take."""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from hydra.utils import get_class

from musicvae.cli.schemas import SCHEMAS
from musicvae.config import schema_defaults

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
SRC = ROOT / "src" / "musicvae"
# Keys of a schema'd node that its class does not hold, and who reads them instead.
READ_ELSEWHERE = {
    "model": {"layers", "compile"},  # layers: interpolated into encoder_/decoder_layers; compile: a run option
    "evaluate": {"ckpt", "control.enabled", "vectors", "device", "data_path", "out_dir"},  # the command's own
    "attributes": {"ckpt", "device", "data_path"},  # the command's own keys (musicvae.cli.attributes)
}
GLOBAL_NODES = {("data",): "data", ("model",): "model", ("kl",): "kl", ("eval", "fidelity"): "fidelity",
                ("media",): "media", ("audio",): "audio", ("optim",): "optim"}  # fmt: skip


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def config_files() -> list[Path]:
    return sorted(p for p in CONFIGS.rglob("*.yaml"))


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


def schema_nodes(path: Path, doc: dict) -> Iterator[tuple[str, dict, str]]:
    """(where, node, schema name) for each node of this file that a schema holds the defaults of."""
    rel = path.relative_to(CONFIGS).as_posix()
    group = rel.rsplit("/", 1)[0] if "/" in rel else ""
    if group in ("data", "kl"):
        yield group, doc, group
    elif rel == "model/transformer.yaml":
        yield "model", doc, "model"
    elif group == "model/conditioning":
        yield "model.conditioning", doc, f"conditioning/{doc.get('mode')}"
    elif rel == "sample.yaml":
        yield "", doc, "sample"
        yield "audio", doc.get("audio"), "audio"
    elif rel in ("evaluate.yaml", "attributes.yaml"):
        yield "", doc, rel.removesuffix(".yaml")
    elif group in ("", "experiment"):  # the commands' own files and experiments: global package
        for keys, name in GLOBAL_NODES.items():
            node = doc
            for k in keys:
                node = node.get(k) if isinstance(node, dict) else None
            if isinstance(node, dict):
                yield ".".join(keys), node, name
        conditioning = (doc.get("model") or {}).get("conditioning")
        if isinstance(conditioning, dict) and "mode" in conditioning:
            yield "model.conditioning", conditioning, f"conditioning/{conditioning['mode']}"


UNSET = object()


def package_of(path: Path) -> str:
    """Where a config file's keys land, as Hydra places them: its group's path ('' for `@package _global_`
    files and the commands' own)."""
    if "@package _global_" in path.read_text() or path.parent == CONFIGS:
        return ""
    return path.parent.relative_to(CONFIGS).as_posix().replace("/", ".")


def referenced(path: Path, entry) -> Path | None:
    """The file a defaults-list entry of `path` pulls in (schema nodes and `_self_`: None)."""
    if isinstance(entry, dict):
        ((key, option),) = entry.items()
        return CONFIGS / key.removeprefix("override ").strip("/") / f"{option}.yaml" if option else None
    if entry == "_self_" or str(entry).startswith("/schema/"):
        return None
    return path.parent / f"{entry}.yaml" if (path.parent / f"{entry}.yaml").is_file() else None


def value_in(path: Path, package: str, name: str):
    """What the global key `name` is set to by `path` (its package `package`) or the presets it pulls in."""
    if package and not (name == package or name.startswith(package + ".")):
        return chain_value(path, name)
    node = load(path)
    for key in name.removeprefix(package).strip(".").split("."):
        node = node.get(key, UNSET) if isinstance(node, dict) else UNSET
    return node if node is not UNSET else chain_value(path, name)


def chain_value(path: Path, name: str):
    """What the presets in `path`'s defaults list set `name` to, the last one winning (UNSET: none does)."""
    value = UNSET
    for entry in load(path).get("defaults", []):
        ref = referenced(path, entry)
        if ref and ref.is_file():
            found = value_in(ref, package_of(ref), name)
            value = found if found is not UNSET else value
    return value


def restated_and_unread(path: Path, where: str, node: dict, defaults: dict, extra: set, rel: str = "") -> Iterator[str]:
    """`extra`: keys (dotted, from the node's root) that the class does not hold and others read."""
    for key, value in node.items():
        if key in ("defaults", "hydra") or key.startswith("_") or (key == "mode" and where.endswith("conditioning")):
            continue
        name = f"{where}.{key}".lstrip(".")
        if key not in defaults:
            if rel + key not in extra:
                yield f"{name}: no field of the class that reads this node (a key no code reads?)"
        elif isinstance(value, dict) and isinstance(defaults[key], dict):
            yield from restated_and_unread(path, name, value, defaults[key], extra, f"{rel}{key}.")
        elif value == defaults[key] and isinstance(value, bool) == isinstance(defaults[key], bool):
            inherited = chain_value(path, name)
            if inherited is UNSET or inherited == value:  # else: it puts the default back over a preset's value
                yield f"{name}: {value!r} restates the default its class holds"


def findings_of(path: Path) -> list[str]:
    doc = load(path)
    found = []
    for where, node, name in schema_nodes(path, doc):
        if node is None or name not in SCHEMAS:
            continue
        source = SCHEMAS[name]
        fields = {f.name for f in dataclasses.fields(source)} if dataclasses.is_dataclass(source) else set()
        read = READ_ELSEWHERE.get(name, set()) | fields | set(getattr(source, "CONFIG_EXCLUDE", ()))
        found += restated_and_unread(path, where, node, schema_defaults(source), read)
    return [f"{shown(path)}: {f}" for f in found]


def targets(node) -> Iterator[dict]:
    if isinstance(node, dict):
        if "_target_" in node:
            yield node
        for value in node.values():
            yield from targets(value)


def bad_arguments(path: Path) -> list[str]:
    found = []
    for node in targets(load(path)):
        params = inspect.signature(get_class(node["_target_"]).__init__).parameters
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            continue
        found += [f"{shown(path)}: {node['_target_']} takes no {k!r}"
                  for k in node if not k.startswith("_") and k not in params]  # fmt: skip
    return found


def test_no_yaml_restates_a_default_or_sets_a_key_nobody_reads():
    assert [f for p in config_files() for f in findings_of(p)] == []


def test_every_object_a_config_builds_takes_its_keys():
    assert [f for p in config_files() for f in bad_arguments(p)] == []


def test_every_schema_yaml_pulls_its_node_in():
    """Each group whose defaults a class holds starts from that class's node."""
    for rel, name in [("data/base.yaml", "data"), ("kl/base.yaml", "kl"), ("model/transformer.yaml", "model"),
                      ("sample.yaml", "sample"), ("evaluate.yaml", "evaluate"), ("attributes.yaml", "attributes")] + [(f"model/conditioning/{m}.yaml", f"conditioning/{m}")
                                                    for m in ("in_attention", "cross_attention")]:  # fmt: skip
        assert any(str(d).startswith(f"/schema/{name}@") for d in load(CONFIGS / rel).get("defaults", [])), rel


def test_the_checks_find_a_restated_default_an_unread_key_and_a_wrong_argument(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "CONFIGS", tmp_path)
    (tmp_path / "kl").mkdir()
    (tmp_path / "kl" / "base.yaml").write_text("schedule: ???\n")
    (tmp_path / "kl" / "x.yaml").write_text("defaults: [base]\nschedule: constant\ncycles: 4\nbeta_max: 2\n")
    (tmp_path / "trainer").mkdir()
    (tmp_path / "trainer" / "x.yaml").write_text("_target_: pytorch_lightning.loggers.CSVLogger\nsave_dir: .\nnope: 1\n")
    found = findings_of(tmp_path / "kl" / "x.yaml")  # schedule: constant puts the default back over base's ???
    assert len(found) == 2, found
    assert found[0].endswith("kl.cycles: 4 restates the default its class holds")
    assert found[1].endswith("kl.beta_max: no field of the class that reads this node (a key no code reads?)")
    (wrong,) = bad_arguments(tmp_path / "trainer" / "x.yaml")
    assert wrong.endswith("pytorch_lightning.loggers.CSVLogger takes no 'nope'")


@pytest.mark.parametrize("name", ["train.yaml", "evaluate.yaml", "attributes.yaml", "prepare_data.yaml"])
def test_every_command_setting_is_read_by_the_code(name):
    """The commands' own keys (seed, optim.lr, eval.au_threshold, ...) each appear in src as a key read."""
    code = "\n".join(p.read_text() for p in SRC.rglob("*.py"))
    doc = load(CONFIGS / name)
    schema_paths = {".".join(keys) for keys in GLOBAL_NODES}  # checked against their classes above
    unread = []

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            if key in ("defaults", "hydra") or prefix + key in schema_paths:
                continue
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            elif not re.search(rf"[.\[\"']{re.escape(key)}\b", code):
                unread.append(prefix + key)

    walk(doc, "")
    assert unread == []
