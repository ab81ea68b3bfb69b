"""Read a YAML file a colleague (or an attacker) wrote, with limits, and say what is wrong.

``yaml.safe_load`` builds no arbitrary objects, but it still accepts what later crashes or
hangs: a file that is not UTF-8 (a ``UnicodeDecodeError`` traceback), a directory, nesting
deep enough to exhaust Python's recursion in validation, and aliases that expand
exponentially ("billion laughs": nine levels of nine aliases are 387 million values once
pydantic walks them). Here the file is checked as bytes, composed into YAML nodes, and the
nodes are measured before anything is constructed: depth, and the number of values with
every alias expanded (counted per node once, so measuring a bomb is linear in its size).
Every problem becomes a :class:`RecipeError` naming the file, which the CLI prints with exit 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from synthtune.errors import RecipeError

MAX_BYTES = 10 * 1024 * 1024  # a recipe or rules file; real data goes in data files
MAX_DEPTH = 50  # mappings and lists nested in one another
MAX_VALUES = 200_000  # values once aliases are expanded


def read_yaml(path: str | Path, what: str = "recipe") -> Any:
    """The parsed YAML of ``path`` (``what`` names the file in messages)."""
    path = Path(path)
    if path.is_dir():
        raise RecipeError(str(path), [f"is a directory, not a {what} file"])
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise RecipeError(
                str(path), [f"{size:,} bytes; a {what} file may hold {MAX_BYTES:,} at most"]
            )
        data = path.read_bytes()
    except FileNotFoundError:
        raise RecipeError(str(path), [f"{what} file not found"]) from None
    except OSError as exc:
        raise RecipeError(str(path), [f"cannot read the {what} file: {exc.strerror}"]) from None
    loader = yaml.SafeLoader(_decode(path, data, what))
    try:
        # what yaml.safe_load does, in two steps: compose the nodes, measure them, then build
        # the Python values from those same nodes (the text is parsed once)
        node = loader.get_single_node()
        if node is None:
            return None
        _measure(path, node)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise RecipeError(str(path), [f"not valid YAML: {exc}"]) from None
    except RecursionError:
        raise RecipeError(
            str(path), [f"nested too deeply to read (at most {MAX_DEPTH} levels)"]
        ) from None
    finally:
        loader.dispose()


def _decode(path: Path, data: bytes, what: str) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise RecipeError(str(path), ["is UTF-16 text; save the file as UTF-8"])
    if b"\x00" in data[:8192]:
        raise RecipeError(str(path), [f"is a binary file, not a YAML {what}"])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise RecipeError(
            str(path),
            [
                f"line {line}: byte 0x{data[exc.start]:02x} is not UTF-8 (a Latin-1 or "
                "Windows-1252 file?); save the file as UTF-8"
            ],
        ) from None


def _measure(path: Path, root: yaml.Node) -> None:
    """Depth and expanded size of the node graph, iteratively (no recursion to exhaust)."""
    sizes: dict[int, int] = {}
    depth_of: dict[int, int] = {}
    # post-order walk: a node's size is 1 + its children's sizes (aliases share a node, so
    # they are counted as often as they are referenced without being expanded)
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    visiting: set[int] = set()  # started, not finished: the current path from the root
    while stack:
        node, done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        children = _children(node)
        if not done:
            if key in visiting:
                raise RecipeError(
                    str(path),
                    [f"line {node.start_mark.line + 1}: an alias refers to a value it is part of"],
                )
            visiting.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in sizes)
            if len(stack) > 4 * MAX_VALUES:
                _too_big(path, len(stack))
            continue
        sizes[key] = 1 + sum(sizes.get(id(c), 1) for c in children)
        depth_of[key] = 1 + max((depth_of.get(id(c), 1) for c in children), default=0)
        if depth_of[key] > MAX_DEPTH:
            raise RecipeError(
                str(path),
                [
                    f"line {node.start_mark.line + 1}: nested more than {MAX_DEPTH} levels "
                    "deep; flatten the structure"
                ],
            )
        if sizes[key] > MAX_VALUES:
            _too_big(path, sizes[key])


def _too_big(path: Path, values: int) -> None:
    raise RecipeError(
        str(path),
        [
            f"expands to more than {values:,} values through aliases (&anchor / *alias); "
            f"at most {MAX_VALUES:,}: write the values out, or use fewer aliases"
        ],
    )


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []
