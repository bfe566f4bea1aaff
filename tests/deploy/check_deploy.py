#!/usr/bin/env python3
"""Checks the deployment artefacts (deploy/, docker-compose.yml) against the
binaries they deploy, so that a renamed flag, a moved port, a config key the
loader rejects or a metric that does not exist fails CI instead of a rollout.

Run by ctest (tests/deploy/CMakeLists.txt), one test case class per ctest
test:
  KubernetesTest  `kubectl kustomize` (or `kustomize build`) of both overlays
  ComposeTest     `docker-compose config` of docker-compose.yml
  DockerfileTest  deploy/docker/Dockerfile and scripts/runtime-packages.txt
  DashboardTest   deploy/grafana/switchboard.json against /metrics

Every switchboard started here listens on loopback ports picked at run time
(--listen=127.0.0.1:0), with only the environment the manifest gives it.
Needs python3-yaml and docker-compose (scripts/setup.sh installs both) and
kubectl or kustomize (not in Debian: install kubectl from the Kubernetes apt
repository, or a kustomize release binary).
"""

import argparse
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

try:
    import yaml
except ImportError:
    sys.exit("tests/deploy: Python module 'yaml' missing: run scripts/setup.sh "
             "(Debian package python3-yaml)")

# Set by main() from the command line.
SOURCE_DIR = ""
SWITCHBOARD = ""
SBCTL = ""

# A started server has this long to log that it listens, and to exit after
# SIGTERM; generous, as the ASan build runs these tests too.
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 60
# What terminationGracePeriodSeconds must leave after preStop and the drain:
# the broker flush, closing connections and the metrics exposer's 2 s stop.
MIN_SHUTDOWN_MARGIN_S = 5


def source(*parts):
    return os.path.join(SOURCE_DIR, *parts)


def read(*parts):
    with open(source(*parts), encoding="utf-8") as f:
        return f.read()


def run(cmd, **kwargs):
    """Runs cmd and returns the CompletedProcess (text, output captured)."""
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kwargs)


# ---- the binaries -----------------------------------------------------------

_flag_cache = {}


def known_flags(binary):
    """The flags `binary --helpfull` lists (Abseil exits 1 after printing)."""
    if binary not in _flag_cache:
        out = run([binary, "--helpfull"])
        flags = set(re.findall(r"^\s+--([A-Za-z0-9_]+) \(", out.stdout + out.stderr, re.M))
        if not flags:
            raise AssertionError(f"{binary} --helpfull listed no flags:\n{out.stdout}{out.stderr}")
        _flag_cache[binary] = flags
    return _flag_cache[binary]


def parse_flags(args):
    """['--a=1', '--b', 'x'] -> ({'a': '1', 'b': 'true'}, ['x']); the last
    occurrence of a flag wins, as in Abseil."""
    flags, positional = {}, []
    for arg in args:
        if arg.startswith("--"):
            name, _, value = arg[2:].partition("=")
            flags[name] = value if "=" in arg else "true"
        else:
            positional.append(arg)
    return flags, positional


def proto_default(message, field):
    """The default of a field of config.proto, e.g. ('Server', 'listen')."""
    proto = read("proto", "switchboard", "config", "v1", "config.proto")
    body = re.search(r"message %s \{(.*?)\n\}" % message, proto, re.S)
    match = body and re.search(r"\b%s = \d+\s*\[default = \"?([^\",\]]+)" % field, body.group(1))
    if not match:
        raise AssertionError(f"config.proto: no default for {message}.{field}")
    return match.group(1)


def effective_server(flags, config):
    """(listen, metrics_listen, drain_timeout_ms) as the binary resolves them:
    flag, else config file, else the schema's default."""
    server = (config or {}).get("server") or {}
    listen = flags.get("listen") or server.get("listen") or proto_default("Server", "listen")
    metrics = (flags.get("metrics_listen") or server.get("metrics_listen")
               or proto_default("Server", "metrics_listen"))
    drain = int(server.get("drain_timeout_ms", proto_default("Server", "drain_timeout_ms")))
    return listen, metrics, drain


def port_of(address):
    host, _, port = address.rpartition(":")
    return host, int(port)


