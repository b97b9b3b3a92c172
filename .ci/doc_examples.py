#!/usr/bin/env python3
"""Every public item of the library has an example in its documentation.

Reads the JSON that rustdoc writes for the crate (`--output-format json`)
and walks the public API from the crate root, as a user of the crate sees
it: modules, re-exports, types, traits and their methods, free functions and
constants. Struct fields, enum variants and trait implementations are left
out (their type's example shows them). An item counts as having an example
when its documentation holds a code block. Prints FILE:LINE: PATH for each
item without one and exits 1 if there is any.

    python3 .ci/doc_examples.py target/doc/cln_backup.json
"""
import json
import sys


def main(path):
    with open(path) as f:
        doc = json.load(f)
    index = doc["index"]
    seen = set()
    items = []

    def get(i):
        return index.get(str(i))

    def hidden(item):
        return any("hidden" in json.dumps(a) for a in item.get("attrs") or [])

    def record(item, path):
        span = item.get("span") or {}
        line = (span.get("begin") or [0])[0]
        items.append((span.get("filename") or "?", line, "::".join(path), "```" in (item.get("docs") or "")))

    def visit(i, path):
        item = get(i)
        if item is None or item["crate_id"] != 0 or hidden(item) or str(i) in seen:
            return
        seen.add(str(i))
        kind, inner = next(iter(item["inner"].items()))
        here = path + [item["name"]] if item.get("name") else path
        if kind == "module":
            record(item, here)
            for child in inner["items"]:
                visit(child, here)
        elif kind == "use":
            if inner.get("id") is not None:
                visit(inner["id"], path)
        elif kind in ("struct", "enum", "union"):
            record(item, here)
            for impl_id in inner.get("impls") or []:
                impl = (get(impl_id) or {}).get("inner", {}).get("impl")
                if not impl or impl.get("trait") or impl.get("is_synthetic") or impl.get("blanket_impl"):
                    continue
                for m in impl["items"]:
                    method = get(m)
                    if method and method.get("visibility") == "public" and not hidden(method) and str(m) not in seen:
                        seen.add(str(m))
                        record(method, here + [method["name"]])
        elif kind == "trait":
            record(item, here)
            for m in inner["items"]:
                method = get(m)
                if method and not hidden(method):
                    record(method, here + [method["name"]])
        elif kind in ("function", "constant", "static", "type_alias", "macro"):
            record(item, here)

    visit(doc["root"], [])
    missing = sorted(i for i in items if not i[3])
    for filename, line, name, _ in missing:
        print(f"{filename}:{line}: {name} has no example")
    print(f"{len(items)} public items, {len(items) - len(missing)} with an example", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
