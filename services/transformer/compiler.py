"""Mapping files → compiled `Mapping`s, every problem of every file reported at once.

Each file is checked against the JSON Schema shipped in `mappings/mapping.schema.json`,
then against the Avro schemas: every target is a `CanonicalProduct` field a mapping may
set, every conversion, constant and default fits that field's type, every `@field`
source is a string field of `RawItem` and every column name fits the shape of the
RawItem row's keys; patterns and expressions are compiled. An override names its base
with `extends:` and replaces the base's rules field by field (`null` removes one).
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from services.common.errors import ConfigError
from services.common.serde import Serde, default_serde
from services.common.settings import ROOT
from services.transformer.convert import CONVERSIONS, TEXT_STEPS
from services.transformer.expressions import ExpressionError, compile_expression
from services.transformer.mapping import FieldRule, Mapping, Passthrough, TargetType
from services.transformer.patterns import Pattern, PatternError

JSON_SCHEMA = ROOT / "mappings" / "mapping.schema.json"
# Set by the transformer itself, or (attributes) built from `attributes:`.
NOT_MAPPABLE = frozenset(
    {
        "tenant",
        "op",
        "attributes",
        "mapping_name",
        "mapping_version",
        "sync_id",
        "trace_id",
        "source_fingerprint",
    }
)
ALWAYS_REQUIRED = frozenset({"sku", "name"})
# The keys of RawItem's `row` map: Siesa column names, and `custom:*`-style extensions.
COLUMN = re.compile(r"[A-Za-z_][A-Za-z0-9_:.\-]{0,127}")
BARCODE_KINDS = frozenset({"EAN13", "EAN8", "UPC_A", "OTHER"})
ATTRIBUTE = TargetType("scalar", nullable=True)


def target_type(avro: Any) -> TargetType:
    nullable = False
    if isinstance(avro, list):
        nullable = "null" in avro
        (avro,) = [branch for branch in avro if branch != "null"]
    if isinstance(avro, dict) and avro.get("type") == "enum":
        return TargetType("enum", nullable, frozenset(avro["symbols"]))
    if isinstance(avro, dict) and "logicalType" not in avro:
        return TargetType(str(avro["type"]), nullable)
    kind = str(avro["type"] if isinstance(avro, dict) else avro)
    return TargetType({"int": "long", "float": "double"}.get(kind, kind), nullable)


@dataclass(frozen=True)
class Shapes:
    """What the Avro schemas allow a mapping to read and write."""

    targets: dict[str, TargetType]  # CanonicalProduct fields a mapping may set
    canonical_fields: frozenset[str]
    raw_fields: frozenset[str]  # RawItem string fields, readable as `@field`

    @classmethod
    def from_serde(cls, serde: Serde) -> Shapes:
        canonical = serde.current["CanonicalProduct"].parsed["fields"]
        raw = serde.current["RawItem"].parsed["fields"]
        return cls(
            targets={
                f["name"]: target_type(f["type"])
                for f in canonical
                if f["name"] not in NOT_MAPPABLE
            },
            canonical_fields=frozenset(f["name"] for f in canonical),
            raw_fields=frozenset(f["name"] for f in raw if f["type"] == "string"),
        )


@cache
def default_shapes() -> Shapes:
    return Shapes.from_serde(default_serde())


@cache
def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(JSON_SCHEMA.read_text())
    return jsonschema.Draft202012Validator(schema)


@cache
def _rule_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(JSON_SCHEMA.read_text())
    return jsonschema.Draft202012Validator({"$ref": "#/$defs/rule", "$defs": schema["$defs"]})


def _where(path: list[Any]) -> str:
    if len(path) >= 2 and path[0] == "fields":
        return ": ".join([f"field {path[1]}", *map(str, path[2:3])])
    if len(path) >= 3 and path[:2] == ["attributes", "fields"]:
        return ": ".join([f"field attributes.{path[2]}", *map(str, path[3:4])])
    return "/".join(map(str, path)) or "file"


def _stringify_lookups(doc: dict[str, Any]) -> None:
    """YAML reads `10: ROPA` with an int key; lookups are on text."""
    rule_sets = [doc.get("fields"), (doc.get("attributes") or {}).get("fields")]
    for rules in rule_sets:
        for spec in (rules or {}).values() if isinstance(rules, dict) else ():
            if isinstance(spec, dict) and isinstance(spec.get("lookup"), dict):
                spec["lookup"] = {str(k): v for k, v in spec["lookup"].items()}


def read_document(path: Path) -> tuple[dict[str, Any] | None, list[str]]:
    """The file's document and its JSON Schema problems (document None if unusable)."""
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        return None, [f"{path}: cannot read mapping: {exc}"]
    if isinstance(doc, dict):
        _stringify_lookups(doc)
    errors = sorted(_validator().iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    problems = [f"{path}: {_where(list(e.absolute_path))}: {e.message}" for e in errors]
    if not isinstance(doc, dict) or not isinstance(doc.get("fields"), dict):
        return None, problems or [f"{path}: expected a mapping with 'fields'"]
    return doc, problems


@dataclass
class _Resolved:
    name: str
    version: str
    fields: dict[str, tuple[Path, Any]]  # target -> (file that gave the rule, rule)
    attributes: dict[str, tuple[Path, Any]]
    passthrough: list[str]
    strip_prefix: bool


def _resolve(path: Path, problems: list[str], seen: tuple[Path, ...] = ()) -> _Resolved | None:
    if path in seen:
        problems.append(f"{path}: extends: a cycle ({' -> '.join(p.stem for p in seen)})")
        return None
    if not path.exists():
        problems.append(f"{path}: mapping {path.stem!r} not found")
        return None
    doc, found = read_document(path)
    problems.extend(found)
    if doc is None:
        return None
    version = str(doc.get("version", "1"))
    attributes = doc.get("attributes") or {}
    base = None
    if isinstance(doc.get("extends"), str):
        base = _resolve(path.parent / f"{doc['extends']}.yaml", problems, (*seen, path))
        if base is None:
            problems.append(f"{path}: extends: its base {doc['extends']!r} is unusable")
            return None
        version = f"{version}+{base.name}@{base.version}"
    resolved = base or _Resolved("", "", {}, {}, [], True)
    resolved.name = str(doc.get("name", path.stem))
    resolved.version = version
    for target, spec in doc["fields"].items():
        resolved.fields[str(target)] = (path, spec)
    for name, spec in (attributes.get("fields") or {}).items():
        resolved.attributes[str(name)] = (path, spec)
    if "passthrough" in attributes:
        resolved.passthrough = list(attributes["passthrough"])
    if "strip_prefix" in attributes:
        resolved.strip_prefix = bool(attributes["strip_prefix"])
    return resolved


def _compile_rule(
    target: str, spec: dict[str, Any], kind: TargetType, shapes: Shapes
) -> tuple[FieldRule | None, list[str]]:
    if not _rule_validator().is_valid(spec):
        return None, []  # its JSON Schema problems are reported already
    problems: list[str] = []
    sources = spec.get("source", [])
    sources = [sources] if isinstance(sources, str) else list(sources)
    for source in sources:
        if source.startswith("@"):
            if source[1:] not in shapes.raw_fields:
                problems.append(
                    f"source {source!r}: not a RawItem text field "
                    f"(known: {', '.join('@' + f for f in sorted(shapes.raw_fields))})"
                )
        elif not COLUMN.fullmatch(source):
            problems.append(f"source {source!r}: not a column name")
    if not sources and "const" not in spec and "expr" not in spec:
        problems.append("needs 'source', 'const' or 'expr'")
    convert_name = spec.get("convert", "string")
    conversion = CONVERSIONS[convert_name]
    if sources and "expr" not in spec and not _fits(conversion.kind, kind):
        problems.append(f"convert {convert_name} gives a {conversion.kind}, not a {kind.kind}")
    for key in ("const", "default"):
        if spec.get(key) is not None and kind.problem(spec[key]) is not None:
            problems.append(f"{key} {spec[key]!r}: {kind.problem(spec[key])}")
    pattern = None
    if "pattern" in spec:
        try:
            pattern = Pattern(spec["pattern"])
        except PatternError as exc:
            problems.append(f"pattern {spec['pattern']!r}: {exc}")
    expr = None
    if "expr" in spec:
        try:
            expr = compile_expression(spec["expr"])
        except ExpressionError as exc:
            problems.append(f"expr {spec['expr']!r}: refused: {exc}")
    if problems:
        return None, problems
    rule = FieldRule(
        target=target,
        type=kind,
        sources=tuple(sources),
        text_steps=tuple(TEXT_STEPS[s] for s in spec.get("text", [])),
        lookup={k: str(v) for k, v in spec["lookup"].items()} if spec.get("lookup") else None,
        pattern=pattern,
        on_mismatch=spec.get("on_mismatch", "reject"),
        convert=conversion.run,
        expr=expr,
        default=spec.get("default"),
        required=bool(spec.get("required", False)) or target in ALWAYS_REQUIRED,
        trusted=expr is None
        and (
            conversion.kind == kind.kind
            or (conversion.kind == "barcode" and _fits(conversion.kind, kind))
        ),
        **({"const": spec["const"]} if "const" in spec else {}),
    )
    return rule, []


def _fits(produced: str, kind: TargetType) -> bool:
    if kind.kind in ("scalar", produced):
        return True
    if produced == "string" and kind.kind == "enum":
        return True  # each value is checked against the symbols on the record
    if produced == "barcode":
        return kind.kind == "string" or (kind.kind == "enum" and BARCODE_KINDS <= kind.symbols)
    return produced == "long" and kind.kind == "double"


def compile_mapping(path: Path, shapes: Shapes | None = None) -> Mapping:
    """Read, resolve (`extends`) and check one mapping; ConfigError lists every problem."""
    shapes = shapes or default_shapes()
    problems: list[str] = []
    resolved = _resolve(path, problems)
    if resolved is None:
        raise ConfigError(problems)
    rules: list[FieldRule] = []
    for target, (origin, spec) in resolved.fields.items():
        if spec is None:
            if target in ALWAYS_REQUIRED:
                problems.append(f"{origin}: field {target}: can't be removed")
            continue
        if target not in shapes.targets:
            why = "set by the transformer" if target in shapes.canonical_fields else "unknown"
            problems.append(
                f"{origin}: field {target}: not a CanonicalProduct field a mapping can set ({why})"
            )
            continue
        rule, found = _compile_rule(target, spec, shapes.targets[target], shapes)
        problems.extend(f"{origin}: field {target}: {p}" for p in found)
        if rule is not None:
            rules.append(rule)
    attribute_rules: list[FieldRule] = []
    for name, (origin, spec) in resolved.attributes.items():
        if spec is None:
            continue
        rule, found = _compile_rule(f"attributes.{name}", spec, ATTRIBUTE, shapes)
        problems.extend(f"{origin}: field attributes.{name}: {p}" for p in found)
        if rule is not None:
            attribute_rules.append(rule)
    for needed in sorted(ALWAYS_REQUIRED - set(resolved.fields)):
        problems.append(f"{path}: field {needed}: missing (every mapping must give it)")
    if problems:
        raise ConfigError(problems)
    return Mapping(
        name=resolved.name,
        version=resolved.version,
        rules=tuple(rules),
        attribute_rules=tuple(attribute_rules),
        passthrough=tuple(
            Passthrough(
                pattern=re.compile(fnmatch.translate(glob)),
                prefix=glob.split("*", 1)[0],
                strip_prefix=resolved.strip_prefix,
            )
            for glob in resolved.passthrough
        ),
        used_columns=frozenset(
            s for r in (*rules, *attribute_rules) for s in r.sources if not s.startswith("@")
        ),
    )


def load_mappings(
    directory: Path, names: set[str], shapes: Shapes | None = None
) -> dict[str, Mapping]:
    """The named mappings from `directory`, every problem of every file reported at once."""
    problems: list[str] = []
    mappings: dict[str, Mapping] = {}
    for name in sorted(names):
        try:
            mappings[name] = compile_mapping(directory / f"{name}.yaml", shapes)
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(list(dict.fromkeys(problems)))
    return mappings


def mapping_names(directory: Path) -> set[str]:
    """Every mapping file in `directory`."""
    return {p.stem for p in directory.glob("*.yaml")}
