"""mkdocs hook: the recipe and command-line reference pages, generated from the code at build time.

The recipe reference walks the pydantic models of :mod:`upscale.recipe` (field, type, default,
description per section, then the JSON schema that ``upscale schema`` prints); the CLI reference
walks the click commands that typer makes of the app in :mod:`upscale.cli`. Neither page is
stored in the repository, so neither can drift from the code.
"""

from __future__ import annotations

import datetime
import inspect
import json
import logging
import sys
import types
import typing
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # document this checkout's upscale, not whichever is installed

import typer  # noqa: E402
from pydantic import BaseModel  # noqa: E402

import upscale  # noqa: E402
from upscale import recipe as recipe_module  # noqa: E402
from upscale.cli import app  # noqa: E402

log = logging.getLogger("mkdocs.hooks.reference")

RECIPE_PAGE = "reference/recipe.md"
CLI_PAGE = "reference/cli.md"

_NAMES = {
    int: "integer",
    float: "number",
    str: "text",
    bool: "boolean",
    Path: "path",
    datetime.date: "date (YYYY-MM-DD)",
    type(None): "null",
}
_BOUNDS = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}


def on_files(files, config):
    """Add the generated pages to the site (mkdocs event)."""
    log.info("reference pages from %s", Path(upscale.__file__).parent)
    if undocumented():
        log.info("recipe fields without a description: %s", ", ".join(undocumented()))
    files.append(File.generated(config, RECIPE_PAGE, content=recipe_page()))
    files.append(File.generated(config, CLI_PAGE, content=cli_page()))
    return files


def type_name(annotation, link=None) -> str:
    """A type annotation in words a recipe writer knows (YAML terms); ``link`` names models."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return " or ".join(f"`{json.dumps(a) if not isinstance(a, str) else a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a, link) for a in args)
    if origin is list:
        return f"list of {type_name(args[0], link)}"
    if origin is dict:
        return f"mapping of {type_name(args[0], link)} to {type_name(args[1], link)}"
    if origin is tuple:
        return "[" + ", ".join(type_name(a, link) for a in args) + "]"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return link(annotation) if link else annotation.__name__
    return _NAMES.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _cell(text: str) -> str:
    """Text made safe for one cell of a markdown table."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _models(annotation) -> list[type[BaseModel]]:
    """The pydantic models inside an annotation (``Period | None`` -> ``[Period]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


def sections(model: type[BaseModel], key: str = "") -> list[tuple[str, type[BaseModel]]]:
    """(dotted key, model) of the recipe and every section below it, depth first in field order."""
    found = [(key, model)]
    for name, field in model.model_fields.items():
        for sub in _models(field.annotation):
            found += sections(sub, f"{key}.{name}" if key else name)
    return found


def _anchor(key: str) -> str:
    return key.replace(".", "-") or "top-level-keys"


def _constraints(field) -> str:
    parts = []
    for item in field.metadata:
        for attr, sign in _BOUNDS.items():
            if getattr(item, attr, None) is not None:
                parts.append(f"{sign} {getattr(item, attr)}")
        if getattr(item, "pattern", None):
            parts.append(f"matching `{item.pattern}`")
    return f" ({', '.join(parts)})" if parts else ""


def _field_type(field, link) -> str:
    """The field's type with its bounds; bounds bind the value, so they come before ``or null``."""
    args = typing.get_args(field.annotation)
    optional = typing.get_origin(field.annotation) in (typing.Union, types.UnionType) and type(None) in args
    rest = [a for a in args if a is not type(None)] if optional else [field.annotation]
    text = " or ".join(type_name(a, link) for a in rest) + _constraints(field)
    return text + " or null" if optional else text


def _doc(model: type[BaseModel]) -> str:
    """The model's own docstring (not one inherited from pydantic), dedented."""
    return inspect.cleandoc(vars(model).get("__doc__") or "")


def _description(field) -> str:
    """The field's description, else the first paragraph of the docstring of the section it holds."""
    if field.description:
        return field.description
    models = _models(field.annotation)
    return _doc(models[0]).split("\n\n")[0] if models else ""


def _default(field, link) -> str:
    if field.is_required():
        return "**required**"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return f"see {link(type(value))}"
    if isinstance(value, str):
        return f"`{value}`"
    return f"`{json.dumps(value)}`"