class Switchboard:
    """A switchboard process on loopback ports picked at run time."""

    def __init__(self, flags, env, workdir):
        self.log_path = os.path.join(workdir, "switchboard-%d.log" % time.monotonic_ns())
        # Only what the manifest provides, plus PATH and sanitizer options, so
        # a ${VAR} the manifest forgets cannot be satisfied by this shell.
        full_env = {k: v for k, v in os.environ.items()
                    if k == "PATH" or k.endswith("SAN_OPTIONS")}
        full_env.update(env)
        self.log = open(self.log_path, "w+", encoding="utf-8")
        self.proc = subprocess.Popen(
            [SWITCHBOARD] + flags + ["--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0"],
            stdout=self.log, stderr=subprocess.STDOUT, env=full_env)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            match = re.search(r"switchboard listening on .*\(port (\d+)\).*\(port (\d+)\)",
                              self.output())
            if match:
                self.grpc_port, self.metrics_port = int(match.group(1)), int(match.group(2))
                return
            if self.proc.poll() is not None:
                self.log.close()
                raise AssertionError(f"switchboard {' '.join(flags)} exited with status "
                                     f"{self.proc.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                self.log.close()
                raise AssertionError(f"switchboard did not start in {START_TIMEOUT_S} s:\n"
                                     f"{self.output()}")
            time.sleep(0.05)

    def output(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def stop(self):
        """SIGTERM, then the exit status (0 after a graceful drain)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def check_config_accepted(test, config_text, flags, env, what):
    """Starts switchboard with config_text as --config (the other flags as
    given, listen addresses moved to free loopback ports), then stops it:
    it must start, and drain to exit 0."""
    with tempfile.TemporaryDirectory(prefix="sb-deploy-") as workdir:
        path = os.path.join(workdir, "switchboard.yaml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(config_text)
        args = [a for a in flags if not a.startswith("--config=")] + ["--config=" + path]
        server = Switchboard(args, env, workdir)
        status = server.stop()
        test.assertEqual(status, 0, f"{what}: switchboard did not exit 0 after SIGTERM:\n"
                                    f"{server.output()}")


def check_switchboard_flags(test, args, what):
    flags, positional = parse_flags(args)
    test.assertEqual(positional, [], f"{what}: switchboard takes no positional arguments")
    unknown = sorted(set(flags) - known_flags(SWITCHBOARD))
    test.assertEqual(unknown, [], f"{what}: flags switchboard --helpfull does not list")
    return flags


# ---- the Dockerfile ---------------------------------------------------------

def dockerfile():
    """[(stage, INSTRUCTION, argument text)] with continuation lines joined
    and build ARGs of the FROM lines substituted."""
    text = re.sub(r"\\\n", " ", read("deploy", "docker", "Dockerfile"))
    instructions, stage, args = [], "", {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG":
            name, _, value = rest.partition("=")
            args.setdefault(name.strip(), value.strip().strip('"'))
        if keyword == "FROM":
            rest = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), rest)
            stage = rest.split()[-1] if " AS " in rest.upper() else rest
        instructions.append((stage, keyword, rest.strip()))
    return instructions


def docker_instruction(keyword, stage=None):
    found = [rest for s, k, rest in dockerfile() if k == keyword and (stage is None or s == stage)]
    if not found:
        raise AssertionError(f"Dockerfile: no {keyword}" + (f" in stage {stage}" if stage else ""))
    return found


def docker_entrypoint():
    entrypoint = json.loads(docker_instruction("ENTRYPOINT")[-1])
    assert entrypoint[0] == "switchboard", entrypoint
    return entrypoint


def docker_examples():
    for _, keyword, rest in dockerfile():
        if keyword == "ARG" and rest.startswith("EXAMPLES="):
            return rest.partition("=")[2].strip('"').split()
    raise AssertionError("Dockerfile: no ARG EXAMPLES")


def docker_user():
    user = docker_instruction("USER", "runtime")[-1]
    uid, _, gid = user.partition(":")
    return int(uid), int(gid or uid)


# ---- kustomize --------------------------------------------------------------

def kustomize(directory):
    if shutil.which("kubectl"):
        cmd = ["kubectl", "kustomize", directory]
    elif shutil.which("kustomize"):
        cmd = ["kustomize", "build", directory]
    else:
        raise AssertionError(
            "neither kubectl nor kustomize is on PATH: tests/deploy renders deploy/k8s with "
            "`kubectl kustomize`. Install kubectl (Kubernetes' apt repository, "
            "https://kubernetes.io/docs/tasks/tools/) or a kustomize release binary.")
    out = run(cmd)
    if out.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{out.stderr}")
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def read_env_file(*parts):
    """KEY=value lines, as `kubectl create secret --from-env-file` reads them."""
    result = {}
    for line in read(*parts).splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            result[key.strip()] = value
    return result


# What the downward API gives a pod of the Deployment, for fieldRef.
POD_FIELDS = {"metadata.name": "switchboard-5d8c7b9f4-x2k8p", "metadata.namespace": "switchboard"}


def expand_k8s_env(env_list, secrets, test, what):
    """The container's environment as Kubernetes builds it: literal values
    with $(VAR) expanded from variables defined earlier in the list,
    secretKeyRef values from the Secret (rendered by the overlay, or created
    out of band from its documented example), and fieldRef values of the
    pod (POD_FIELDS)."""
    env = {}
    for entry in env_list:
        name = entry["name"]
        if "value" in entry:
            def expand(match):
                test.assertIn(match.group(1), env,
                              f"{what}: env {name} uses $({match.group(1)}), not defined before "
                              f"it (Kubernetes would leave it unexpanded)")
                return env[match.group(1)]
            env[name] = re.sub(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)", expand, entry["value"])
        elif "fieldRef" in entry["valueFrom"]:
            # The downward API: the pod's own fields.
            path = entry["valueFrom"]["fieldRef"]["fieldPath"]
            test.assertIn(path, POD_FIELDS, f"{what}: env {name}: fieldRef {path} not modelled")
            env[name] = POD_FIELDS[path]
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            test.assertIn(ref["name"], secrets, f"{what}: env {name}: no Secret {ref['name']}")
            secret = secrets[ref["name"]]
            test.assertIn(ref["key"], secret, f"{what}: env {name}: no key {ref['key']} in "
                                              f"Secret {ref['name']}")
            env[name] = secret[ref["key"]]
    return env


class KubernetesTest(unittest.TestCase):
    """deploy/k8s: both overlays render, and what they render runs."""

    def check_overlay(self, overlay):
        what = f"deploy/k8s/overlays/{overlay}"
        docs = kustomize(source("deploy", "k8s", "overlays", overlay))
        by_kind = {}
        for doc in docs:
            by_kind.setdefault(doc["kind"], []).append(doc)
        [deployment] = by_kind["Deployment"]
        [service] = by_kind["Service"]
        pod = deployment["spec"]["template"]
        spec = pod["spec"]
        [container] = [c for c in spec["containers"] if c["name"] == "switchboard"]
        configmaps = {d["metadata"]["name"]: d for d in by_kind.get("ConfigMap", [])}
        secrets = {}
        for secret in by_kind.get("Secret", []):
            data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
            data.update(secret.get("stringData") or {})
            secrets[secret["metadata"]["name"]] = data
        # An overlay that renders no Secret documents the one to create out of
        # band in secrets.env.example; its placeholders stand in for it here.
        example = os.path.join("deploy", "k8s", "overlays", overlay, "secrets.env.example")
        if os.path.exists(source(example)):
            secrets.setdefault("switchboard-secrets", read_env_file(example))

        # Command line: only flags the binary knows.
        self.assertEqual(container.get("command", ["switchboard"]), ["switchboard"],
                         f"{what}: container command")
        flags = check_switchboard_flags(self, container.get("args", []), what)

        # The config file: --config names a file of the mounted ConfigMap.
        self.assertIn("config", flags, f"{what}: no --config")
        mount_dir, _, key = flags["config"].rpartition("/")
        [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == mount_dir]
        [volume] = [v for v in spec["volumes"] if v["name"] == mount["name"]]
        configmap = configmaps[volume["configMap"]["name"]]
        self.assertIn(key, configmap["data"], f"{what}: ConfigMap has no {key}")
        config_text = configmap["data"][key]
        config = yaml.safe_load(config_text)

        # Ports: the named container ports are the ones switchboard listens on,
        # on every interface.
        listen, metrics_listen, drain_ms = effective_server(flags, config)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for name, address in (("grpc", listen), ("metrics", metrics_listen)):
            host, port = port_of(address)
            self.assertEqual(ports.get(name), port, f"{what}: containerPort {name} vs {address}")
            self.assertIn(host, ("0.0.0.0", "[::]"),
                          f"{what}: {name} listens on {address}, unreachable from other pods")

        # Probes: native gRPC health checks on the grpc port.
        for probe in ("readinessProbe", "livenessProbe"):
            self.assertIn("grpc", container.get(probe, {}), f"{what}: {probe} is not a gRPC probe")
            self.assertEqual(container[probe]["grpc"]["port"], ports["grpc"],
                             f"{what}: {probe} does not target the grpc port")

        # Shutdown: the grace period covers preStop, the drain and a margin.
        pre_stop = container.get("lifecycle", {}).get("preStop", {})
        pre_stop_s = 0
        if "sleep" in pre_stop:
            pre_stop_s = int(pre_stop["sleep"]["seconds"])
        elif pre_stop.get("exec", {}).get("command", [""])[0] == "sleep":
            pre_stop_s = int(pre_stop["exec"]["command"][1])
        grace = spec.get("terminationGracePeriodSeconds", 30)
        self.assertGreaterEqual(
            grace, pre_stop_s + drain_ms / 1000 + MIN_SHUTDOWN_MARGIN_S,
            f"{what}: terminationGracePeriodSeconds {grace} leaves under "
            f"{MIN_SHUTDOWN_MARGIN_S} s after preStop ({pre_stop_s} s) and "
            f"server.drain_timeout_ms ({drain_ms})")

        # Hardening, and the image's user.
        security = container["securityContext"]
        self.assertTrue(security.get("runAsNonRoot") or spec["securityContext"].get("runAsNonRoot"))
        self.assertIs(security.get("readOnlyRootFilesystem"), True, what)
        self.assertIs(security.get("allowPrivilegeEscalation"), False, what)
        self.assertEqual(security.get("capabilities", {}).get("drop"), ["ALL"], what)
        uid = security.get("runAsUser", spec["securityContext"].get("runAsUser"))
        self.assertEqual(uid, docker_user()[0], f"{what}: runAsUser vs the Dockerfile's USER")
        self.assertIn("cpu", container["resources"]["limits"])
        self.assertIn("memory", container["resources"]["requests"])

        # Selectors and named ports line up across the resources.
        labels = pod["metadata"]["labels"]

        def selects(selector, what_selects):
            for k, v in selector.items():
                self.assertEqual(labels.get(k), v, f"{what}: {what_selects} selector {k}={v} "
                                                   f"does not match the pod's labels")
        selects(deployment["spec"]["selector"]["matchLabels"], "Deployment")
        selects(service["spec"]["selector"], "Service")
        service_ports = {p["name"]: p for p in service["spec"]["ports"]}
        for name in ("grpc", "metrics"):
            self.assertIn(service_ports[name]["targetPort"], (name, ports[name]), what)
        annotations = pod["metadata"].get("annotations", {})
        self.assertEqual(annotations.get("prometheus.io/scrape"), "true", what)
        self.assertEqual(int(annotations.get("prometheus.io/port")), ports["metrics"], what)
        [monitor] = by_kind["ServiceMonitor"]
        for k, v in monitor["spec"]["selector"]["matchLabels"].items():
            self.assertEqual(service["metadata"]["labels"].get(k), v, f"{what}: ServiceMonitor")
        self.assertEqual([e["port"] for e in monitor["spec"]["endpoints"]], ["metrics"], what)
        [policy] = by_kind["NetworkPolicy"]
        selects(policy["spec"]["podSelector"]["matchLabels"], "NetworkPolicy")
        policy_ports = [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]]
        self.assertEqual(sorted(policy_ports), ["grpc", "metrics"], f"{what}: NetworkPolicy")
        for pdb in by_kind.get("PodDisruptionBudget", []):
            selects(pdb["spec"]["selector"]["matchLabels"], "PodDisruptionBudget")
        for hpa in by_kind.get("HorizontalPodAutoscaler", []):
            self.assertEqual(hpa["spec"]["scaleTargetRef"]["name"], deployment["metadata"]["name"])

        # The ConfigMap's config, with the Deployment's environment, starts.
        env = expand_k8s_env(container.get("env", []), secrets, self, what)
        check_config_accepted(self, config_text, container.get("args", []), env, what)
        return by_kind, env

    def test_dev_overlay(self):
        by_kind, env = self.check_overlay("dev")
        self.assertEqual(env["SWITCHBOARD_BROKER_URL"], "memory://")
        # The memory broker is per process: one replica, nothing scaling it.
        self.assertEqual(by_kind["Deployment"][0]["spec"]["replicas"], 1)
        self.assertNotIn("HorizontalPodAutoscaler", by_kind)

    def test_prod_overlay(self):
        by_kind, env = self.check_overlay("prod")
        self.assertTrue(env["SWITCHBOARD_BROKER_URL"].startswith("redis://"))
        self.assertEqual(by_kind["Deployment"][0]["spec"]["replicas"], 2)
        self.assertIn("HorizontalPodAutoscaler", by_kind)
        self.assertIn("PodDisruptionBudget", by_kind)
        # Secrets are created out of band, never rendered from the repository.
        self.assertNotIn("Secret", by_kind)


# ---- docker-compose ---------------------------------------------------------

def duration_seconds(text):
    units = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)", str(text))
    return sum(float(n) * units[u] for n, u in parts)


class ComposeTest(unittest.TestCase):
    """docker-compose.yml: valid, and its switchboard runs as configured."""

    @classmethod
    def setUpClass(cls):
        if not shutil.which("docker-compose"):
            raise AssertionError("docker-compose is not on PATH: run scripts/setup.sh")
        compose = ["docker-compose", "-f", source("docker-compose.yml")]
        out = run(compose + ["config", "-q"], cwd=SOURCE_DIR)
        if out.returncode != 0:
            raise AssertionError(f"docker-compose config -q failed:\n{out.stderr}")
        out = run(compose + ["config"], cwd=SOURCE_DIR)
        cls.services = yaml.safe_load(out.stdout)["services"]

    def mounts(self, service):
        """{container path: host path} of the service's bind mounts."""
        result = {}
        for volume in self.services[service].get("volumes", []):
            if isinstance(volume, dict):
                result[volume["target"]] = volume.get("source", "")
            else:
                host, container = volume.split(":")[:2]
                result[container] = host
        return result

    def switchboard_flags(self):
        service = self.services["switchboard"]
        entrypoint = service.get("entrypoint") or docker_entrypoint()
        args = list(entrypoint[1:]) + list(service.get("command") or [])
        return args, check_switchboard_flags(self, args, "docker-compose switchboard")

    def test_switchboard_service(self):
        args, flags = self.switchboard_flags()
        self.assertTrue(flags.get("broker", "").startswith("redis://redis:"))
        mounts = self.mounts("switchboard")
        self.assertIn(flags["config"], mounts, "--config is not a mounted file")
        config_source = mounts[flags["config"]]
        self.assertEqual(os.path.realpath(config_source),
                         os.path.realpath(source("deploy", "compose", "switchboard.yaml")))
        with open(config_source, encoding="utf-8") as f:
            config_text = f.read()
        listen, metrics_listen, drain_ms = effective_server(flags, yaml.safe_load(config_text))
        published = set()
        for port in self.services["switchboard"].get("ports", []):
            # `docker-compose config` writes "127.0.0.1:7070:7070/tcp" (v1) or
            # {target: 7070, ...} (v2): the container port is the last one.
            published.add(int(port["target"]) if isinstance(port, dict)
                          else int(str(port).split("/")[0].split(":")[-1]))
        for address in (listen, metrics_listen):
            host, port = port_of(address)
            self.assertEqual(host, "0.0.0.0", f"{address}: unreachable from other containers")
            self.assertIn(port, published, f"{address}: port not published")
        grace = duration_seconds(self.services["switchboard"].get("stop_grace_period", "10s"))
        self.assertGreaterEqual(grace, drain_ms / 1000 + MIN_SHUTDOWN_MARGIN_S,
                                "stop_grace_period vs server.drain_timeout_ms")
        env = self.services["switchboard"].get("environment") or {}
        check_config_accepted(self, config_text, args, env, "docker-compose switchboard")

    def test_redis_is_persistent(self):
        command = " ".join(self.services["redis"]["command"])
        self.assertIn("--appendonly yes", command)

    def test_prometheus_scrapes_switchboard(self):
        _, flags = self.switchboard_flags()
        _, port = port_of(flags["metrics_listen"])
        path = self.mounts("prometheus")["/etc/prometheus/prometheus.yml"]
        with open(path, encoding="utf-8") as f:
            config = yaml.safe_load(f)
        targets = [t for job in config["scrape_configs"] for sc in job["static_configs"]
                   for t in sc["targets"]]
        self.assertIn(f"switchboard:{port}", targets)

    def test_grafana_is_provisioned(self):
        mounts = self.mounts("grafana")
        provisioning = mounts["/etc/grafana/provisioning"]
        with open(os.path.join(provisioning, "datasources", "prometheus.yaml"),
                  encoding="utf-8") as f:
            [datasource] = yaml.safe_load(f)["datasources"]
        self.assertEqual(datasource["url"], "http://prometheus:9090")
        self.assertIn("prometheus", self.services)
        with open(os.path.join(provisioning, "dashboards", "switchboard.yaml"),
                  encoding="utf-8") as f:
            [provider] = yaml.safe_load(f)["providers"]
        dashboard = os.path.join(provider["options"]["path"], "switchboard.json")
        self.assertEqual(os.path.realpath(mounts.get(dashboard, "")),
                         os.path.realpath(source("deploy", "grafana", "switchboard.json")))

    def test_provider_nginx(self):
        conf = source("deploy", "compose", "provider-nginx.conf")
        text = read("deploy", "compose", "provider-nginx.conf")
        self.assertRegex(text, r"limit_req zone=\w+")
        with open(source("deploy", "compose", "switchboard.yaml"), encoding="utf-8") as f:
            upstreams = yaml.safe_load(f)["upstreams"]
        public_port = re.search(r"listen (\d+);", text).group(1)
        self.assertIn(f"http://provider:{public_port}", upstreams[0]["urls"])
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.path.exists(nginx):
            raise AssertionError("nginx is not installed: run scripts/setup.sh")
        with tempfile.TemporaryDirectory(prefix="sb-deploy-nginx-") as prefix:
            # conf.d files are included inside http {}, as in the nginx image.
            with open(os.path.join(prefix, "nginx.conf"), "w", encoding="utf-8") as f:
                f.write(f"pid {prefix}/nginx.pid;\nerror_log stderr;\nevents {{}}\nhttp {{\n"
                        f"  access_log off;\n  client_body_temp_path {prefix};\n"
                        f"  proxy_temp_path {prefix};\n  fastcgi_temp_path {prefix};\n"
                        f"  uwsgi_temp_path {prefix};\n  scgi_temp_path {prefix};\n"
                        f"  include {conf};\n}}\n")
            out = run([nginx, "-t", "-p", prefix, "-c", os.path.join(prefix, "nginx.conf"),
                       "-e", "stderr"])
            self.assertEqual(out.returncode, 0, f"nginx -t:\n{out.stderr}")

    def test_rabbitmq_profile(self):
        """The optional RabbitMQ profile: its switchboard's configuration is
        accepted, names the rabbitmq service as its broker and declares the
        groups of the jobs scene; its workers talk to it."""
        for name in ("rabbitmq", "switchboard-rabbitmq", "worker-jobs-api-rabbitmq",
                     "worker-job-runner-rabbitmq"):
            self.assertEqual(self.services[name].get("profiles"), ["rabbitmq"], name)
        service = self.services["switchboard-rabbitmq"]
        entrypoint = service.get("entrypoint") or docker_entrypoint()
        args = list(entrypoint[1:]) + list(service.get("command") or [])
        flags = check_switchboard_flags(self, args, "docker-compose switchboard-rabbitmq")
        config_source = self.mounts("switchboard-rabbitmq")[flags["config"]]
        with open(config_source, encoding="utf-8") as f:
            config_text = f.read()
        config = yaml.safe_load(config_text)
        self.assertTrue(config["broker"]["url"].startswith("amqp://switchboard:${RABBITMQ_PASSWORD}@rabbitmq:5672"))
        groups = {topic["name"]: topic.get("groups") for topic in config["topics"]}
        self.assertEqual(groups, {"jobs": ["runners"], "results": ["api"]})
        env = service.get("environment") or {}
        check_config_accepted(self, config_text, args, env, "docker-compose switchboard-rabbitmq")
        # Leases are Switchboard's: RabbitMQ must not time the consumer out
        # under a worker that holds one (24 h here, 30 min by default).
        erl_args = self.services["rabbitmq"]["environment"]["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"]
        self.assertRegex(erl_args, r"-rabbit consumer_timeout (\d+)")
        timeout_ms = int(re.search(r"consumer_timeout (\d+)", erl_args).group(1))
        self.assertGreaterEqual(timeout_ms, 3600 * 1000)
        for worker in ("worker-jobs-api-rabbitmq", "worker-job-runner-rabbitmq"):
            self.assertEqual(self.services[worker]["command"], ["--server=switchboard-rabbitmq:7070"])

    def test_workers_run_image_binaries(self):
        workers = [name for name in self.services if name.startswith("worker-")]
        self.assertTrue(workers, "no worker-* services")
        examples = docker_examples()
        for name in workers:
            entrypoint = self.services[name]["entrypoint"][0]
            self.assertIn(entrypoint, examples,
                          f"{name}: {entrypoint} is not built into the image (ARG EXAMPLES)")


# ---- the Dockerfile ---------------------------------------------------------

class DockerfileTest(unittest.TestCase):
    """deploy/docker/Dockerfile (which cannot be built here: no container
    engine) and the runtime package list its slim stage installs."""

    def test_entrypoint_ports_and_healthcheck(self):
        entrypoint = docker_entrypoint()
        flags = check_switchboard_flags(self, entrypoint[1:], "Dockerfile ENTRYPOINT")
        listen, metrics_listen, _ = effective_server(flags, None)
        exposed = {int(p.split("/")[0]) for e in docker_instruction("EXPOSE") for p in e.split()}
        self.assertEqual(exposed, {port_of(listen)[1], port_of(metrics_listen)[1]})
        healthcheck = docker_instruction("HEALTHCHECK")[-1]
        command = json.loads(healthcheck[healthcheck.index("CMD") + 3:].strip())
        self.assertEqual(command[0], "sbctl")
        sbctl_flags, positional = parse_flags(command[1:])
        self.assertEqual(positional, ["health"])
        self.assertEqual(sorted(set(sbctl_flags) - known_flags(SBCTL)), [],
                         "HEALTHCHECK: flags sbctl --helpfull does not list")
        self.assertEqual(port_of(sbctl_flags["server"])[1], port_of(listen)[1])

    def test_stages_use_setup_script(self):
        froms = docker_instruction("FROM")
        self.assertEqual(froms, ["debian:bookworm AS build", "debian:bookworm-slim AS runtime"])
        build_runs = " ".join(docker_instruction("RUN", "build"))
        self.assertRegex(build_runs, r"bash scripts/setup\.sh &&")
        self.assertRegex(build_runs, r"ninja -C build switchboard sbctl \$\{EXAMPLES\}")
        runtime_runs = " ".join(docker_instruction("RUN", "runtime"))
        self.assertIn("setup.sh --runtime", runtime_runs)
        self.assertGreater(docker_user()[0], 0, "the runtime stage must not run as root")

    def test_readme_shows_the_real_build_steps(self):
        # The README quotes the Dockerfile's setup.sh lines: they must stay true.
        dockerfile_text = read("deploy", "docker", "Dockerfile")
        blocks = re.findall(r"```dockerfile\n(.*?)```", read("README.md"), re.S)
        self.assertTrue(blocks, "README.md quotes no Dockerfile lines")
        for block in blocks:
            self.assertIn(block, dockerfile_text, "README.md quotes lines the Dockerfile lacks")
        self.assertTrue(any("scripts/setup.sh" in b for b in blocks))

    def test_runtime_packages_cover_the_binaries(self):
        listed = set(re.sub(r"#.*", "", read("scripts", "runtime-packages.txt")).split())
        libraries = {}  # soname -> path, of the libraries the binaries link directly
        for binary in (SWITCHBOARD, SBCTL):
            needed = set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]",
                                    run(["readelf", "-d", binary]).stdout))
            if any(re.match(r"lib(a|l|t|ub)san", soname) for soname in needed):
                # The image ships a Release build; CI's ASan build links a
                # different set (libevent-2.1 directly, for one).
                self.skipTest(f"{binary} is a sanitizer build")
            for line in run(["ldd", binary]).stdout.splitlines():
                match = re.match(r"\s*(\S+) => (/\S+)", line)
                if match and match.group(1) in needed:
                    libraries[match.group(1)] = match.group(2)
        self.assertIn("libgrpc++.so.1.51", libraries)  # The parse works.
        owners = self.owners(libraries.values())
        installed = self.dependency_closure(listed)
        missing = {soname: owners.get(path, "no package owns " + path)
                   for soname, path in libraries.items() if owners.get(path) not in installed}
        self.assertEqual(missing, {}, "libraries that scripts/runtime-packages.txt installs "
                                      "neither directly nor as a dependency")

    @staticmethod
    def dependency_closure(packages):
        """packages and everything they depend on, by the dpkg database (every
        alternative of an `a | b` dependency counts)."""
        depends = {}
        out = run(["dpkg-query", "-W", "-f=${Package}\t${Pre-Depends}, ${Depends}\n"])
        for line in out.stdout.splitlines():
            package, _, deps = line.partition("\t")
            depends[package] = [re.sub(r"[:(].*", "", alt).strip()
                                for dep in deps.split(",") for alt in dep.split("|")]
        closure, todo = set(), list(packages)
        while todo:
            package = todo.pop()
            if package and package not in closure:
                closure.add(package)
                todo.extend(depends.get(package, []))
        return closure

    @staticmethod
    def owners(paths):
        """{path: Debian package}, in one dpkg -S call (each call reads the
        whole database). Debian 12 is /usr-merged, but dpkg knows each file by
        the path its package ships, so both spellings are asked."""
        spellings = {}
        for path in paths:
            for candidate in (path, path[4:] if path.startswith("/usr/") else "/usr" + path):
                spellings[candidate] = path
        result = {}
        for line in run(["dpkg", "-S"] + sorted(spellings)).stdout.splitlines():
            package, _, file = line.partition(": ")
            if file in spellings:
                result[spellings[file]] = package.split(":")[0]
        return result


