#!/usr/bin/env python3
"""The real packaging tools, driven for the Rust packaging tests.

- `render`: Helm v4's own engine (helm-python-sdk) renders the chart; prints
  every object (templates, then crds/) as one JSON array.
- `lint`: Helm's lint, strict; exits 1 with the findings when any is a
  warning or an error.
- `validate`: every object of a YAML stream on stdin against the official
  Kubernetes schemas (kubernetes-validate, strict) for each version given,
  and custom resources against their CRD's openAPIV3Schema (strict: no
  unknown fields), from the CRD files given. Exits 1 naming every failure.

Values are passed as JSON on the command line. Nothing here decides what is
right about netprobe's packaging; the Rust tests do.
"""

import argparse
import copy
import json
import sys

import yaml


def cmd_render(args):
    import helm_python as helm

    chart = helm.Chart.load(args.chart)
    values = json.loads(args.values) if args.values else None
    rendered = chart.render(values, name=args.name, namespace=args.namespace, is_install=True)
    objects = []
    for path in sorted(rendered):
        # NOTES.txt is what `helm install` prints, not a manifest (helm
        # template leaves it out too).
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(rendered[path]):
            if doc is not None:
                objects.append({"source": path, "object": doc})
    if not args.no_crds:
        for crd in sorted(chart.crds, key=lambda c: c["name"]):
            for doc in yaml.safe_load_all(crd["data"]):
                if doc is not None:
                    objects.append({"source": crd["name"], "object": doc})
    # YAML 1.1 (what PyYAML and Kubernetes' sigs.k8s.io/yaml read) has no
    # float without a dot: `1e+06` stays a string here, as it would for any
    # tool that reads `helm template` output, and the schema check catches it.
    json.dump(objects, sys.stdout)


def cmd_lint(args):
    import helm_python as helm

    values = json.loads(args.values) if args.values else None
    report = helm.lint(args.chart, values, strict=True, namespace=args.namespace, kube_version=args.kube_version)
    bad = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
    for m in report.get("messages", []):
        print(f"lint: severity {m.get('severity')} {m.get('path')}: {m.get('error')}")
    for e in report.get("errors", []):
        print(f"lint error: {e}")
    if bad or report.get("errors"):
        sys.exit(1)


def strict_schema(schema):
    """An openAPIV3Schema as JSON Schema that rejects unknown fields, the way
    the API server prunes (and, with fieldValidation=Strict, rejects) them."""
    s = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, list):
            for n in node:
                walk(n)
            return
        if not isinstance(node, dict):
            return
        if node.get("x-kubernetes-int-or-string"):
            node.pop("type", None)
            node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        if node.get("nullable"):
            t = node.get("type")
            if isinstance(t, str):
                node["type"] = [t, "null"]
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        for v in node.values():
            walk(v)

    walk(s)
    # The API server owns metadata's schema; a CRD's says only `type: object`.
    props = s.setdefault("properties", {})
    props["metadata"] = {"type": "object"}
    props.setdefault("apiVersion", {"type": "string"})
    props.setdefault("kind", {"type": "string"})
    return s


def load_crd_schemas(paths):
    schemas = {}
    for p in paths:
        with open(p) as f:
            for doc in yaml.safe_load_all(f):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                group = doc["spec"]["group"]
                kind = doc["spec"]["names"]["kind"]
                for v in doc["spec"]["versions"]:
                    schemas[(f"{group}/{v['name']}", kind)] = strict_schema(v["schema"]["openAPIV3Schema"])
    return schemas


def integral_floats(node, path=""):
    """Paths of floats with an integral value (`1e+06` read as a float,
    `100000.0`): JSON Schema counts them as integers, but they are what Helm
    writes for large numbers of values.yaml and what no manifest should carry
    where Kubernetes wants an integer."""
    if isinstance(node, float) and node.is_integer():
        yield path
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from integral_floats(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from integral_floats(v, f"{path}.{i}")


def cmd_validate(args):
    import jsonschema
    import kubernetes_validate

    crds = load_crd_schemas(args.crd)
    failures = []
    checked = 0
    for doc in yaml.safe_load_all(sys.stdin):
        if doc is None:
            continue
        key = (doc.get("apiVersion"), doc.get("kind"))
        name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        for path in integral_floats(doc):
            failures.append(f"{name}: {path}: a float where an integer belongs")
        if key in crds:
            checked += 1
            errs = sorted(jsonschema.Draft202012Validator(crds[key]).iter_errors(doc), key=str)
            for e in errs:
                path = ".".join(str(x) for x in e.absolute_path)
                failures.append(f"{name} (against its CRD): {path}: {e.message}")
            continue
        for version in args.kube_version:
            checked += 1
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(x) for x in e.path)
                failures.append(f"{name} (Kubernetes {version}): {path}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError as e:
                failures.append(f"{name} (Kubernetes {version}): no schema: {e.message}")
    for f in failures:
        print(f)
    print(f"validated {checked} object-versions, {len(failures)} failures")
    if checked == 0 or failures:
        sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("render")
    r.add_argument("chart")
    r.add_argument("--values", default="")
    r.add_argument("--name", default="netprobe")
    r.add_argument("--namespace", default="netprobe-system")
    r.add_argument("--no-crds", action="store_true")
    r.set_defaults(func=cmd_render)
    li = sub.add_parser("lint")
    li.add_argument("chart")
    li.add_argument("--values", default="")
    li.add_argument("--namespace", default="netprobe-system")
    li.add_argument("--kube-version", default=None)
    li.set_defaults(func=cmd_lint)
    v = sub.add_parser("validate")
    v.add_argument("--kube-version", action="append", required=True)
    v.add_argument("--crd", action="append", default=[])
    v.set_defaults(func=cmd_validate)
    args = ap.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
