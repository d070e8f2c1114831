"""Write the generated parts of docs/images/<image>.md from the code (a developer tool).

    .venv/bin/python -m tools.make_docs           rewrite what is out of date, print what changed
    .venv/bin/python -m tools.make_docs --check   change nothing; exit 1 naming the stale files

Every image page (one per images.yaml entry) holds hand-written text around blocks that this tool owns:

    <!-- BEGIN GENERATED interface ... -->  channels, request and response types, serving switches
    <!-- BEGIN GENERATED hyperparameters ... -->  the schema, aliases and hints
    <!-- BEGIN GENERATED metrics ... -->  the published metric definitions

Each block is rendered from `ALGORITHM.describe()` and the class's declarations, so the tables say what the code
accepts. A page that does not exist yet is created with the blocks and headings to fill in.
tests/unit/test_docs.py fails when a block differs from what this tool would write.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
IMAGES_DIR = REPO / "docs" / "images"
BLOCKS = ("interface", "hyperparameters", "metrics")
BEGIN = "<!-- BEGIN GENERATED {name}: written by tools/make_docs.py from the code; do not edit by hand -->"
END = "<!-- END GENERATED {name} -->"


def images() -> dict[str, str]:
    """images.yaml's image names and their algorithm folders, in file order."""
    document = yaml.safe_load((REPO / "images.yaml").read_text()) or {}
    return {name: (entry or {}).get("algorithm", name) for name, entry in (document.get("images") or {}).items()}


def page_path(image: str) -> Path:
    return IMAGES_DIR / f"{image}.md"


# ---- rendering ----------------------------------------------------------------------------------

def _cell(text: Any) -> str:
    """Text for a Markdown table cell: pipes escaped (inside code spans too), no line breaks."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _prose(text: Any) -> str:
    """Plain text for Markdown: a cell's pipes escaped, and `<` and `*`, which would start a tag or emphasis."""
    return _cell(text).replace("<", "\\<").replace("*", "\\*")


def _code(text: Any) -> str:
    text = str(text)
    fence = "``" if "`" in text else "`"
    pad = " " if fence == "``" else ""
    return f"{fence}{pad}{_cell(text)}{pad}{fence}"


