#!/usr/bin/env python3
"""Bundles one of twinbridge's API documents (the OpenAPI document, the AsyncAPI document): inlines the
published JSON Schemas it names, checks every reference and writes the served document as JSON and as a C++
source that compiles it in. Both documents keep their schemas under components/schemas.

In the source document, a component schema that is exactly {"$ref": "<path>"} with a path relative to the
document (e.g. "../sif/schemas/third-party-system.schema.json") is replaced by that file's schema, so the
request schemas are the published schemas themselves, never copies. Two changes make the schema work inside
the document, and only these: its "$id" is left out (in the document a schema is identified by its place, and
an "$id" would make its "#/..." references resolve against the published URI instead), and its references
"#<pointer>" are rebased to "#/components/schemas/<name><pointer>". Anything else is an error: another
reference to a file, an "$id", "$anchor" or "$dynamicRef" inside a published schema, or a "#/..." reference
that does not resolve in the bundled document.

Usage: openapi_bundle.py SOURCE OUT_JSON OUT_CPP NAMESPACE FUNCTION DEPFILE
"""

import json
import os
import sys

# Members whose values are data, not schemas: a "$ref" inside them is not a reference.
DATA_KEYWORDS = ("const", "enum", "default", "examples", "example")
# Keywords whose meaning depends on where the schema sits; a published schema using them cannot be embedded.
POSITIONAL_KEYWORDS = ("$id", "$anchor", "$dynamicRef", "$dynamicAnchor", "$recursiveRef", "$recursiveAnchor")


class BundleError(Exception):
    pass


def pointer_token(name):
    return name.replace("~", "~0").replace("/", "~1")


def walk_refs(value, visit, path=""):
    """Calls visit(obj, path) for every object holding a string "$ref", outside data members."""
    if isinstance(value, dict):
        if isinstance(value.get("$ref"), str):
            visit(value, path)
        for key, member in value.items():
            if key not in DATA_KEYWORDS:
                walk_refs(member, visit, f"{path}/{pointer_token(key)}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            walk_refs(item, visit, f"{path}/{i}")


def check_embeddable(schema, file, path=""):
    if isinstance(schema, dict):
        for key, member in schema.items():
            if key in POSITIONAL_KEYWORDS and not (key == "$id" and path == ""):
                raise BundleError(f"{file}: {key} at '{path or '/'}' cannot be embedded in the document")
            if key not in DATA_KEYWORDS:
                check_embeddable(member, file, f"{path}/{pointer_token(key)}")
    elif isinstance(schema, list):
        for i, item in enumerate(schema):
            check_embeddable(item, file, f"{path}/{i}")


def embed(schema, name, file):
    """The published schema as the component `name`: without its $id, its references rebased."""
    if not isinstance(schema, dict):
        raise BundleError(f"{file}: a published schema must be a JSON object")
    check_embeddable(schema, file)
    embedded = {key: member for key, member in schema.items() if key != "$id"}
    base = "#/components/schemas/" + pointer_token(name)

    def rebase(obj, path):
        ref = obj["$ref"]
        if not ref.startswith("#"):
            raise BundleError(f"{file}: the reference '{ref}' at '{path}' leaves the published schema")
        if ref != "#" and not ref.startswith("#/"):
            raise BundleError(f"{file}: the reference '{ref}' at '{path}' is not a JSON pointer")
        obj["$ref"] = base + ref[1:]

    walk_refs(embedded, rebase)
    return embedded


def resolve(document, ref):
    target = document
    for token in ref[2:].split("/") if ref != "#" else []:
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(target, dict) and token in target:
            target = target[token]
        elif isinstance(target, list) and token.isdigit() and int(token) < len(target):
            target = target[int(token)]
        else:
            return None
    return target


def bundle(source):
    with open(source, encoding="utf-8") as f:
        document = json.load(f)
    inputs = []
    schemas = document.get("components", {}).get("schemas", {})
    for name, schema in list(schemas.items()):
        if not (isinstance(schema, dict) and list(schema) == ["$ref"] and not schema["$ref"].startswith("#")):
            continue
        if "#" in schema["$ref"]:
            raise BundleError(f"{source}: components/schemas/{name} must name a whole schema file, not "
                              f"'{schema['$ref']}'")
        file = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(source)), schema["$ref"]))
        with open(file, encoding="utf-8") as f:
            schemas[name] = embed(json.load(f), name, schema["$ref"])
        inputs.append(file)

    def check(obj, path):
        ref = obj["$ref"]
        if not ref.startswith("#"):
            raise BundleError(f"{source}: the reference '{ref}' at '{path}' is to another document; only "
                              "components/schemas may name a published schema file")
        if resolve(document, ref) is None:
            raise BundleError(f"{source}: the reference '{ref}' at '{path}' does not resolve")

    walk_refs(document, check)
    return document, inputs


def write(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def main(argv):
    if len(argv) != 7:
        print(__doc__, file=sys.stderr)
        return 2
    source, out_json, out_cpp, namespace, function, depfile = argv[1:]
    try:
        document, inputs = bundle(source)
    except (BundleError, OSError, json.JSONDecodeError) as e:
        print(f"openapi_bundle: {e}", file=sys.stderr)
        return 1
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if ")tbembed\"" in text:
        print("openapi_bundle: the document contains the raw string delimiter )tbembed\"", file=sys.stderr)
        return 1
    write(out_json, text)
    # In pieces of at most 64000 bytes: compilers need to support string literals of only 65536 characters.
    pieces = ",\n".join(f'R"tbembed({text[i:i + 16000]})tbembed"' for i in range(0, len(text), 16000))
    write(out_cpp, f"""#include <string>
#include <string_view>
namespace {namespace} {{
namespace {{
constexpr std::string_view kPieces[] = {{
{pieces}}};
}}  // namespace
std::string_view {function}() {{
  static const std::string text = [] {{
    std::string out;
    for (const auto piece : kPieces) out += piece;
    return out;
  }}();
  return text;
}}
}}  // namespace {namespace}
""")
    deps = " ".join(p.replace(" ", "\\ ") for p in [os.path.abspath(source), *inputs])
    write(depfile, f"{out_cpp}: {deps}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
