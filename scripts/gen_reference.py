#!/usr/bin/env python3
"""Write the reference of every interface field and every configuration parameter, from the sources.

    python scripts/gen_reference.py          # (re)write docs/reference/interfaces.md and configuration.md
    python scripts/gen_reference.py --check  # exit 1, naming each stale file, when they differ from the sources

Sources:

* timebill_msgs/action/*.action, msg/*.msg, srv/*.srv (ROS IDL text). A field's description is
  the ``#`` comment block directly above it plus the comment at the end of its line. A comment
  block followed by a blank line is a note on its part (goal, result, feedback; request,
  response); the first one in a file, before anything else, describes the interface. A comment
  block directly above the first of a run of constants describes the run; each constant's own
  description is the comment at the end of its line.
* timebill_ros/config/timebill.yaml (a ROS 2 parameter file). A parameter's description is the
  comment at the end of its line plus the comment-only lines after it that are indented deeper
  than its name (continuations), after any comment line directly above it. ``# --- title ---``
  at the parameters' indent starts a section. The comment lines before the first key describe
  the file.
* timebill_ros/timebill_ros/goal_stream.py, ``GoalState.set_status``: which action status each
  outcome ends with, read from its if/elif/else chain.

Plain Python 3 with PyYAML; no ROS imports.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import pathlib
import re
import sys

import yaml

REPO = pathlib.Path(__file__).resolve().parent.parent
MSGS = "timebill_msgs"
INTERFACE_GLOBS = ("action/*.action", "msg/*.msg", "srv/*.srv")
CONFIG = "timebill_ros/config/timebill.yaml"
GOAL_STREAM = "timebill_ros/timebill_ros/goal_stream.py"
STATUS_FUNCTION = "set_status"
OUT_DIR = "docs/reference"
INTERFACES_MD = f"{OUT_DIR}/interfaces.md"
CONFIGURATION_MD = f"{OUT_DIR}/configuration.md"
COMMAND = "python scripts/gen_reference.py"

PARTS = {".action": ("goal", "result", "feedback"), ".srv": ("request", "response"), ".msg": ("message",)}
KINDS = {".action": "action", ".srv": "service", ".msg": "message"}
# The interface part whose constants are the outcomes that set_status maps to an action status.
OUTCOME_PART = ("BudgetedQuery", "result")
# rclpy ServerGoalHandle method -> the goal's final status (action_msgs/msg/GoalStatus STATUS_*).
STATUS_OF_METHOD = {"succeed": "SUCCEEDED", "canceled": "CANCELED", "abort": "ABORTED"}
# set_status's extra conditions, as a reader of the reference is told them.
CONDITION_WORDS = {"self.handle.is_cancel_requested": "the client asked to cancel the goal"}

CONSTANT_RE = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)\s*=\s*(.*)$")
SECTION_RE = re.compile(r"^#\s*-{2,}\s*(.*?)\s*-*\s*$")
KEY_RE = re.compile(r"^(\s*)([^\s#:][^:#]*?)\s*:(?:\s+(.*)|\s*)$")


# --- interfaces -----------------------------------------------------------------------------------
@dataclasses.dataclass
class Field:
    name: str
    type: str
    description: str
    default: str | None = None  # a field's default value, as written


@dataclasses.dataclass
class Constant:
    name: str
    type: str
    value: str
    description: str
    group: int  # index into Part.groups


@dataclasses.dataclass
class Part:
    name: str
    fields: list = dataclasses.field(default_factory=list)
    constants: list = dataclasses.field(default_factory=list)
    groups: list = dataclasses.field(default_factory=list)  # each run of constants' description ("" = none)
    notes: list = dataclasses.field(default_factory=list)
    # In file order: ("note", text), ("constants", group index), ("field", Field).
    items: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Interface:
    path: str  # relative to the repository
    kind: str  # action, service, message
    name: str
    description: str
    parts: list

    @property
    def full_name(self) -> str:
        return f"{MSGS}/{pathlib.PurePath(self.path).parent.name}/{self.name}"


def split_comment(line: str) -> tuple[str, str]:
    """(code, comment) of one line; a ``#`` inside quotes is part of the code."""
    quote = None
    i = 0
    while i < len(line):
        ch = line[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return line[:i].rstrip(), line[i + 1:].strip()
        i += 1
    return line.rstrip(), ""


def joined(lines) -> str:
    return " ".join(s for s in (x.strip() for x in lines) if s)


def parse_interface(path: pathlib.Path, root: pathlib.Path = REPO) -> Interface:
    rel = path.relative_to(root).as_posix()
    names = PARTS[path.suffix]
    text = path.read_text()
    chunks = re.split(r"^---\s*$", text, flags=re.M)
    if len(chunks) != len(names):
        raise ValueError(f"{rel}: {len(chunks)} parts separated by ---, a {KINDS[path.suffix]} has {len(names)}")
    iface = Interface(rel, KINDS[path.suffix], path.stem, "", [])
    seen_item = False
    for name, chunk in zip(names, chunks):
        part = Part(name)
        iface.parts.append(part)
        pending: list[str] = []
        prev_constant = False  # the last code line was a constant, with no blank line since

        def flush_note():
            nonlocal pending
            if pending:
                if not seen_item and not iface.description and not iface.parts[0].notes and part is iface.parts[0]:
                    iface.description = joined(pending)
                else:
                    part.notes.append(joined(pending))
                    part.items.append(("note", part.notes[-1]))
            pending = []

        for raw in chunk.splitlines():
            s = raw.strip()
            if not s:
                flush_note()
                prev_constant = False
                continue
            if s.startswith("#"):
                pending.append(s[1:])
                continue
            code, inline = split_comment(raw)
            bits = code.split(None, 1)
            if len(bits) != 2:
                raise ValueError(f"{rel}: cannot read the line {raw!r}")
            type_, rest = bits[0], bits[1].strip()
            seen_item = True
            m = CONSTANT_RE.match(rest)
            if m:
                own = [inline]
                if not prev_constant:  # the first of a run: the comment above describes the run
                    part.groups.append(joined(pending))
                    part.items.append(("constants", len(part.groups) - 1))
                else:
                    own = pending + own
                part.constants.append(Constant(m.group(1), type_, m.group(2).strip(), joined(own),
                                               len(part.groups) - 1))
                prev_constant = True
            else:
                fname, *default = rest.split(None, 1)
                part.fields.append(Field(fname, type_, joined(pending + [inline]), default[0] if default else None))
                part.items.append(("field", part.fields[-1]))
                prev_constant = False
            pending = []
        flush_note()
        # A run of one constant with only the comment above it: that comment is the constant's.
        for i, desc in enumerate(part.groups):
            members = [c for c in part.constants if c.group == i]
            if len(members) == 1 and desc and not members[0].description:
                members[0].description, part.groups[i] = desc, ""
    return iface


def interface_paths(root: pathlib.Path = REPO) -> list[pathlib.Path]:
    return [p for pattern in INTERFACE_GLOBS for p in sorted((root / MSGS).glob(pattern))]


def parse_interfaces(root: pathlib.Path = REPO) -> list[Interface]:
    return [parse_interface(p, root) for p in interface_paths(root)]


# --- outcome -> action status ---------------------------------------------------------------------
@dataclasses.dataclass
class StatusRule:
    outcome: str
    condition: str  # "" = always; else what must also hold, in words
    status: str


def status_rules(root: pathlib.Path = REPO) -> tuple[list[StatusRule], str]:
    """The outcome tests of ``set_status`` in goal_stream.py, in order, and the status of its else
    branch (every other outcome). Raises ValueError when the function no longer has that shape."""
    path = root / GOAL_STREAM
    where = f"{GOAL_STREAM}: {STATUS_FUNCTION}"
    fn = next((n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.FunctionDef)
               and n.name == STATUS_FUNCTION), None)
    if fn is None:
        raise ValueError(f"{where} not found: update {STATUS_FUNCTION} or GOAL_STREAM in scripts/gen_reference.py")
    node = next((n for n in ast.walk(fn) if isinstance(n, ast.If)), None)

    def status_of(body) -> str:
        for stmt in body:
            for n in ast.walk(stmt):
                if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in STATUS_OF_METHOD:
                    return STATUS_OF_METHOD[n.func.attr]
        raise ValueError(f"{where}: a branch sets no status scripts/gen_reference.py knows "
                         f"({', '.join(STATUS_OF_METHOD)})")

    def outcome_of(test) -> tuple[str, str]:
        extra = []
        if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
            test, extra = test.values[0], test.values[1:]
        if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)
                and isinstance(test.left, ast.Attribute) and test.left.attr == "outcome"
                and isinstance(test.comparators[0], ast.Attribute)):
            raise ValueError(f"{where}: cannot read the test `{ast.unparse(test)}` "
                             "(expected `res.outcome == Result.X`)")
        words = [CONDITION_WORDS.get(ast.unparse(e), f"`{ast.unparse(e)}`") for e in extra]
        return test.comparators[0].attr, " and ".join(words)

    rules = []
    while isinstance(node, ast.If):
        outcome, condition = outcome_of(node.test)
        rules.append(StatusRule(outcome, condition, status_of(node.body)))
        if len(node.orelse) == 1 and isinstance(node.orelse[0], ast.If):
            node = node.orelse[0]
            continue
        if not node.orelse:
            raise ValueError(f"{where}: no else branch (the status of the other outcomes)")
        return rules, status_of(node.orelse)
    raise ValueError(f"{where}: no `if res.outcome == ...` chain found")