def field_table(model: type[BaseModel], link) -> list[str]:
    """The markdown table of one section: field, type, default, description."""
    lines = ["| field | type | default | description |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        row = (f"`{name}`", _field_type(field, link), _default(field, link), _description(field))
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return lines


def undocumented(model: type[BaseModel] | None = None) -> list[str]:
    """Dotted keys of the recipe fields without a description (sections count their docstring)."""
    return [
        f"{key}.{name}" if key else name
        for key, section in sections(model or recipe_module.Recipe)
        for name, field in section.model_fields.items()
        if not _description(field)
    ]


def recipe_page() -> str:
    """The recipe reference: a table per section, then the JSON schema."""
    found = sections(recipe_module.Recipe)
    keys = {model: key for key, model in found}

    def link(model):
        return f"[`{keys[model]}`](#{_anchor(keys[model])})"

    lines = [
        "# Recipe reference",
        "",
        "Every key a recipe may hold, generated from the pydantic models of `upscale.recipe` when these",
        "docs are built. `upscale schema` prints the same schema as JSON (at the end of this page);",
        "`upscale validate RECIPE` checks a recipe and its data. Unknown keys are refused, and any key",
        "can be set on the command line with `--set section.key=value`. See the [guide](../guide.md#recipes)",
        "for an example.",
        "",
    ]
    for key, model in found:
        title = "Top-level keys" if not key else f"`{key}`"
        lines += [f"## {title} {{#{_anchor(key)}}}", ""]
        if _doc(model):
            lines += [_doc(model), ""]
        lines += field_table(model, link) + [""]
    schema = json.dumps(recipe_module.json_schema(), indent=2)
    lines += [
        "## JSON schema {#json-schema}",
        "",
        "The output of `upscale schema`:",
        "",
        '??? note "JSON schema of recipes"',
        "",
        "    ```json",
    ]
    lines += [f"    {line}" for line in schema.splitlines()] + ["    ```", ""]
    return "\n".join(lines)


def _param_type(param) -> str:
    if getattr(param, "is_flag", False):
        return "flag"
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if annotation is None:  # plain click parameters
        return {"float": "number", "string": "text"}.get(param.type.name, param.type.name)
    if param.multiple and typing.get_origin(annotation) is list:
        return type_name(typing.get_args(annotation)[0]) + ", repeatable"
    return type_name(annotation)


def _param_default(param) -> str:
    if param.required:
        return "**required**"
    if getattr(param, "is_flag", False) or param.default in (None, ()) or not param.show_default:
        return ""
    return f"`{param.default}`"


def command_section(command, ctx) -> list[str]:
    """One command: its usage, help and a table of its arguments and options."""
    params = [p for p in command.get_params(ctx) if not getattr(p, "hidden", False) and p.name != "help"]
    args = [p.name.upper() + ("..." if p.nargs == -1 else "") for p in params if p.param_type_name == "argument"]
    usage = " ".join([ctx.command_path, "[OPTIONS]", *args])
    lines = [
        f"## `{ctx.command_path}` {{#{ctx.info_name}}}",
        "",
        (command.help or "").strip(),
        "",
        "```",
        usage,
        "```",
        "",
    ]
    if params:
        lines += ["| argument / option | type | default | description |", "|---|---|---|---|"]
        for p in params:
            name = p.name.upper() if p.param_type_name == "argument" else " / ".join(p.opts + p.secondary_opts)
            row = (f"`{name}`", _param_type(p), _param_default(p), getattr(p, "help", None) or "")
            lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
        lines.append("")
    return lines


def cli_page() -> str:
    """The CLI reference: every command of the typer app, in the order ``upscale --help`` lists them."""
    group = typer.main.get_command(app)
    root = group.make_context("upscale", [], resilient_parsing=True)
    names = group.list_commands(root)
    lines = [
        "# Command-line reference",
        "",
        "Generated from the typer app of `upscale.cli` when these docs are built;",
        "`upscale COMMAND --help` prints the same. Every command takes `--help`.",
        "",
        (group.help or "").strip(),
        "",
        "```",
        " ".join([root.command_path, *group.collect_usage_pieces(root)]),
        "```",
        "",
        "| command | what it does |",
        "|---|---|",
    ]
    commands = [(name, group.get_command(root, name)) for name in names]
    lines += [f"| [`{name}`](#{name}) | {_cell((cmd.help or '').strip())} |" for name, cmd in commands]
    lines.append("")
    for name, cmd in commands:
        lines += command_section(cmd, cmd.make_context(name, [], parent=root, resilient_parsing=True))
    return "\n".join(lines)
