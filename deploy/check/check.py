"""Offline checks of deploy/, run by `cargo xtask test` with the tools `cargo xtask setup`
installs (a venv with kubernetes-validate, jsonschema and helm under target/tools/).

1. Every manifest (the kustomize base, the Helm chart with default and non-default values, the
   RBAC and CRD files, the examples) validates strictly against the Kubernetes OpenAPI schemas;
   weft's custom resources validate against their CRD's own openAPIV3Schema.
2. The kustomize base and the chart with default values render the same objects.
3. The Grafana dashboard parses and queries only metrics listed in deploy/grafana/metrics.txt.

Usage: check.py <deploy dir> <helm binary> <kubectl binary>. Exit 1 with every problem listed.
"""

import json
import pathlib
import re
import subprocess
import sys

import jsonschema
import kubernetes_validate
import yaml

K8S_VERSION = "1.31.0"
CHART_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance")


def render(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def load(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def kn(doc):
    meta = doc.get("metadata", {})
    return f"{doc.get('kind')} {meta.get('namespace', '-')}/{meta.get('name')}"


def crd_schemas(deploy):
    """(group/version, kind) -> openAPIV3Schema of weft's CRDs."""
    schemas = {}
    for path in sorted((deploy / "crds").glob("*.weft.dev.yaml")):
        for crd in load(path):
            spec = crd["spec"]
            for version in spec["versions"]:
                key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                schemas[key] = version["schema"]["openAPIV3Schema"]
    return schemas


def validate(source, docs, schemas, problems):
    for doc in docs:
        where = f"{source}: {kn(doc)}"
        custom = schemas.get((doc.get("apiVersion"), doc.get("kind")))
        try:
            if custom is not None:
                jsonschema.validate(doc, custom)
            elif doc.get("apiVersion", "").startswith("monitoring.coreos.com/"):
                # No offline schema for prometheus-operator's CRDs: check the shape we rely on.
                for key in ("selector", "endpoints"):
                    if key not in doc.get("spec", {}):
                        problems.append(f"{where}: spec.{key} missing")
            else:
                kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except (jsonschema.ValidationError, kubernetes_validate.ValidationError) as e:
            path = "/".join(str(p) for p in e.absolute_path)
            problems.append(f"{where}: {path}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            problems.append(f"{where}: no schema ({e})")


def normalized(docs):
    """Objects by kind/namespace/name, without the labels only a chart adds."""
    out = {}
    for doc in docs:
        for meta in (doc.get("metadata", {}), doc.get("spec", {}).get("template", {}).get("metadata", {})):
            for label in CHART_LABELS:
                meta.get("labels", {}).pop(label, None)
        out[kn(doc)] = doc
    return out


def compare(base, chart, problems):
    b, c = normalized(base), normalized(chart)
    for key in sorted(b.keys() - c.keys()):
        problems.append(f"only in the kustomize base: {key}")
    for key in sorted(c.keys() - b.keys()):
        problems.append(f"only in the Helm chart: {key}")
    for key in sorted(b.keys() & c.keys()):
        if b[key] != c[key]:
            problems.append(f"kustomize base and Helm chart differ: {key}")


def check_dashboard(deploy, problems):
    dashboard = json.loads((deploy / "grafana/weft.json").read_text())
    lines = (deploy / "grafana/metrics.txt").read_text().splitlines()
    exported = {l.strip() for l in lines if l.strip() and not l.startswith("#")}
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["query"] for v in dashboard.get("templating", {}).get("list", []) if v["type"] == "query"]
    if not exprs:
        problems.append("grafana/weft.json: no queries")
    for expr in exprs:
        for name in re.findall(r"\bweft_[a-z0-9_]+", expr):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            if name not in exported and base not in exported:
                problems.append(f"grafana/weft.json queries {name}, not in grafana/metrics.txt")


def main():
    deploy, helm, kubectl = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    chart = str(deploy / "helm/weft")
    problems = []
    schemas = crd_schemas(deploy)

    base = render([kubectl, "kustomize", str(deploy / "base")])
    default = render([helm, "template", "weft", chart, "--include-crds"])
    custom = render([helm, "template", "weft", chart, "--include-crds",
                     "-f", str(deploy / "check/nondefault-values.yaml")])
    validate("kustomize deploy/base", base, schemas, problems)
    validate("helm (default values)", default, schemas, problems)
    validate("helm (check/nondefault-values.yaml)", custom, schemas, problems)
    for path in sorted(deploy.glob("*/*.yaml")):
        if path.name != "kustomization.yaml" and "helm" not in path.parts and "check" not in path.parts:
            validate(str(path.relative_to(deploy)), load(path), schemas, problems)
    if len(custom) <= len(default):
        problems.append("the non-default values render no more objects than the defaults")

    compare(base, default, problems)
    check_dashboard(deploy, problems)

    for p in problems:
        print(f"deploy check: {p}", file=sys.stderr)
    n = len(base) + len(default) + len(custom)
    print(f"deploy check: {n} rendered objects, {len(problems)} problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
