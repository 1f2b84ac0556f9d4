#!/usr/bin/env python3
"""Invariants of the rendered Switchboard Kubernetes manifests (deploy/kubernetes).

    check_manifests.py RENDERED.yaml...   check each rendering (one overlay's `kubectl kustomize`
                                          output per file); exit 1 on any violation
    check_manifests.py --self-test RENDERED.yaml
                                          break a good rendering in one way per rule and check
                                          that the rule, and only a rule, catches each

Rules (each can fail; --self-test proves it):
  probes          every long-running container (Deployment, StatefulSet, DaemonSet) has a
                  readiness and a liveness probe; Jobs are exempt
  probe-port      every probe's port is a port of its container (by name or number)
  resources       every container has CPU and memory requests and limits, requests <= limits
  security        pod/container: runAsNonRoot, readOnlyRootFilesystem, no privilege
                  escalation, all capabilities dropped, seccomp RuntimeDefault; Switchboard
                  containers run as uid 10001
  grace           terminationGracePeriodSeconds of a Switchboard service exceeds its
                  SHUTDOWN_TIMEOUT_SECS (default 10; the whole shutdown's bound) plus its
                  preStop sleep
  hpa-target      every HPA scales an existing Deployment/StatefulSet; minReplicas <= maxReplicas
  pdb-target      every PDB selects the pods of an existing workload and lets one be evicted
  service-target  every Service selects a workload's pods and targets a port they have; every
                  Ingress backend is an existing Service port
  config-ref      every ConfigMap volume is rendered alongside; every secretKeyRef is one of
                  the documented Secrets or rendered alongside
  networkpolicy   a default deny (ingress and egress) for the whole namespace; every workload
                  is selected by an allow policy; only ingress accepts traffic from outside the
                  namespace; among Switchboard pods only outbound may reach addresses outside
                  the cluster other than the database's (egress to an ipBlock on a port other
                  than PostgreSQL's, or to anywhere)
  secrets         no Secret holds a value other than a placeholder (REPLACE_ME, example, ...);
                  secret-like variables (DATABASE_URL, *KEY, *TOKEN*, *PASSWORD*, *SECRET*)
                  come from secretKeyRef, never a literal value (a value that only quotes
                  $(VAR) of an earlier variable of the container read from a Secret is one)
  image           Switchboard containers share one image, with a tag, never :latest
  jetstream       JETSTREAM_REPLICAS is at most the NATS StatefulSet's replicas
"""

from __future__ import annotations

import base64
import copy
import re
import sys
from typing import Any, Callable, Iterator

import yaml

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")
LONG_RUNNING = ("Deployment", "StatefulSet", "DaemonSet")
SWITCHBOARD_BINARIES = ("ingress", "behavior-worker", "outbound", "twilio-fake", "switchboard")
DOCUMENTED_SECRETS = {"switchboard-database", "switchboard-master-key", "switchboard-nats",
                      "switchboard-pg-app"}
PLACEHOLDER = re.compile(r"REPLACE|CHANGE[_-]?ME|example\.(com|org|net)|placeholder", re.I)
SECRET_ENV = re.compile(r"(^DATABASE_URL$|KEY$|TOKEN|PASSWORD|SECRET)")
# A value that is only another variable of the container, $(VAR), in double quotes or not.
ENV_REFERENCE = re.compile(r'^("?)\$\(([A-Za-z_][A-Za-z0-9_]*)\)\1$')
POSTGRES_PORT = 5432


class Violation(Exception):
    pass


def load(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if isinstance(d, dict)]


def name(doc: dict) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def pod_spec(doc: dict) -> dict | None:
    kind = doc.get("kind")
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return doc["spec"]["template"]["spec"]
    if kind == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


def pod_labels(doc: dict) -> dict:
    if doc.get("kind") == "CronJob":
        t = doc["spec"]["jobTemplate"]["spec"]["template"]
    else:
        t = doc["spec"]["template"]
    return t.get("metadata", {}).get("labels", {}) or {}


def containers(spec: dict) -> Iterator[tuple[dict, bool]]:
    for c in spec.get("initContainers", []) or []:
        yield c, True
    for c in spec.get("containers", []) or []:
        yield c, False


def binary(c: dict) -> str | None:
    cmd = (c.get("command") or []) + (c.get("args") or [])
    return cmd[0] if cmd and cmd[0] in SWITCHBOARD_BINARIES else None


def env_map(c: dict) -> dict[str, dict]:
    return {e["name"]: e for e in c.get("env", []) or []}