def status_of_outcome(name: str, rules: list[StatusRule], otherwise: str) -> str:
    """An outcome's final action status in words, as set_status decides it."""
    out = []
    for r in rules:
        if r.outcome != name:
            continue
        if not r.condition:
            return "; otherwise ".join(out + [r.status])
        out.append(f"{r.status} if {r.condition}")
    return "; otherwise ".join(out + [otherwise]) if out else otherwise


# --- configuration --------------------------------------------------------------------------------
@dataclasses.dataclass
class Parameter:
    name: str
    default: object
    description: str
    node: str  # the parameter file's node key (`/**` = every node)


@dataclasses.dataclass
class Section:
    title: str
    node: str
    parameters: list = dataclasses.field(default_factory=list)
    notes: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Config:
    path: str
    description: str
    sections: list

    @property
    def parameters(self) -> list:
        return [p for s in self.sections for p in s.parameters]


def flat_parameters(data) -> dict:
    """(node key, parameter name) -> value, nested parameters named with dots, as ROS does."""
    out = {}

    def walk(node, prefix, value):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(node, f"{prefix}{k}.", v)
        else:
            out[(node, prefix[:-1])] = value

    for node, body in (data or {}).items():
        if isinstance(body, dict) and isinstance(body.get("ros__parameters"), dict):
            walk(node, "", body["ros__parameters"])
    return out


