#!/usr/bin/env python3
"""Generates sma_client/_methods.py from the OpenRPC description of
`sma serve` (one typed method per JSON-RPC method).

    python3 clients/python/generate.py [--sma BIN | --openrpc FILE] [--check]

The description comes from `BIN serve --openrpc` (BIN: --sma, else $SMA_BIN,
else sma on the PATH) or from FILE. With --check, nothing is written: the
exit status is 1 (and a diff is printed) if the checked-in module differs
from a fresh generation. Standard library only.
"""

import argparse
import difflib
import json
import keyword
import os
import shutil
import subprocess
import sys
import textwrap
from typing import Any, Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
TARGET = os.path.join(HERE, "sma_client", "_methods.py")
WIDTH = 88


def python_name(json_name: str) -> str:
    """The Python name of a JSON-RPC method or param: `keys.observe` ->
    `keys_observe`; a Python keyword gets a trailing `_` (`from` -> `from_`)."""
    name = json_name.replace(".", "_")
    return name + "_" if keyword.iskeyword(name) else name


def annotation(schema: Dict[str, Any]) -> str:
    """The type hint for a value of `schema`."""
    if "enum" in schema:
        return "Literal[" + ", ".join(json.dumps(v) for v in schema["enum"]) + "]"
    if "const" in schema:
        return "Literal[" + json.dumps(schema["const"]) + "]"
    t = schema.get("type")
    if isinstance(t, list):
        # A union such as ["string", "null"].
        kinds = [annotation({**schema, "type": k}) for k in t if k != "null"]
        union = kinds[0] if len(kinds) == 1 else "Union[" + ", ".join(kinds) + "]"
        return f"Optional[{union}]" if "null" in t else union
    if t == "string":
        return "str"
    if t == "integer":
        return "int"
    if t == "number":
        return "float"
    if t == "boolean":
        return "bool"
    if t == "array":
        return "List[" + annotation(schema.get("items", {})) + "]"
    if t == "object":
        return "Dict[str, Any]"
    return "Any"


def describe(schema: Dict[str, Any]) -> str:
    """A short text for the values of `schema`, for docstrings."""
    if "enum" in schema:
        values = [json.dumps(v) for v in schema["enum"]]
        return "one of " + ", ".join(values)
    if "const" in schema:
        return json.dumps(schema["const"])
    t = schema.get("type")
    if isinstance(t, list):
        return " or ".join(describe({**schema, "type": k}) if k != "null" else "None" for k in t)
    if t == "array":
        items = schema.get("items")
        return "list of " + describe(items) if items else "list"
    if t == "object":
        props = schema.get("properties")
        if not props:
            return "object"
        return "object with " + ", ".join(
            f"``{k}`` ({describe(v)})" for k, v in props.items()
        )
    return {"string": "str", "integer": "int", "number": "float", "boolean": "bool"}.get(
        t, "any"
    )


def wrap(text: str, indent: str) -> List[str]:
    return textwrap.wrap(
        text,
        width=WIDTH,
        initial_indent=indent,
        subsequent_indent=indent,
        break_on_hyphens=False,
        break_long_words=False,
    )


def docstring(text: str) -> str:
    """`text` made safe inside a triple-quoted docstring."""
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