def matches(selector: dict | None, labels: dict) -> bool:
    """A LabelSelector against a label set (an empty selector matches everything)."""
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def quantity(q: Any) -> float:
    """A Kubernetes quantity as a number (cores or bytes)."""
    s = str(q)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
             "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
    for u in sorted(units, key=len, reverse=True):
        if s.endswith(u):
            return float(s[: -len(u)]) * units[u]
    return float(s)


def check(docs: list[dict]) -> list[tuple[str, str]]:
    """Every violation in one rendering, as (rule, message)."""
    out: list[tuple[str, str]] = []

    def fail(rule: str, msg: str) -> None:
        out.append((rule, msg))

    workloads = [d for d in docs if d.get("kind") in WORKLOAD_KINDS]
    by_kind_name = {(d["kind"], d["metadata"]["name"]): d for d in docs if "metadata" in d}
    configmaps = {d["metadata"]["name"] for d in docs if d.get("kind") == "ConfigMap"}
    secrets = {d["metadata"]["name"] for d in docs if d.get("kind") == "Secret"}

    images = set()
    for w in workloads:
        spec = pod_spec(w)
        psc = spec.get("securityContext", {}) or {}
        for c, is_init in containers(spec):
            where = f"{name(w)} container {c['name']}"
            csc = c.get("securityContext", {}) or {}
            # probes
            if w["kind"] in LONG_RUNNING and not is_init:
                for probe in ("readinessProbe", "livenessProbe"):
                    if probe not in c:
                        fail("probes", f"{where}: no {probe}")
            # probe-port
            port_names = {p.get("name") for p in c.get("ports", []) or []}
            port_numbers = {p.get("containerPort") for p in c.get("ports", []) or []}
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                p = c.get(probe)
                if not p:
                    continue
                handler = p.get("httpGet") or p.get("tcpSocket") or p.get("grpc")
                if handler is None:
                    continue
                port = handler.get("port")
                ok = port in port_names if isinstance(port, str) else port in port_numbers
                if not ok:
                    fail("probe-port", f"{where}: {probe} port {port!r} is not a container port")
            # resources
            res = c.get("resources", {}) or {}
            for part in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in (res.get(part) or {}):
                        fail("resources", f"{where}: no {part}.{r}")
            for r in ("cpu", "memory"):
                req, lim = (res.get("requests") or {}).get(r), (res.get("limits") or {}).get(r)
                if req is not None and lim is not None and quantity(req) > quantity(lim):
                    fail("resources", f"{where}: {r} request {req} above limit {lim}")
            # security
            def eff(key: str) -> Any:
                return csc.get(key, psc.get(key))
            if eff("runAsNonRoot") is not True:
                fail("security", f"{where}: runAsNonRoot is not true")
            if csc.get("readOnlyRootFilesystem") is not True:
                fail("security", f"{where}: readOnlyRootFilesystem is not true")
            if csc.get("allowPrivilegeEscalation") is not False:
                fail("security", f"{where}: allowPrivilegeEscalation is not false")
            if "ALL" not in ((csc.get("capabilities") or {}).get("drop") or []):
                fail("security", f"{where}: capabilities do not drop ALL")
            if (eff("seccompProfile") or {}).get("type") != "RuntimeDefault":
                fail("security", f"{where}: seccompProfile is not RuntimeDefault")
            bin_ = binary(c)
            if bin_ and eff("runAsUser") != 10001:
                fail("security", f"{where}: runs as {eff('runAsUser')!r}, not uid 10001")
            # image
            if bin_:
                image = c.get("image", "")
                images.add(image)
                tag = image.rsplit("/", 1)[-1].partition(":")[2]
                if "@" not in image and (not tag or tag == "latest"):
                    fail("image", f"{where}: image {image!r} has no pinned tag")
            # grace
            if bin_ and w["kind"] in LONG_RUNNING and not is_init:
                env = env_map(c)
                def secs(var: str, default: int) -> int:
                    e = env.get(var)
                    return int(e["value"]) if e and "value" in e else default
                bound = secs("SHUTDOWN_TIMEOUT_SECS", 10)
                pre = ((c.get("lifecycle") or {}).get("preStop") or {})
                cmd = (pre.get("exec") or {}).get("command") or []
                if cmd[:1] == ["sleep"] and len(cmd) > 1:
                    bound += int(cmd[1])
                if "sleep" in pre:
                    bound += int(pre["sleep"]["seconds"])
                grace = spec.get("terminationGracePeriodSeconds", 30)
                if grace <= bound:
                    fail("grace", f"{where}: terminationGracePeriodSeconds {grace} <= "
                                  f"shutdown bound {bound}")
            # secrets in env
            from_secrets: set[str] = set()
            for e in c.get("env", []) or []:
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    from_secrets.add(e["name"])
                if SECRET_ENV.search(e["name"]) and "value" in e:
                    quoted = ENV_REFERENCE.match(str(e["value"]))
                    if not (quoted and quoted.group(2) in from_secrets):
                        fail("secrets", f"{where}: {e['name']} is a literal value, not a "
                                        "secretKeyRef")
                if ref and ref["name"] not in DOCUMENTED_SECRETS | secrets:
                    fail("config-ref", f"{where}: {e['name']} reads unknown Secret {ref['name']}")
        for v in spec.get("volumes", []) or []:
            cm = v.get("configMap")
            if cm and cm["name"] not in configmaps:
                fail("config-ref", f"{name(w)}: volume {v['name']} needs ConfigMap {cm['name']}, "
                                   "not rendered")
    if len(images) > 1:
        fail("image", f"Switchboard containers use several images: {sorted(images)}")

    # hpa-target
    for h in (d for d in docs if d.get("kind") == "HorizontalPodAutoscaler"):
        ref = h["spec"]["scaleTargetRef"]
        if (ref["kind"], ref["name"]) not in by_kind_name or ref["kind"] not in LONG_RUNNING:
            fail("hpa-target", f"{name(h)}: scales {ref['kind']}/{ref['name']}, not rendered")
        if h["spec"].get("minReplicas", 1) > h["spec"]["maxReplicas"]:
            fail("hpa-target", f"{name(h)}: minReplicas above maxReplicas")

    # pdb-target
    for p in (d for d in docs if d.get("kind") == "PodDisruptionBudget"):
        targets = [w for w in workloads if w["kind"] in LONG_RUNNING
                   and matches(p["spec"].get("selector"), pod_labels(w))]
        if not targets:
            fail("pdb-target", f"{name(p)}: selects no workload's pods")
        spec = p["spec"]
        if "maxUnavailable" in spec and str(spec["maxUnavailable"]) in ("0", "0%"):
            fail("pdb-target", f"{name(p)}: maxUnavailable 0 blocks every eviction")
        if "minAvailable" in spec and targets:
            replicas = min(t["spec"].get("replicas", 1) for t in targets)
            if str(spec["minAvailable"]) == "100%" or (
                    isinstance(spec["minAvailable"], int) and spec["minAvailable"] >= replicas):
                fail("pdb-target", f"{name(p)}: minAvailable leaves no pod evictable")

    # service-target
    services = {}
    for s in (d for d in docs if d.get("kind") == "Service"):
        services[s["metadata"]["name"]] = s
        sel = s["spec"].get("selector")
        targets = [w for w in workloads if sel and matches({"matchLabels": sel}, pod_labels(w))]
        if not targets:
            fail("service-target", f"{name(s)}: selects no workload's pods")
        for port in s["spec"].get("ports", []):
            tp = port.get("targetPort", port["port"])
            for t in targets:
                cports = [cp for c, _ in containers(pod_spec(t)) for cp in c.get("ports", []) or []]
                if not any(cp.get("name") == tp or cp.get("containerPort") == tp for cp in cports):
                    fail("service-target", f"{name(s)}: targetPort {tp!r} not a port of {name(t)}")
    for ing in (d for d in docs if d.get("kind") == "Ingress"):
        for rule in ing["spec"].get("rules", []):
            for path in (rule.get("http") or {}).get("paths", []):
                svc = path["backend"]["service"]
                s = services.get(svc["name"])
                port = svc["port"]
                if s is None or not any(
                        p.get("name") == port.get("name") or p["port"] == port.get("number")
                        for p in s["spec"]["ports"]):
                    fail("service-target", f"{name(ing)}: backend {svc['name']}:{port} not rendered")

    # networkpolicy
    policies = [d for d in docs if d.get("kind") == "NetworkPolicy"]
    default_deny = [
        p for p in policies
        if p["spec"].get("podSelector") == {}
        and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress") and not p["spec"].get("egress")
    ]
    if workloads and not default_deny:
        fail("networkpolicy", "no default-deny NetworkPolicy (podSelector {}, Ingress and Egress)")
    allow = [p for p in policies if p not in default_deny]
    for w in workloads:
        if not any(matches(p["spec"].get("podSelector"), pod_labels(w)) for p in allow
                   if p["spec"].get("podSelector") != {}):
            fail("networkpolicy", f"{name(w)}: no NetworkPolicy lets its pods talk to anything")
    for p in allow:
        selected = [w for w in workloads if matches(p["spec"].get("podSelector"), pod_labels(w))]
        for rule in p["spec"].get("ingress", []) or []:
            peers = rule.get("from")
            external = not peers or any(
                "ipBlock" in peer or "namespaceSelector" in peer for peer in peers)
            if not external:
                continue
            for w in selected:
                comp = pod_labels(w).get("app.kubernetes.io/component")
                if pod_labels(w).get("app.kubernetes.io/name") == "switchboard" and comp != "ingress":
                    fail("networkpolicy", f"{name(p)}: lets traffic from outside the namespace "
                                          f"into {name(w)}")
        for rule in p["spec"].get("egress", []) or []:
            peers = rule.get("to")
            ports = [pt.get("port") for pt in rule.get("ports", []) or []]
            leaves_cluster = not peers or any("ipBlock" in peer for peer in peers)
            database_only = bool(ports) and all(pt == POSTGRES_PORT for pt in ports) and peers
            if not leaves_cluster or database_only:
                continue
            for w in selected:
                labels = pod_labels(w)
                if (labels.get("app.kubernetes.io/name") == "switchboard"
                        and labels.get("app.kubernetes.io/component") != "outbound"):
                    fail("networkpolicy", f"{name(p)}: lets {name(w)} reach outside the cluster "
                                          f"(ports {ports or 'all'})")

    # secrets
    for s in (d for d in docs if d.get("kind") == "Secret"):
        values = dict(s.get("stringData") or {})
        for k, v in (s.get("data") or {}).items():
            try:
                values[k] = base64.b64decode(v).decode("utf-8", "replace")
            except Exception:
                values[k] = str(v)
        for k, v in values.items():
            if v and not PLACEHOLDER.search(str(v)):
                fail("secrets", f"{name(s)}: key {k} holds a value that is not a placeholder")

    # jetstream
    nats = [d for d in docs if d.get("kind") == "StatefulSet"
            and pod_labels(d).get("app.kubernetes.io/name") == "nats"]
    for w in workloads:
        for c, _ in containers(pod_spec(w)):
            e = env_map(c).get("JETSTREAM_REPLICAS")
            if e and "value" in e and nats:
                if int(e["value"]) > nats[0]["spec"].get("replicas", 1):
                    fail("jetstream", f"{name(w)}: JETSTREAM_REPLICAS {e['value']} above the "
                                      f"{nats[0]['spec'].get('replicas', 1)} NATS servers")
    return out