def parse_config(path: pathlib.Path | None = None, root: pathlib.Path = REPO) -> Config:
    path = path or root / CONFIG
    rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
    lines = path.read_text().splitlines()
    values = flat_parameters(yaml.safe_load(path.read_text()))
    head = []
    for line in lines:
        if not line.strip().startswith("#"):
            break
        head.append(line.strip()[1:])
    cfg = Config(rel, joined(head), [])
    node = None
    stack: list[tuple[int, str]] = []  # (indent, key) of the mappings the line is inside
    param: Parameter | None = None
    param_indent = -1
    pending: list[str] = []
    section: Section | None = None
    for raw in lines[len(head):]:
        s = raw.strip()
        indent = len(raw) - len(raw.lstrip())
        if not s:
            if pending and section is not None:
                section.notes.append(joined(pending))
            pending, param = [], None
            continue
        if s.startswith("#"):
            if param is not None and indent > param_indent:  # a continuation of the parameter's comment
                param.description = joined([param.description, s[1:]])
                continue
            param = None
            m = SECTION_RE.match(s)
            if m and node is not None:
                section = Section(m.group(1).strip(), node)
                cfg.sections.append(section)
                pending = []
            else:
                pending.append(s[1:])
            continue
        text, comment = split_comment(raw)
        m = KEY_RE.match(text)
        if not m:
            raise ValueError(f"{rel}: cannot read the line {raw!r} "
                             "(scripts/gen_reference.py reads `key: value  # comment`)")
        key = m.group(2).strip().strip("\"'")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        value_text = (m.group(3) or "").strip()
        if not stack:
            node, param = key, None
        if not value_text:  # a mapping opens: a node key, ros__parameters, or nested parameters
            stack.append((indent, key))
            param = None
            pending = []
            continue
        inside = [k for _, k in stack]
        if "ros__parameters" not in inside:
            raise ValueError(f"{rel}: `{key}` is not under a node's ros__parameters")
        name = ".".join(inside[inside.index("ros__parameters") + 1:] + [key])
        if (node, name) not in values:
            raise ValueError(f"{rel}: `{name}` is not a parameter PyYAML reads there: "
                             "scripts/gen_reference.py misread the file")
        if section is None or section.node != node:
            section = Section("", node)
            cfg.sections.append(section)
        param = Parameter(name, values[(node, name)], joined(pending + [comment]), node)
        param_indent = indent
        section.parameters.append(param)
        pending = []
    read = {(p.node, p.name) for p in cfg.parameters}
    missed = [f"{n}: {k}" for n, k in values if (n, k) not in read]
    if missed:
        raise ValueError(f"{rel}: scripts/gen_reference.py did not find {', '.join(missed)} in the text")
    return cfg


