"""Regenerate ``legacy_api.json`` from ``../shared/legacy-api-surface.md`` (the scVI 0.6.8 surface).

Usage: ``python tests/data/make_legacy_api.py path/to/legacy-api-surface.md``.
The JSON keeps, per importable legacy module: the re-exported names, and for each public class /
function its parameters (name, kind, default literal when it is a plain literal) and its public
methods with theirs.
"""
import ast
import json
import re
import sys
from pathlib import Path

OPEN, CLOSE = "([{<", ")]}>"


def split_top_level(text: str):
    parts, depth, quote, current = [], 0, None, []
    for char in text:
        if quote:
            current.append(char)
            if char == quote:
                quote = None
            continue
        if char in "'\"":
            quote = char
        elif char in OPEN:
            depth += 1
        elif char in CLOSE:
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    if "".join(current).strip():
        parts.append("".join(current).strip())
    return parts


def parse_params(sig: str):
    params = []
    for raw in split_top_level(sig):
        if raw in ("/", "*"):
            continue
        kind = "var_positional" if raw.startswith("*") and not raw.startswith("**") else (
            "var_keyword" if raw.startswith("**") else "normal")
        name_part, default = raw, None
        has_default = False
        # split "name: annot = default" / "name=default" at the first top-level '='
        depth = 0
        for i, char in enumerate(raw):
            if char in OPEN:
                depth += 1
            elif char in CLOSE:
                depth -= 1
            elif char == "=" and depth == 0:
                name_part, default, has_default = raw[:i], raw[i + 1:].strip(), True
                break
        name = name_part.split(":")[0].strip().lstrip("*")
        entry = {"name": name, "kind": kind, "has_default": has_default}
        if has_default:
            try:
                entry["default"] = ast.literal_eval(default)
                entry["literal"] = True
            except (ValueError, SyntaxError):
                entry["literal"] = False
        params.append(entry)
    return params


def signature_text(line: str):
    match = re.search(r"`([A-Za-z_][A-Za-z0-9_]*)\((.*)\)(?: -> [^`]*)?`", line)
    if not match:
        return None, None
    return match.group(1), match.group(2)


def main(src: str) -> None:
    modules, current, current_class = {}, None, None
    for line in Path(src).read_text().splitlines():
        header = re.match(r"## `([\w.]+)`", line)
        if header:
            current = modules.setdefault(header.group(1), {"reexports": [], "objects": {}})
            current_class = None
            continue
        if line.startswith("## "):
            current = None
            continue
        if current is None:
            continue
        if line.startswith("re-exports:"):
            current["reexports"] = re.findall(r"`(\w+)`", line)
        elif line.startswith("- class ") or line.startswith("- def "):
            name, sig = signature_text(line)
            if name is None:
                continue
            kind = "class" if line.startswith("- class ") else "function"
            is_tuple = "bases: builtins.tuple" in line
            current["objects"][name] = {
                "kind": kind,
                "params": [] if is_tuple else parse_params(sig),
                "members": {},
            }
            current_class = current["objects"][name] if kind == "class" else None
        elif line.startswith("    - ") and current_class is not None:
            body = line[6:]
            if body.startswith("property ") or body.startswith("attribute "):
                member = re.search(r"`(\w+)`", body).group(1)
                current_class["members"][member] = {"kind": body.split()[0]}
            else:
                kind = "staticmethod" if body.startswith("staticmethod ") else "method"
                name, sig = signature_text(body)
                if name:
                    current_class["members"][name] = {"kind": kind, "params": parse_params(sig)}
    out = Path(__file__).with_name("legacy_api.json")
    out.write_text(json.dumps(modules, indent=1, sort_keys=True))
    print(f"wrote {out} ({len(modules)} modules)")


if __name__ == "__main__":
    main(sys.argv[1])
