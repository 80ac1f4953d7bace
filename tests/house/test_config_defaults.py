"""One home per default (issue 20, item 1). The rule (docs/configuration.md, "One home per default"): the
dataclass or class that reads a config node holds its defaults and registers them as `schema/<name>`
(musicvae.config.register_schema); a YAML file pulls that node in and sets only what differs or wires an
interpolation. This walks every file of every config group and fails on a key that restates its default, a
key no code reads, or an object's argument its `_target_` does not take."""

from __future__ import annotations

import ast
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
    "evaluate": {"ckpt", "control.enabled", "fidelity", "floor_ckpt", "vectors", "device", "data_path", "out_dir"},  # the command's own
    "attributes": {"ckpt", "device", "data_path"},  # the command's own keys (musicvae.cli.attributes)
}
GLOBAL_NODES = {("data",): "data", ("model",): "model", ("kl",): "kl", ("eval", "fidelity"): "fidelity", ("eval", "pieces"): "pieces",
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


# ----- the same rule in code: a default restated as a literal where code reads its key ------------------------
# A restatement: `def f(key=LITERAL)`, a class-level `key: T = LITERAL`, or a fallback `x.get("key", LITERAL)` /
# `getattr(x, "key", LITERAL)` in src/, where `key` is a key of a schema'd node and LITERAL equals its default,
# outside that setting's home. The homes: each schema class, the dataclasses its fields nest (DataConfig's
# `attributes`), and, for one key, a class a field takes that key's default from (`max_tokens: int =
# SamplingConfig.max_tokens` makes SamplingConfig the home of max_tokens, not of its other fields). A literal where some home of a key of that name sits is
# no restatement (data.max_tokens and sample.max_tokens are two settings, 512 each). 0 and 1, None and booleans
# are off/identity values every setting shares and are not checked; the name-and-value match is what a scan can
# see (a literal under another name, `threshold=0.01`, is not found: reference the home there).
NOT_CHECKED_DIRS = {"benchmarks": "a benchmark fixes its own sizes, so timings stay comparable whatever the defaults"}
KEYS_NOT_SETTINGS = {  # keys whose name in code means a function's own fallback, not a node's setting
    "device": "'cpu': where tensors go when the caller says nothing, in every function that moves them",
    "batch_size": "how many a function takes at once: each node has its own (8, 16, 32) and callers pass it",
}
KNOWN_RESTATED: dict[tuple[str, str], str] = {}  # (file under src/musicvae, key): a known restatement, to move home


def setting_defaults() -> dict[str, list]:
    """{key: [default of every schema'd node's setting of that name]} (leaves of nested nodes by their own key)."""
    found: dict[str, list] = {}

    def walk(node: dict) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value)
            elif isinstance(value, int | float | str) and not isinstance(value, bool) and value not in (0, 1):
                found.setdefault(key, []).append(value)

    for source in SCHEMAS.values():
        walk(schema_defaults(source))
    return found


EVERY_KEY = "*"


def homes() -> set[tuple[Path, str, str]]:
    """(file, class name, key) of every home: a schema class and the dataclasses its fields nest hold every
    key in them (EVERY_KEY); a class one of their fields takes its default from (`field: T = Other.key`) holds
    that key."""
    found = set()
    for source in SCHEMAS.values():
        found.add((Path(inspect.getsourcefile(source)), source.__name__, EVERY_KEY))
        for f in dataclasses.fields(source) if dataclasses.is_dataclass(source) else ():
            nested = f.default_factory if f.default_factory is not dataclasses.MISSING else type(f.default)
            if dataclasses.is_dataclass(nested):
                found.add((Path(inspect.getsourcefile(nested)), nested.__name__, EVERY_KEY))
        module = sys.modules[source.__module__]
        for node in ast.walk(ast.parse(inspect.cleandoc("\n" + inspect.getsource(source)))):
            if isinstance(node, ast.AnnAssign) and isinstance(node.value, ast.Attribute) and isinstance(node.value.value, ast.Name):
                other = getattr(module, node.value.value.id, None)
                if isinstance(other, type):
                    found.add((Path(inspect.getsourcefile(other)), other.__name__, node.value.attr))
    return found


def literal(node: ast.AST | None):
    """The value of a literal default (-0.5 included), else None."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        return -node.operand.value if isinstance(node.operand.value, int | float) else None
    return node.value if isinstance(node, ast.Constant) else None


def keyed_literals(tree: ast.AST) -> Iterator[tuple[str, ast.AST, str | None]]:
    """(key, literal node, enclosing class or None) for every keyword default, class-level field and
    .get / getattr fallback of a module."""

    def visit(node: ast.AST, owner: str | None, in_function: bool) -> Iterator[tuple[str, ast.AST, str | None]]:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            a = node.args
            positional = a.posonlyargs + a.args
            with_default = positional[len(positional) - len(a.defaults) :]
            pairs = [*zip(with_default, a.defaults, strict=True), *zip(a.kwonlyargs, a.kw_defaults, strict=True)]
            yield from ((arg.arg, default, owner) for arg, default in pairs if default is not None)
            in_function = True
        elif isinstance(node, ast.ClassDef):
            owner, in_function = node.name, False
        elif isinstance(node, ast.AnnAssign) and not in_function and isinstance(node.target, ast.Name) and node.value:
            yield node.target.id, node.value, owner
        elif isinstance(node, ast.Call) and len(node.args) >= 2:
            f = node.func
            key_at = 0 if isinstance(f, ast.Attribute) and f.attr == "get" and len(node.args) == 2 else (
                1 if isinstance(f, ast.Name) and f.id == "getattr" and len(node.args) == 3 else None)  # fmt: skip
            if key_at is not None and isinstance(literal(node.args[key_at]), str):
                yield node.args[key_at].value, node.args[-1], owner
        for child in ast.iter_child_nodes(node):
            yield from visit(child, owner, in_function)

    yield from visit(tree, None, False)


def restated_in_code(src: Path) -> list[str]:
    defaults, home = setting_defaults(), homes()
    found = []
    for path in sorted(src.rglob("*.py")):
        rel = path.relative_to(src).as_posix()
        if rel.split("/")[0] in NOT_CHECKED_DIRS:
            continue
        for key, node, owner in keyed_literals(ast.parse(path.read_text())):
            value = literal(node)
            if key in KEYS_NOT_SETTINGS or (rel, key) in KNOWN_RESTATED or {(path, owner, EVERY_KEY), (path, owner, key)} & home:
                continue
            if isinstance(value, int | float | str) and not isinstance(value, bool) and value in defaults.get(key, ()):
                found.append(f"{rel}:{node.lineno}: {key}={value!r} restates a config default: read it from its home")
    return found


def test_no_code_restates_a_default_as_a_literal():
    assert restated_in_code(SRC) == []


def test_the_code_check_finds_a_restated_default(tmp_path):
    (tmp_path / "scratch.py").write_text(
        "def f(cfg, au_threshold: float = 0.01, top_p=0.9, threshold=0.01, seed=0):\n"
        "    return cfg.get('au_threshold', 0.01), getattr(cfg, 'max_tokens', 512)\n"
        "class Settings:\n"
        "    max_tokens: int = 512\n"
        "    au_threshold: float = 0.02\n"
    )
    found = [f.split(": ", 1)[0] + " " + f.split(": ")[1].split(" ")[0] for f in restated_in_code(tmp_path)]
    assert found == ["scratch.py:1 au_threshold=0.01", "scratch.py:1 top_p=0.9", "scratch.py:2 au_threshold=0.01",
                     "scratch.py:2 max_tokens=512", "scratch.py:4 max_tokens=512"]  # fmt: skip
