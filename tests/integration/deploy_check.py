"""deploy/k8s/ fits together and fits effdetd: labels and selectors agree, probes hit
/readyz and /healthz on the container's port, the grace period covers the preStop
sleep plus the drain, the ConfigMap's effdetd.conf is valid for effdetd itself, the
user is the image's. The manifests are read through `kubectl annotate --local -o json`
(no cluster, no PyYAML needed). Run by tests/integration/test_deploy.sh."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("BUILD", "build")


def objects():
    env = dict(os.environ, KUBECONFIG="/dev/null")
    out = subprocess.run(["kubectl", "annotate", "--local", "-f", os.path.join(ROOT, "deploy", "k8s"), "-o", "json",
                          "checked=yes"], capture_output=True, check=True, env=env).stdout
    # One JSON document per object, or a List.
    docs, dec, text, i = [], json.JSONDecoder(), out.decode(), 0
    while i < len(text):
        while i < len(text) and text[i].isspace():
            i += 1
        if i == len(text):
            break
        o, i = dec.raw_decode(text, i)
        docs.extend(o["items"] if o.get("kind") == "List" else [o])
    return {(o["kind"], o["metadata"]["name"]): o for o in docs}


def main():
    objs = objects()
    failures = []

    def check(cond, msg):
        if not cond:
            failures.append(msg)

    dep = objs[("Deployment", "effdetd")]
    spec, pod = dep["spec"], dep["spec"]["template"]["spec"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    ann = dep["spec"]["template"]["metadata"].get("annotations", {})
    check(spec["replicas"] == 3, "Deployment: replicas %s, want 3" % spec["replicas"])
    check(spec["selector"]["matchLabels"].items() <= labels.items(), "Deployment: selector does not match its pods")
    for name in ("effdetd", "effdetd-pods"):
        sel = objs[("Service", name)]["spec"]["selector"]
        check(sel.items() <= labels.items(), "Service %s: selector %s matches no pod" % (name, sel))
    pdb = objs[("PodDisruptionBudget", "effdetd")]["spec"]
    check(pdb["selector"]["matchLabels"].items() <= labels.items(), "PDB: selector matches no pod")
    hpa = objs[("HorizontalPodAutoscaler", "effdetd")]["spec"]
    check(hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "effdetd"},
          "HPA: scaleTargetRef is not the Deployment")
    check(hpa["minReplicas"] >= 3 and hpa["maxReplicas"] >= hpa["minReplicas"], "HPA: replica bounds")
    check(pdb.get("maxUnavailable", 0) == 1 or pdb.get("minAvailable", 0) < hpa["minReplicas"],
          "PDB: would block every disruption")

    (c,) = [c for c in pod["containers"] if c["name"] == "effdetd"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        g = c[probe]["httpGet"]
        check(g["path"] == path, "%s: path %s, want %s" % (probe, g["path"], path))
        check(g["port"] in ports or g["port"] in ports.values(), "%s: port %s is not the container's" % (probe, g["port"]))
    check(ann.get("prometheus.io/scrape") == "true", "pods: no prometheus.io/scrape annotation")
    check(int(ann.get("prometheus.io/port", 0)) in ports.values(), "pods: prometheus.io/port is not the container's")
    check(ann.get("prometheus.io/path") == "/metrics", "pods: prometheus.io/path")
    for svc in ("effdetd", "effdetd-pods"):
        for p in objs[("Service", svc)]["spec"]["ports"]:
            check(p["targetPort"] in ports or p["targetPort"] in ports.values(), "Service %s: targetPort" % svc)
    check("requests" in c.get("resources", {}) and "memory" in c["resources"].get("limits", {}),
          "container: resources need requests and a memory limit")

    # The drain fits in the grace period, after the preStop sleep.
    conf = objs[("ConfigMap", "effdetd-config")]["data"]["effdetd.conf"]
    m = re.search(r"^drain_timeout_ms (\d+)$", conf, re.M)
    drain_s = int(m.group(1)) / 1000 if m else 30.0
    pre = c["lifecycle"]["preStop"]
    sleep_s = float(pre["exec"]["command"][-1]) if "exec" in pre else float(pre["sleep"]["seconds"])
    grace = pod["terminationGracePeriodSeconds"]
    check(sleep_s >= 2, "preStop: sleep %s s is too short for the endpoint removal" % sleep_s)
    check(grace > sleep_s + drain_s, "terminationGracePeriodSeconds %s <= preStop %s + drain %s" % (grace, sleep_s, drain_s))
    check(re.search(r"^listen 0\.0\.0\.0:%d$" % ports["http"], conf, re.M) is not None,
          "ConfigMap: effdetd must listen on 0.0.0.0:%d inside the pod" % ports["http"])

    # The image's user.
    with open(os.path.join(ROOT, "deploy", "Containerfile")) as f:
        cf = f.read()
    uid = re.search(r"^USER (\d+)", cf, re.M).group(1)
    sc = pod["securityContext"]
    check(sc.get("runAsNonRoot") is True and str(sc.get("runAsUser")) == uid,
          "pod: runAsUser %s is not the image's %s" % (sc.get("runAsUser"), uid))
    check(c["securityContext"].get("readOnlyRootFilesystem") is True, "container: root filesystem writable")

    # effdetd accepts the ConfigMap's configuration (models from a directory of ours).
    tmp = tempfile.mkdtemp()
    try:
        with open(os.path.join(tmp, "effdetd.conf"), "w") as f:
            f.write(conf)
        shutil.copy(os.path.join(ROOT, "tests", "fixtures", "weights.safetensors"), tmp)
        p = subprocess.run([os.path.join(ROOT, BUILD, "effdetd"), "--config", os.path.join(tmp, "effdetd.conf"),
                            "--models-dir", tmp, "--check-config"], capture_output=True)
        check(p.returncode == 0, "ConfigMap effdetd.conf: %s" % p.stderr.decode().strip())
    finally:
        shutil.rmtree(tmp)

    for f in failures:
        print("FAIL:", f)
    print("deploy_check: %d objects, %d problem(s)" % (len(objs), len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