# --- what every source must say -------------------------------------------------------------------
def missing_descriptions(root: pathlib.Path = REPO) -> list[str]:
    """One line per field, constant or parameter without a description: where, and how to fix it."""
    out = []
    for iface in parse_interfaces(root):
        for part in iface.parts:
            where = f"{iface.path}: {iface.name}" + (f" {part.name}" if iface.kind != "message" else "")
            for f in part.fields:
                if not f.description:
                    out.append(f"{where} field `{f.name}` ({f.type}) has no description: add a `#` comment "
                               f"on the line above it or at the end of its line")
            for c in part.constants:
                if not c.description:
                    out.append(f"{where} constant `{c.name}` has no description: add a `#` comment at the end "
                               "of its line")
    cfg = parse_config(root=root)
    for p in cfg.parameters:
        if not p.description:
            out.append(f"{cfg.path}: parameter `{p.name}` has no description: add a `#` comment at the end of its "
                       f"line (continued on indented `#` lines below it)")
    return out


# --- Markdown -------------------------------------------------------------------------------------
def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def code(text: str) -> str:
    return f"`{text}`" if "`" not in text else f"`` {text} ``"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return out + [""]


def anchor(title: str) -> str:
    """GitHub's anchor of a heading."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def banner(sources: list[str], what: str) -> str:
    return (f"_Generated by `{COMMAND}` from {', '.join(sources)}. Do not edit by hand: change {what} "
            f"and run it again._")


def render_part(part: Part) -> list[str]:
    """A part's notes, constants and fields, in file order (a note between fields splits their table)."""
    out, fields = [], []
    with_default = any(f.default is not None for f in part.fields)

    def flush_fields():
        if fields:
            header = ["field", "type"] + (["default"] if with_default else []) + ["description"]
            out.extend(table(header, [[code(f.name), code(f.type)] + ([code(f.default) if f.default else ""]
                                                                      if with_default else []) + [f.description]
                                      for f in fields]))
            fields.clear()

    for kind, item in part.items:
        if kind == "field":
            fields.append(item)
            continue
        flush_fields()
        if kind == "note":
            out += [item, ""]
        else:
            if part.groups[item]:
                out += [part.groups[item], ""]
            out += table(["constant", "type", "value", "description"],
                         [[code(c.name), code(c.type), code(c.value), c.description]
                          for c in part.constants if c.group == item])
    flush_fields()
    return out


def render_statuses(part: Part, rules: list[StatusRule], otherwise: str) -> list[str]:
    """The table of each outcome constant's final action status."""
    statuses = {c.name: status_of_outcome(c.name, rules, otherwise) for c in part.constants}
    succeeding = [code(name) for name, status in statuses.items() if status == "SUCCEEDED"]
    out = ["#### Outcome and action status", "",
           f"The action status a goal ends with, for each outcome, as `{STATUS_FUNCTION}` in "
           f"[`{GOAL_STREAM}`](../../{GOAL_STREAM}) sets it (`action_msgs/msg/GoalStatus` `STATUS_*`)."
           + (f" Only {' and '.join(succeeding)} ends SUCCEEDED: read `outcome` to know how a goal ended."
              if succeeding else ""), ""]
    return out + table(["outcome", "value", "action status", "meaning"],
                       [[code(c.name), code(c.value), statuses[c.name], c.description] for c in part.constants])