def _value(value: Any) -> str:
    """A default as the hyperparameter string that means it."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return _code(str(value).lower())
    if isinstance(value, (list, tuple)):
        return _code(json.dumps(list(value)))
    return _code(value)


def _allowed(spec: dict[str, Any]) -> str:
    allowed = spec["allowed"]
    if isinstance(allowed, list):
        return "one of " + ", ".join(_code(a) for a in allowed)
    return _prose(allowed)


def render_interface(algorithm: Any) -> str:
    described = algorithm.describe()
    lines = ["### Channels", ""]
    if described["channels"]:
        lines += ["| channel | required | content types | input modes | S3 distribution |", "|---|---|---|---|---|"]
        for c in described["channels"]:
            lines.append(f"| {_code(c['Name'])} | {'yes' if c['IsRequired'] else 'no'} | "
                         + ", ".join(_code(t) for t in c["SupportedContentTypes"]) + " | "
                         + ", ".join(c["SupportedInputModes"]) + " | "
                         + ", ".join(c["SupportedS3DataDistributionTypes"]) + " |")
        default = getattr(algorithm, "default_content_type", "")
        lines += ["", f"A channel whose `ContentType` is missing is read as {_code(default)}."]
    else:
        lines.append("The image declares no channels of its own.")
    inference = described["inference"]
    lines += [
        "", "### Request and response types", "",
        "- Request `Content-Type`: " + ", ".join(_code(t) for t in inference["content_types"]) + ".",
        "- Response types (`Accept`): " + ", ".join(_code(t) for t in inference["accept_types"]) + ".",
        f"- A missing or `*/*` `Accept` gets {_code(inference['default_accept'])}, unless "
        "`SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT` names another.",
    ]
    if getattr(getattr(algorithm, "script_mode", None), "scripts_only", False):
        lines.append("- The user's inference module answers every request; these are the types its default "
                     "`input_fn` and `output_fn` read and write.")
        return "\n".join(lines)
    empty = getattr(algorithm, "empty_body_status", None)
    missing_ok = getattr(algorithm, "handles_missing_values", False)
    lines.append(f"- An empty request body is answered {empty} with an empty body, before anything else is checked."
                 if empty is not None else "- An empty request body is a 400.")
    lines.append("- An empty field or NaN is a missing value for the model." if missing_ok
                 else "- An empty field or NaN is a 400 naming its row and column.")
    environment = inference.get("environment") or {}
    if environment:
        lines += ["", "Serving switches (environment variables):", "", "| variable | meaning |", "|---|---|"]
        lines += [f"| {_code(name)} | {_prose(meaning)} |" for name, meaning in environment.items()]
    return "\n".join(lines)


def render_hyperparameters(algorithm: Any) -> str:
    schema = algorithm.Hyperparameters
    specs = schema.specs()
    if not specs:
        return "The image takes no hyperparameters of its own."
    lines = ["| name | required | default | allowed | notes |", "|---|---|---|---|---|"]
    for spec in specs:
        default = "" if spec["required"] else _value(spec.get("default"))
        lines.append(f"| {_code(spec['name'])} | {'yes' if spec['required'] else 'no'} | {default} | "
                     f"{_allowed(spec)} | {_prose(spec.get('doc', ''))} |")
    if any(not spec["required"] and spec.get("default") is None for spec in specs):
        lines += ["", "—: no default; when absent the setting is left out (the notes give the library's own default)."]
    if schema.aliases:
        lines += ["", "Other accepted spellings: "
                  + ", ".join(f"{_code(a)} for {_code(n)}" for a, n in schema.aliases.items()) + "."]
    if schema.deprecated:
        lines += ["", "Accepted and ignored with a warning: "
                  + "; ".join(f"{_code(k)} ({_prose(why)})" for k, why in schema.deprecated.items()) + "."]
    if schema.hints:
        lines += ["", "Names refused with a pointer to the right one: "
                  + ", ".join(f"{_code(k)} → {_code(n)}" for k, n in schema.hints.items()) + "."]
    return "\n".join(lines)


def render_metrics(algorithm: Any) -> str:
    definitions = algorithm.describe()["metric_definitions"]
    if not definitions:
        return "The image publishes no metric definitions."
    lines = ["| name | regex | tuning objective |", "|---|---|---|"]
    for d in definitions:
        lines.append(f"| {_code(d['Name'])} | {_code(d['Regex'])} | {d.get('Type', '')} |")
    note = getattr(algorithm, "metrics_note", "")
    if note:
        lines += ["", f"What they measure (logged when training starts): {_prose(note)}"]
    return "\n".join(lines)


RENDERERS = {"interface": render_interface, "hyperparameters": render_hyperparameters, "metrics": render_metrics}


def load(algorithm_name: str) -> Any:
    return importlib.import_module(f"algorithms.{algorithm_name}").ALGORITHM


def blocks_for(algorithm: Any) -> dict[str, str]:
    return {name: RENDERERS[name](algorithm) for name in BLOCKS}


# ---- pages ---------------------------------------------------------------------------------------

def _wrap(name: str, body: str) -> str:
    return f"{BEGIN.format(name=name)}\n{body}\n{END.format(name=name)}"


def skeleton(image: str) -> str:
    return "\n".join([
        f"# {image}", "", "What the image is. (Hand-written: replace this line.)", "",
        "## Interface", "", _wrap("interface", ""), "", "## Hyperparameters", "", _wrap("hyperparameters", ""), "",
        "## Responses", "", "Examples of each response body. (Hand-written.)", "",
        "## Metrics", "", _wrap("metrics", ""), "", "## Behaviour beyond AWS", "", "(Hand-written.)", "",
    ])


def fill(text: str, blocks: dict[str, str], where: str) -> str:
    """`text` with every generated block replaced; ValueError when a block's markers are missing."""
    for name, body in blocks.items():
        begin, end = BEGIN.format(name=name), END.format(name=name)
        start = text.find(begin)
        stop = text.find(end, start + len(begin)) if start >= 0 else -1
        if start < 0 or stop < 0:
            raise ValueError(f"{where}: the markers of the generated block '{name}' are missing; "
                             f"put {begin!r} and {end!r} where the block belongs.")
        text = text[:start] + _wrap(name, body) + text[stop + len(end):]
    return text


def render_all() -> dict[Path, str]:
    """Every image page as this tool would leave it."""
    out = {}
    for image, algorithm_name in images().items():
        path = page_path(image)
        current = path.read_text() if path.exists() else skeleton(image)
        out[path] = fill(current, blocks_for(load(algorithm_name)), str(path.relative_to(REPO)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.make_docs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a page is out of date")
    args = parser.parse_args(argv)
    rendered = render_all()
    stale = [path for path, text in rendered.items() if not path.exists() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"{path.relative_to(REPO)} is out of date: run .venv/bin/python -m tools.make_docs", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rendered[path])
        print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