# --- self-test: one deliberate break per rule ------------------------------------------------

def find(docs: list[dict], kind: str, nm: str) -> dict:
    for d in docs:
        if d.get("kind") == kind and d["metadata"]["name"] == nm:
            return d
    raise KeyError(f"{kind}/{nm} not in the rendering the self-test was given")


def container(docs: list[dict], kind: str, nm: str) -> dict:
    return pod_spec(find(docs, kind, nm))["containers"][0]


def env_set(c: dict, var: str, value: str) -> None:
    c["env"] = [e for e in c.get("env", []) if e["name"] != var] + [{"name": var, "value": value}]


BREAKS: list[tuple[str, str, Callable[[list[dict]], None]]] = [
    ("probes", "worker without readiness probe",
     lambda d: container(d, "Deployment", "behavior-worker").pop("readinessProbe")),
    ("probes", "NATS without liveness probe",
     lambda d: container(d, "StatefulSet", "nats").pop("livenessProbe")),
    ("probe-port", "ingress probing a port it does not have",
     lambda d: container(d, "Deployment", "ingress")["readinessProbe"]["httpGet"]
     .__setitem__("port", "admin")),
    ("resources", "outbound without a memory limit",
     lambda d: container(d, "Deployment", "outbound")["resources"]["limits"].pop("memory")),
    ("resources", "migrate Job without requests",
     lambda d: container(d, "Job", "switchboard-migrate")["resources"].pop("requests")),
    ("resources", "request above limit",
     lambda d: container(d, "Deployment", "ingress")["resources"]["requests"]
     .__setitem__("cpu", "4")),
    ("security", "writable root file system",
     lambda d: container(d, "Deployment", "ingress")["securityContext"]
     .__setitem__("readOnlyRootFilesystem", False)),
    ("security", "root allowed",
     lambda d: [pod_spec(find(d, "Deployment", "outbound"))["securityContext"]
                .__setitem__("runAsNonRoot", False),
                container(d, "Deployment", "outbound")["securityContext"].pop("runAsNonRoot")]),
    ("security", "capabilities kept",
     lambda d: container(d, "StatefulSet", "nats")["securityContext"].pop("capabilities")),
    ("grace", "grace period below SHUTDOWN_TIMEOUT_SECS",
     lambda d: env_set(container(d, "Deployment", "behavior-worker"), "SHUTDOWN_TIMEOUT_SECS", "60")),
    ("hpa-target", "HPA of a renamed Deployment",
     lambda d: find(d, "HorizontalPodAutoscaler", "ingress")["spec"]["scaleTargetRef"]
     .__setitem__("name", "ingres")),
    ("pdb-target", "PDB selecting nothing",
     lambda d: find(d, "PodDisruptionBudget", "outbound")["spec"]["selector"]["matchLabels"]
     .__setitem__("app.kubernetes.io/component", "outbond")),
    ("pdb-target", "PDB blocking every eviction",
     lambda d: find(d, "PodDisruptionBudget", "nats")["spec"].__setitem__("maxUnavailable", 0)),
    ("service-target", "Service to a port the pods lack",
     lambda d: find(d, "Service", "ingress")["spec"]["ports"][0].__setitem__("targetPort", 9999)),
    ("config-ref", "an undocumented Secret",
     lambda d: env_map(container(d, "Deployment", "outbound"))["DATABASE_URL"]["valueFrom"]
     ["secretKeyRef"].__setitem__("name", "my-db")),
    ("networkpolicy", "no default deny",
     lambda d: d.remove(find(d, "NetworkPolicy", "default-deny"))),
    ("networkpolicy", "behavior-worker open to the world",
     lambda d: find(d, "NetworkPolicy", "allow-ingress-http")["spec"]["podSelector"]["matchLabels"]
     .pop("app.kubernetes.io/component")),
    ("networkpolicy", "behavior-worker reaching the internet",
     lambda d: find(d, "NetworkPolicy", "allow-outbound-internet-egress")["spec"]["podSelector"]
     ["matchLabels"].pop("app.kubernetes.io/component")),
    ("secrets", "a real-looking master key in a Secret",
     lambda d: d.append({"apiVersion": "v1", "kind": "Secret",
                         "metadata": {"name": "switchboard-master-key"},
                         "stringData": {"key": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}})),
    ("secrets", "the database URL as a literal env value",
     lambda d: env_set(container(d, "Deployment", "behavior-worker"), "DATABASE_URL",
                       "postgres://switchboard:hunter2@db:5432/switchboard")),
    ("secrets", "a NATS password quoting a variable that is not from a Secret",
     lambda d: [env_set(container(d, "StatefulSet", "nats"), "NATS_CLEAR_TEXT", "hunter2"),
                env_set(container(d, "StatefulSet", "nats"), "NATS_CLI_PASSWORD",
                        '"$(NATS_CLEAR_TEXT)"')]),
    ("image", "an unpinned image",
     lambda d: container(d, "Deployment", "outbound").__setitem__("image", "switchboard:latest")),
    ("jetstream", "more stream replicas than NATS servers",
     lambda d: env_set(container(d, "Deployment", "outbound"), "JETSTREAM_REPLICAS", "5")),
]