def heading_of(iface: Interface) -> str:
    return f"{iface.name} ({iface.kind})"


def render_interfaces(root: pathlib.Path = REPO) -> str:
    ifaces = parse_interfaces(root)
    rules, otherwise = status_rules(root)
    if not any(iface.name == OUTCOME_PART[0] and any(p.name == OUTCOME_PART[1] and p.constants for p in iface.parts)
               for iface in ifaces):
        raise ValueError(f"no outcome constants in {' '.join(OUTCOME_PART)}: update OUTCOME_PART in "
                         "scripts/gen_reference.py")
    sources = [i.path for i in ifaces] + [f"{GOAL_STREAM} (`{STATUS_FUNCTION}`)"]
    out = [banner(sources, "the comments in the interface files"), "", "# Interface reference", "",
           f"The interfaces of the `{MSGS}` package. A field's description is its comment in the interface "
           "file (the `#` lines directly above it and the end of its line).", ""]
    out += [f"- [{heading_of(i)}](#{anchor(heading_of(i))}): {i.description}" for i in ifaces] + [""]
    for iface in ifaces:
        out += [f"## {heading_of(iface)}", "", f"`{iface.full_name}`, defined in "
                f"[`{iface.path}`](../../{iface.path}).", ""]
        if iface.description:
            out += [iface.description, ""]
        for part in iface.parts:
            if iface.kind != "message":
                out += [f"### {iface.name} {part.name}", ""]
            out += render_part(part)
            if (iface.name, part.name) == OUTCOME_PART and part.constants:
                out += render_statuses(part, rules, otherwise)
    return "\n".join(out).rstrip() + "\n"


def yaml_value(v) -> str:
    if isinstance(v, str):
        return '""' if v == "" else v
    return yaml.safe_dump(v, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()


def render_configuration(root: pathlib.Path = REPO) -> str:
    cfg = parse_config(root=root)
    out = [banner([cfg.path], "the comments in that file"), "", "# Configuration reference", ""]
    if cfg.description:
        out += [cfg.description, ""]
    out += [f"Every parameter of [`{cfg.path}`](../../{cfg.path}); the default is the value in that file. "
            "A parameter's description is its comment there (the end of its line and the indented `#` lines "
            "below it).", ""]
    titled = [s for s in cfg.sections if s.title]
    out += [f"- [{s.title[:1].upper() + s.title[1:]}](#{anchor(s.title)}): "
            + ", ".join(code(p.name) for p in s.parameters) for s in titled] + [""]
    for s in cfg.sections:
        title = (s.title[:1].upper() + s.title[1:]) if s.title else "Parameters"
        out += [f"## {title}", ""]
        if s.node != "/**":
            out += [f"Under `{s.node}`.", ""]
        for note in s.notes:
            out += [note, ""]
        out += table(["parameter", "default", "description"],
                     [[code(p.name), code(yaml_value(p.default)), p.description] for p in s.parameters])
    return "\n".join(out).rstrip() + "\n"


def outputs(root: pathlib.Path = REPO) -> dict[str, str]:
    return {INTERFACES_MD: render_interfaces(root), CONFIGURATION_MD: render_configuration(root)}


def stale(root: pathlib.Path = REPO) -> list[str]:
    """The generated files whose text on disk differs from what the sources make now."""
    return [rel for rel, text in outputs(root).items()
            if not (root / rel).is_file() or (root / rel).read_text() != text]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 when a generated file is stale")
    args = ap.parse_args(argv)
    if args.check:
        old = stale()
        for rel in old:
            print(f"{rel} is stale: run `{COMMAND}`", file=sys.stderr)
        return 1 if old else 0
    for rel, text in outputs().items():
        path = REPO / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_file() and path.read_text() == text:
            print(f"{rel}: up to date")
        else:
            path.write_text(text)
            print(f"{rel}: written")
    for line in missing_descriptions():
        print(f"warning: {line}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
