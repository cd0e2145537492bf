"""Provisioning from a YAML file kept in git: ``loadconfig`` and ``exportconfig``.

The file is a mapping of sections (``thresholds:``, later ``channels:``, ``rules:`` …),
each a list of items. Loading is all or nothing:

1. the YAML is parsed (syntax errors and duplicate keys are reported with their line);
2. every section validates every item, and every error is reported at once with its
   path, indexes 0-based (``thresholds[1].critical: must be above warning (80)``);
3. only a file without errors is applied, in one transaction.

Loading is idempotent (each section keys its items, e.g. thresholds by metric + labels),
and objects the file does not mention are left alone. Every section is optional;
top-level keys starting with ``x-`` are ignored, so shared values can live under an
anchor (``x-defaults: &defaults {direction: above}``, then ``<<: *defaults`` in items).
Exporting writes every section; loading the export changes nothing.

A section is a plain object that an app provides (nothing to import from here):

``name``
    the top-level key;
``secret_fields`` (optional)
    item keys holding secrets: they export as :data:`SECRET_PLACEHOLDER` unless secrets
    are asked for, and an item carrying the placeholder on load arrives at the section
    without that key, which a section reads as "keep the stored secret";
``validate(items, document) -> list[(path, message)]``
    ``path`` relative to the section, starting with the item's index (``"[1].critical"``);
    ``document`` is the whole file, for names other sections of the same file define;
``apply(items) -> {"created": n, "updated": n, "unchanged": n}``
    called only with validated items, inside the transaction;
``export() -> list[dict]``
    the items, in the shape ``validate`` accepts;
``warnings(items) -> list[(path, message)]`` (optional)
    notes on valid items that are probably mistakes; printed, never blocking.

:data:`SECTIONS` lists them in the order they are applied and exported; a later feature
adds its own (before the sections that refer to its names, e.g. channels first).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import yaml
from django.core.exceptions import ValidationError
from django.db import DatabaseError, transaction

from alerts.provisioning import ChannelsSection, RulesSection
from monitoring.provisioning import ThresholdsSection

logger = logging.getLogger(__name__)

#: What a secret exports as; loading it back keeps the stored secret.
SECRET_PLACEHOLDER = "<secret>"
#: Top-level keys with this prefix are ignored: a place for YAML anchors, as in Compose files.
EXTENSION_PREFIX = "x-"
#: Larger files are refused before parsing (a provisioning file is a few hundred lines).
MAX_FILE_BYTES = 5 * 1024 * 1024


class Section(Protocol):
    name: str

    def validate(self, items: list[Any], document: Mapping[str, Any]) -> list[tuple[str, str]]: ...

    def apply(self, items: list[Any]) -> Mapping[str, int]: ...

    def export(self) -> list[dict[str, Any]]: ...


#: Every section, in the order it is applied and exported.
# Channels before the sections that name them (thresholds and rules list channel names).
SECTIONS: list[Section] = [ChannelsSection(), ThresholdsSection(), RulesSection()]


class ConfigError(Exception):
    """The file cannot be loaded; ``errors`` holds one line per problem. Nothing was changed."""

    def __init__(self, errors: Sequence[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = list(errors)


@dataclass
class LoadResult:
    #: section name → {"created", "updated", "unchanged"}, for the sections the file had.
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    #: "path: note" on items that loaded but are probably mistakes (e.g. a misspelt metric).
    warnings: list[str] = field(default_factory=list)

    def summary_lines(self) -> list[str]:
        if not self.counts:
            return ["nothing to load: the file has no sections"]
        return [
            f"{name}: {c['created']} created, {c['updated']} updated, {c['unchanged']} unchanged"
            for name, c in self.counts.items()
        ]


# --- YAML ---------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (YAML keeps the last, silently)."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:
            continue  # unhashable: construct_mapping reports it
        if duplicate:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping",
                node.start_mark,
                f"found the key {key!r} twice (the first is on line {seen[key].start_mark.line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse(text: str) -> dict[str, Any]:
    """Return the document in ``text`` (``{}`` when empty) or raise :class:`ConfigError`."""
    try:
        document = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as error:
        raise ConfigError([_describe_yaml_error(error)]) from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigError(["(file): must be a mapping of sections, e.g. “thresholds:” followed by a list"])
    return document


def _describe_yaml_error(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    context = getattr(error, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "(file)"
    text = f"{context}: {problem}" if context and context not in problem else problem
    return f"{where}: YAML syntax error: {text}"


def read_file(path: str, stdin: Any = None) -> str:
    """Return the text of ``path`` (``-`` for ``stdin``) or raise :class:`ConfigError`."""
    try:
        if path == "-":
            raw = (stdin.buffer if hasattr(stdin, "buffer") else stdin).read(MAX_FILE_BYTES + 1)
            data = raw.encode() if isinstance(raw, str) else raw
        else:
            with open(path, "rb") as handle:
                data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise ConfigError([f"{path}: cannot read the file ({error.strerror or error})"]) from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError([f"{path}: larger than {MAX_FILE_BYTES // (1024 * 1024)} MB; refusing to load it"])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ConfigError([f"{path}: not UTF-8 text (byte {error.start})"]) from None


# --- loading ------------------------------------------------------------------------


def sections_by_name() -> dict[str, Section]:
    return {section.name: section for section in SECTIONS}


def _strip_placeholders(section: Section, items: list[Any]) -> list[Any]:
    secret_fields = tuple(getattr(section, "secret_fields", ()))
    if not secret_fields:
        return items
    return [
        {k: v for k, v in item.items() if not (k in secret_fields and v == SECRET_PLACEHOLDER)}
        if isinstance(item, dict)
        else item
        for item in items
    ]


def validate(document: Mapping[str, Any]) -> tuple[list[str], dict[str, list[Any]]]:
    """Return every error in ``document`` (``"path: message"``) and the items of each section it has."""
    known = sections_by_name()
    errors: list[str] = []
    present: dict[str, list[Any]] = {}
    for name in document:
        if isinstance(name, str) and name.startswith(EXTENSION_PREFIX):
            continue
        if name not in known:
            errors.append(f"{name}: unknown section (known: {', '.join(known) or 'none'})")
    for name, section in known.items():
        if name not in document:
            continue
        items = [] if document[name] is None else document[name]
        if not isinstance(items, list):
            errors.append(f"{name}: must be a list of items (“- …” lines)")
            continue
        items = _strip_placeholders(section, items)
        try:
            problems = section.validate(items, document)
        except Exception as exc:  # a bug in a section must not become a traceback for the operator
            logger.debug("provisioning: validating %s raised", name, exc_info=True)
            problems = [("", f"could not be checked ({type(exc).__name__}: {exc})")]
        errors.extend(f"{name}{path}: {message}" for path, message in problems)
        present[name] = items
    return errors, present


def load(document: Mapping[str, Any]) -> LoadResult:
    """Validate the whole ``document``, then apply it in one transaction; raise :class:`ConfigError` if invalid."""
    errors, present = validate(document)
    if errors:
        raise ConfigError(errors)
    result = LoadResult()
    known = sections_by_name()
    for name, items in present.items():
        notes = getattr(known[name], "warnings", None)
        if notes is not None:
            result.warnings.extend(f"{name}{path}: {message}" for path, message in notes(items))
    name = ""
    try:
        with transaction.atomic():
            for name, items in present.items():
                counts = known[name].apply(items)
                result.counts[name] = {k: int(counts.get(k, 0)) for k in ("created", "updated", "unchanged")}
    except ValidationError as error:
        # Validation passed a moment ago: something changed meanwhile (another load, an admin edit).
        raise ConfigError([f"{name}: {message}" for message in error.messages]) from None
    except DatabaseError as error:
        raise ConfigError([f"{name}: the database refused the change ({error})"]) from None
    return result


def load_text(text: str) -> LoadResult:
    return load(parse(text))


# --- exporting ----------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Indent list items under their key, as people write them."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def export_document(include_secrets: bool = False) -> dict[str, list[dict[str, Any]]]:
    """Return every section's items; secrets are placeholders unless ``include_secrets``."""
    document: dict[str, list[dict[str, Any]]] = {}
    for section in SECTIONS:
        items = section.export()
        secret_fields = tuple(getattr(section, "secret_fields", ()))
        if secret_fields and not include_secrets:
            items = [{k: (SECRET_PLACEHOLDER if k in secret_fields and v else v) for k, v in i.items()} for i in items]
        document[section.name] = items
    return document


def export_text(include_secrets: bool = False) -> str:
    """Return the YAML of :func:`export_document`, which ``loadconfig`` reads back unchanged."""
    return yaml.dump(
        export_document(include_secrets),
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
    )