def self_test(path: str) -> int:
    good = load(path)
    base = check(good)
    if base:
        print(f"self-test: the rendering {path} must pass to start with:", file=sys.stderr)
        for rule, msg in base:
            print(f"  {rule}: {msg}", file=sys.stderr)
        return 1
    failed = 0
    rules = set()
    for rule, what, mutate in BREAKS:
        docs = copy.deepcopy(good)
        mutate(docs)
        found = check(docs)
        rules.add(rule)
        if any(r == rule for r, _ in found):
            print(f"ok   {rule:15} caught: {what}")
        else:
            failed += 1
            print(f"FAIL {rule:15} missed: {what} (found {found})")
    documented = set(re.findall(r"^  ([a-z-]+) {2,}", __doc__, re.M))
    if documented - rules:
        failed += 1
        print(f"FAIL rules without a self-test: {sorted(documented - rules)}")
    print(f"self-test: {len(BREAKS) - failed} of {len(BREAKS)} breaks caught")
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--self-test":
        return self_test(argv[1])
    if not argv or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    status = 0
    for path in argv:
        violations = check(load(path))
        for rule, msg in violations:
            print(f"{path}: {rule}: {msg}")
        print(f"{path}: {'FAILED' if violations else 'ok'} ({len(violations)} violations)")
        status |= 1 if violations else 0
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