def method_source(m: Dict[str, Any]) -> List[str]:
    name = m["name"]
    params = m.get("params", [])
    sig = ["self"]
    if params:
        sig.append("*")
    for p in params:
        hint = annotation(p.get("schema", {}))
        if p.get("required"):
            sig.append(f"{python_name(p['name'])}: {hint}")
        else:
            sig.append(f"{python_name(p['name'])}: Optional[{hint}] = None")
    result = annotation(m.get("result", {}).get("schema", {}))
    one_line = f"    def {python_name(name)}({', '.join(sig)}) -> {result}:"
    lines = []
    if len(one_line) <= WIDTH:
        lines.append(one_line)
    else:
        lines.append(f"    def {python_name(name)}(")
        lines += [f"        {s}," for s in sig]
        lines.append(f"    ) -> {result}:")

    doc = wrap(docstring(m.get("summary", "")), "        ")
    doc[0] = '        """' + doc[0].lstrip()
    doc.append("")
    doc += wrap(f"JSON-RPC method ``{name}``.", "        ")
    if params:
        doc += ["", "        Args:"]
        for p in params:
            pn = python_name(p["name"])
            text = docstring(p.get("description", ""))
            if pn != p["name"]:
                text = f"(JSON-RPC param ``{p['name']}``) {text}"
            if p.get("required"):
                text += " Required."
            doc += wrap(f"{pn}: {text}", "            ")
    doc += ["", "        Returns:"]
    doc += wrap(docstring(describe(m.get("result", {}).get("schema", {}))) + ".", "            ")
    doc.append('        """')
    lines += doc
    args = ", ".join(f"{json.dumps(p['name'])}: {python_name(p['name'])}" for p in params)
    call = f"        return self._invoke({json.dumps(name)}, {{{args}}})"
    if len(call) <= WIDTH:
        lines.append(call)
    else:
        lines.append(f"        return self._invoke(")
        lines.append(f"            {json.dumps(name)},")
        lines.append("            {")
        for p in params:
            lines.append(f"                {json.dumps(p['name'])}: {python_name(p['name'])},")
        lines.append("            },")
        lines.append("        )")
    return lines


def render(doc: Dict[str, Any]) -> str:
    """The text of sma_client/_methods.py for the OpenRPC document `doc`."""
    out = [
        "# Generated by clients/python/generate.py from `sma serve --openrpc`: do not edit.",
        '"""One typed method per JSON-RPC method of `sma serve` (generated from its',
        'OpenRPC description; see clients/python/generate.py)."""',
        "",
        "from typing import Any, Dict, List, Literal, Optional",
        "",
        '__all__ = ["Methods", "METHODS"]',
        "",
        "#: The JSON-RPC method names and their params (name, required), as described.",
        "METHODS = {",
    ]
    for m in doc["methods"]:
        params = ", ".join(
            f"({json.dumps(p['name'])}, {bool(p.get('required'))})" for p in m.get("params", [])
        )
        entry = f"    {json.dumps(m['name'])}: [{params}],"
        if len(entry) <= WIDTH:
            out.append(entry)
        else:
            out.append(f"    {json.dumps(m['name'])}: [")
            for p in m.get("params", []):
                out.append(f"        ({json.dumps(p['name'])}, {bool(p.get('required'))}),")
            out.append("    ],")
    out += [
        "}",
        "",
        "",
        "class Methods:",
        '    """The methods of `sma serve`: JSON-RPC `a.b_c` is `a_b_c`, params are',
        "    keyword arguments (a param named like a Python keyword gets a trailing",
        "    `_`), and params left at None are not sent. Raise RpcError for error",
        '    answers."""',
        "",
        "    def _invoke(self, method: str, params: Dict[str, Any]) -> Any:",
        "        raise NotImplementedError",
    ]
    for m in doc["methods"]:
        out.append("")
        out += method_source(m)
    return "\n".join(out) + "\n"


def openrpc_of(sma: str) -> Dict[str, Any]:
    """The OpenRPC document printed by `sma serve --openrpc`."""
    out = subprocess.run([sma, "serve", "--openrpc"], check=True, stdout=subprocess.PIPE)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def main(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--sma", help="the sma program (default: $SMA_BIN, else sma on the PATH)")
    src.add_argument("--openrpc", help="read the OpenRPC document from this file")
    ap.add_argument("--check", action="store_true", help="only check the checked-in module")
    a = ap.parse_args(argv)
    if a.openrpc:
        with open(a.openrpc, encoding="utf-8") as f:
            doc = json.load(f)
    else:
        sma = a.sma or os.environ.get("SMA_BIN") or shutil.which("sma")
        if not sma:
            ap.error("no sma program: give --sma or --openrpc, or set SMA_BIN")
        doc = openrpc_of(sma)
    fresh = render(doc)
    if a.check:
        with open(TARGET, encoding="utf-8") as f:
            current = f.read()
        if current == fresh:
            return 0
        sys.stdout.writelines(
            difflib.unified_diff(
                current.splitlines(True), fresh.splitlines(True), TARGET, "generated"
            )
        )
        print("sma_client/_methods.py is stale: run clients/python/generate.py", file=sys.stderr)
        return 1
    with open(TARGET, "w", encoding="utf-8") as f:
        f.write(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