# ---- the Grafana dashboard --------------------------------------------------

def registered_families():
    """{name: type} of every metric family the server registers: the metrics
    library's own, and those of each component's adapter beside it."""
    families = {}
    for root, _, files in os.walk(source("server")):
        for name in files:
            if not name.endswith(".cc"):
                continue
            with open(os.path.join(root, name), encoding="utf-8") as f:
                text = f.read()
            for kind, family in re.findall(
                    r"\bAdd(Counter|Gauge|Histogram)\(\s*\*[\w.()]+,\s*\"(switchboard_\w+)\"",
                    text):
                families[family] = kind.lower()
            for kind, family in re.findall(
                    r"Build(Counter|Gauge|Histogram)\(\)\s*\.Name\(\"(switchboard_\w+)\"\)", text):
                families[family] = kind.lower()
    return families


class DashboardTest(unittest.TestCase):
    """deploy/grafana/switchboard.json queries only metrics switchboard
    exports (its own and the standard process_* ones), each the way its type
    wants."""

    # What an operator must see; a panel going missing fails here.
    REQUIRED = [
        "switchboard_messages_published_total", "switchboard_messages_delivered_total",
        "switchboard_upstream_requests_total", "switchboard_requests_rejected_total",
        "switchboard_upstream_request_duration_seconds", "switchboard_upstream_queue_wait_seconds",
        "switchboard_upstream_queue_depth", "switchboard_upstream_rejections_total",
        "switchboard_upstream_throttled_total", "switchboard_redis_connections",
        "switchboard_upstream_connections", "switchboard_consumer_lag",
        "switchboard_dead_letters_total", "switchboard_subscriber_dropped_total",
        "switchboard_leases_in_flight", "switchboard_subscriber_buffer_fill",
        "switchboard_fleet_live_replicas", "switchboard_global_limit_fallback",
        "switchboard_global_limit_tokens_leased_total",
        "switchboard_global_limit_tokens_returned_total",
        "switchboard_global_limit_lease_round_trips_total",
        "switchboard_ws_connections", "switchboard_ws_upstream_subscriptions",
        "switchboard_ws_subscribers", "switchboard_ws_notifications_received_total",
        "switchboard_ws_notifications_delivered_total",
        "switchboard_ws_notifications_dropped_total", "switchboard_ws_resubscribes_total",
        "switchboard_grpc_requests_total", "switchboard_grpc_request_duration_seconds",
        "switchboard_build_info", "process_cpu_seconds_total", "process_resident_memory_bytes",
        "process_open_fds", "process_max_fds",
    ]

    @classmethod
    def setUpClass(cls):
        with open(source("deploy", "grafana", "switchboard.json"), encoding="utf-8") as f:
            cls.dashboard = json.load(f)
        # A running switchboard exports a family once it has a series, so
        # give it some traffic first; families with no series yet are
        # checked against the ones server/metrics registers.
        with tempfile.TemporaryDirectory(prefix="sb-deploy-") as workdir:
            server = Switchboard([], {}, workdir)
            try:
                target = f"--server=127.0.0.1:{server.grpc_port}"
                for cmd in ([SBCTL, target, "publish", "deploy-test", "a", "b", "c"],
                            [SBCTL, target, "consume", "deploy-test", "--group=g", "--count=3"]):
                    out = run(cmd)
                    if out.returncode != 0:
                        raise AssertionError(f"{' '.join(cmd)}: {out.stderr}")
                with urllib.request.urlopen(
                        f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10) as r:
                    text = r.read().decode()
            finally:
                server.stop()
        cls.exported = dict(re.findall(r"^# TYPE (switchboard_\w+) (\w+)$", text, re.M))
        # The process families are collected at scrape time
        # (server/metrics/process_metrics.cc), so only the page shows them.
        cls.process = dict(re.findall(r"^# TYPE (process_\w+) (\w+)$", text, re.M))
        cls.families = dict(registered_families(), **cls.exported, **cls.process)

    def expressions(self):
        exprs = []

        def walk(panels):
            for panel in panels:
                for target in panel.get("targets", []):
                    exprs.append((panel["title"], target["expr"]))
                walk(panel.get("panels", []))
        walk(self.dashboard["panels"])
        for variable in self.dashboard.get("templating", {}).get("list", []):
            query = variable.get("query")
            if variable.get("type") == "query":
                exprs.append((variable["name"], query["query"] if isinstance(query, dict)
                              else query))
        return exprs

    def test_exported_families_are_registered(self):
        # The fallback below is only as good as the source parse: every
        # family the running server exported must have been found there too.
        registered = registered_families()
        self.assertTrue(self.exported)
        for name, kind in self.exported.items():
            self.assertEqual(registered.get(name), kind, name)

    def test_metric_names_and_functions(self):
        used = set()
        for title, expr in self.expressions():
            for match in re.finditer(r"\b(?:switchboard|process)_\w+", expr):
                name = match.group(0)
                before = expr[:match.start()].rstrip()
                family = name
                if name not in self.families:
                    base, _, suffix = name.rpartition("_")
                    family = base
                    self.assertEqual(self.families.get(base), "histogram",
                                     f"{title}: {name} is not a metric switchboard exports")
                    self.assertIn(suffix, ("bucket", "sum", "count"), f"{title}: {name}")
                kind = self.families[family]
                used.add(family)
                if kind == "counter" or family != name:
                    self.assertRegex(before, r"\b(rate|irate|increase)\($",
                                     f"{title}: {name} outside rate(): {expr}")
                if kind == "histogram":
                    self.assertNotEqual(family, name, f"{title}: {name} has no series of its own")
                    if name.endswith("_bucket"):
                        self.assertIn("histogram_quantile(", expr, f"{title}: {expr}")
        missing = sorted(set(self.REQUIRED) - used)
        self.assertEqual(missing, [], "families the dashboard must chart")

    def test_panels_use_the_datasource_variable(self):
        self.assertEqual(self.dashboard["uid"], "switchboard")
        variables = {v["name"]: v for v in self.dashboard["templating"]["list"]}
        self.assertEqual(variables["datasource"]["query"], "prometheus")
        for title, expr in self.expressions():
            self.assertTrue(expr.strip(), f"{title}: empty expression")

        def walk(panels):
            for panel in panels:
                if panel.get("type") != "row":
                    self.assertEqual(panel["datasource"]["uid"], "${datasource}", panel["title"])
                walk(panel.get("panels", []))
        walk(self.dashboard["panels"])


def main():
    global SOURCE_DIR, SWITCHBOARD, SBCTL
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source_dir", required=True)
    parser.add_argument("--switchboard", required=True)
    parser.add_argument("--sbctl", required=True)
    args, rest = parser.parse_known_args()
    SOURCE_DIR = os.path.abspath(args.source_dir)
    SWITCHBOARD, SBCTL = os.path.abspath(args.switchboard), os.path.abspath(args.sbctl)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
