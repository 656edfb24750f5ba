"""Provisioning (deploy/ansible): lint, then the playbook applied for real to a Debian bookworm root file system.

The root is made with debootstrap (a tarball of it is cached in ~/.cache/sitewarden/debootstrap between runs)
and provisioned over Ansible's chroot connection, as an image build would be. systemd does not run inside a
chroot, so the playbook enables the services without starting them; the broker and two services are then
started by these tests from what the playbook installed (the units' own users, environment and command).
What systemd itself would add at run time (the sandboxing options) is checked by `systemd-analyze verify`
only, not exercised. Needs root (debootstrap, chroot, mount) and Debian's package mirror.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from conftest import wait_until
from paho.mqtt.enums import CallbackAPIVersion

from edge import topics
from edge.brokers import free_port
from edge.events import DoorOpened, dump_event

REPO = Path(__file__).resolve().parents[1]
ANSIBLE_DIR = REPO / "deploy" / "ansible"
EXAMPLE = ANSIBLE_DIR / "inventory" / "example"
BOX = "ams-office-box1"  # the example inventory's box, provisioned here into a chroot
SITE = "ams-office"
VENV_BIN = Path(sys.executable).parent
MIRROR = "http://deb.debian.org/debian"
# What a flashed Raspberry Pi OS Lite already has that a minimal debootstrap lacks.
ROOT_PACKAGES = ("python3", "python3-apt", "systemd", "systemd-sysv", "udev", "ca-certificates", "apt-utils")
ROOT_CACHE = Path.home() / ".cache" / "sitewarden" / "debootstrap"
PLAYBOOK_TIMEOUT_S = 1800
# The first test that needs the root builds it (debootstrap, once per machine) and runs the playbook twice.
pytestmark = pytest.mark.timeout(3600)


def _vault_passwords() -> dict[str, str]:
    """The example vault's throwaway passwords, read the way the playbook reads them."""
    done = subprocess.run([str(VENV_BIN / "ansible-vault"), "view", "--vault-password-file",
                           str(EXAMPLE / "vault-password.example.txt"), str(EXAMPLE / "group_vars/all/vault.yml")],
                          capture_output=True, text=True, check=True)
    return yaml.safe_load(done.stdout)["vault_mqtt_passwords"]


def _ansible_env(tmp: Path) -> dict[str, str]:
    return os.environ | {
        "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-local"),
        "ANSIBLE_VAULT_PASSWORD_FILE": str(EXAMPLE / "vault-password.example.txt"),
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
    }


def test_playbook_and_inventory_pass_ansible_lint_and_yamllint(tmp_path: Path) -> None:
    yamllint = subprocess.run([str(VENV_BIN / "yamllint"), "--strict", "."], cwd=ANSIBLE_DIR, capture_output=True,
                              text=True, timeout=300)
    assert yamllint.returncode == 0, yamllint.stdout + yamllint.stderr
    lint = subprocess.run([str(VENV_BIN / "ansible-lint"), "--nocolor", "--profile", "production"], cwd=ANSIBLE_DIR,
                          capture_output=True, text=True, timeout=900, env=_ansible_env(tmp_path))
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "Profile 'production' was required, and it passed" in lint.stdout + lint.stderr


# --- the root file system -------------------------------------------------------------------------------------


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("the provisioning tests build a Debian root with debootstrap and chroot into it: run them as "
                    "root (make test does, in CI)")
    if shutil.which("debootstrap") is None:
        pytest.fail("debootstrap is not installed: `make test` installs it when run as root")


def _mounted_below(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    with open("/proc/mounts", encoding="utf-8") as mounts:
        return [line.split()[1] for line in mounts if (line.split()[1] + "/").startswith(prefix)]


def _bookworm_tarball() -> Path:
    """A debootstrapped bookworm with ROOT_PACKAGES, made once per machine and kept as a tarball."""
    key = hashlib.sha256(" ".join(ROOT_PACKAGES).encode()).hexdigest()[:10]
    tarball = ROOT_CACHE / f"bookworm-{os.uname().machine}-{key}.tar.gz"
    if tarball.is_file():
        return tarball
    ROOT_CACHE.mkdir(parents=True, exist_ok=True)
    work = ROOT_CACHE / f".build-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    try:
        done = subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(ROOT_PACKAGES)}",
                               "bookworm", str(work), MIRROR], capture_output=True, text=True, timeout=1800)
        assert done.returncode == 0, f"debootstrap failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        part = tarball.with_suffix(".part")
        subprocess.run(["tar", "--numeric-owner", "-czf", str(part), "-C", str(work), "."], check=True)
        part.rename(tarball)
    finally:
        assert not _mounted_below(work)
        shutil.rmtree(work, ignore_errors=True)
    return tarball


@pytest.fixture(scope="module")
def bookworm_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh Debian bookworm root, /proc mounted, services kept from starting (policy-rc.d), as image builders do."""
    _need_root()
    started = time.monotonic()
    tarball = _bookworm_tarball()
    root = tmp_path_factory.mktemp("bookworm") / "root"
    root.mkdir()
    subprocess.run(["tar", "--numeric-owner", "-xzf", str(tarball), "-C", str(root)], check=True)
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\n# Image build: packages must not start daemons in the chroot.\nexit 101\n")
    policy.chmod(0o755)
    shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")
    subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
    print(f"bookworm root ready in {time.monotonic() - started:.1f} s from {tarball.name}")
    try:
        yield root
    finally:
        for mount in sorted(_mounted_below(root), reverse=True):
            subprocess.run(["umount", "-l", mount], check=False)
        if not _mounted_below(root):
            subprocess.run(["rm", "-rf", "--one-file-system", str(root)], check=False)


# --- applying the playbook --------------------------------------------------------------------------------------


@dataclass
class Run:
    """One ansible-playbook run: its exit code, output, time and recap counts."""

    rc: int
    output: str
    seconds: float
    recap: dict[str, int] = field(default_factory=dict)


@dataclass
class Provisioned:
    """The provisioned root and what the tests need to reach into it."""

    root: Path
    inventory: Path
    ports: dict[str, int]
    runs: list[Run]
    tmp: Path

    def chroot(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["chroot", str(self.root), *argv], capture_output=True, text=True, timeout=timeout)

    def playbook(self, *extra: str) -> Run:
        return run_playbook(self.inventory, self.tmp, *extra)

    def uid(self, user: str) -> int:
        """A user's id inside the root."""
        return self._id("etc/passwd", user)

    def gid(self, group: str) -> int:
        """A group's id inside the root."""
        return self._id("etc/group", group)

    def _id(self, table: str, name: str) -> int:
        for line in (self.root / table).read_text().splitlines():
            fields = line.split(":")
            if fields[0] == name:
                return int(fields[2])
        raise KeyError(f"{name} is not in the root's /{table}")


def run_playbook(inventory: Path, tmp: Path, *extra: str) -> Run:
    started = time.monotonic()
    done = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), "site.yml", *extra],
                          cwd=ANSIBLE_DIR, capture_output=True, text=True, timeout=PLAYBOOK_TIMEOUT_S,
                          env=_ansible_env(tmp))
    output = done.stdout + done.stderr
    recap = re.search(rf"^{re.escape(BOX)}\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)",
                      output, re.M)
    counts = dict(zip(("ok", "changed", "unreachable", "failed"), map(int, recap.groups()), strict=True)) \
        if recap else {}
    return Run(done.returncode, output, time.monotonic() - started, counts)


def changed_tasks(output: str) -> list[str]:
    """The names of the tasks that reported a change, from ansible-playbook's output."""
    task, found = "", []
    for line in output.splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            task = line.split("[", 1)[1].rsplit("]", 1)[0]
        elif line.startswith("changed:") and task not in found:
            found.append(task)
    return found


@pytest.fixture(scope="module")
def provisioned(bookworm_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Provisioned:
    """The example inventory applied twice to the root, over the chroot connection, on free loopback ports."""
    tmp = tmp_path_factory.mktemp("provisioning")
    inventory = tmp / "inventory"
    shutil.copytree(EXAMPLE, inventory)
    (inventory / "hosts.yml").write_text(yaml.safe_dump({"sitewarden": {"hosts": {BOX: {
        "ansible_connection": "community.general.chroot",
        "ansible_host": str(bookworm_root),
        # The chroot connection is root already; a minimal root has no sudo until the base role installs it.
        "ansible_become": False,
    }}}}))
    ports = {name: free_port() for name in ("mqtt", "mqtt_tls", "kiosk", "console")}
    (inventory / "host_vars" / BOX / "test.yml").write_text(yaml.safe_dump({
        "mosquitto_local_port": ports["mqtt"],
        "mosquitto_tls_port": ports["mqtt_tls"],
        "sitewarden_kiosk_port": ports["kiosk"],
        # Loopback only: nothing listens there, so the edge's forwarder only ever tries to connect.
        "sitewarden_console_host": "127.0.0.1",
        "sitewarden_console_port": ports["console"],
        "sitewarden_console_ca_src": str(inventory / "pki" / "ca.crt"),
        # This is the example inventory, whose throwaway secrets a real run refuses.
        "sitewarden_allow_example_secrets": True,
    }))
    runs = [run_playbook(inventory, tmp) for _ in range(2)]
    first = runs[0]
    assert first.rc == 0, first.output[-15000:]
    return Provisioned(bookworm_root, inventory, ports, runs, tmp)


def test_playbook_applies_to_a_bookworm_root_and_changes_nothing_the_second_time(provisioned: Provisioned) -> None:
    first, second = provisioned.runs
    print(f"first run: {first.seconds:.1f} s, {first.recap}; second run: {second.seconds:.1f} s, {second.recap}")
    assert first.recap["failed"] == 0 and first.recap["changed"] > 0, first.output[-5000:]
    assert second.rc == 0, second.output[-15000:]
    assert second.recap["changed"] == 0, f"changed on the second run: {changed_tasks(second.output)}"


def test_installed_sitewarden_accepts_the_rendered_config(provisioned: Provisioned) -> None:
    config = yaml.safe_load((provisioned.root / "etc/sitewarden/config.yaml").read_text())
    assert config["site"]["id"] == SITE
    assert config["mqtt"] == {"host": "127.0.0.1", "port": provisioned.ports["mqtt"]}
    assert config["badge"]["controllers"]["main"]["port"] == "/dev/sitewarden/controller-main"
    assert config["edge"]["forwarder"]["broker"]["tls"] == {"ca_file": "/etc/sitewarden/tls/console-ca.crt"}
    done = provisioned.chroot("/opt/sitewarden/current/bin/sitewarden", "config", "check",
                              "/etc/sitewarden/config.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    wrapper = provisioned.chroot("/usr/local/bin/sitewarden", "config", "check")
    assert wrapper.returncode == 0, wrapper.stdout + wrapper.stderr
    # The model was built on the controller and copied; the box holds the file the release pins.
    listed = provisioned.chroot("/usr/local/bin/sitewarden", "models", "list", "--json")
    models = {m["name"]: m for m in map(json.loads, listed.stdout.splitlines())}
    assert models["pedestrian-ssdlite"]["state"] == "ready", listed.stdout
    assert models["pedestrian-ssdlite"]["path"] == "/opt/sitewarden/models/pedestrian-ssdlite.tflite"


def test_secrets_and_data_folder_belong_to_the_right_users(provisioned: Provisioned) -> None:
    root = provisioned.root
    for service in ("edge", "badge", "kiosk", "vision", "netmon"):
        secret = (root / f"etc/sitewarden/secrets/mqtt-{service}.password").stat()
        assert (secret.st_uid, secret.st_mode & 0o777) == (provisioned.uid(f"sw-{service}"), 0o400), service
    console = (root / "etc/sitewarden/secrets/console.password").stat()
    assert (console.st_uid, console.st_mode & 0o777) == (provisioned.uid("sw-edge"), 0o400)
    assert (root / "var/lib/sitewarden").stat().st_mode & 0o7777 == 0o1770
    for listener in ("local", "remote"):
        hashes = root / f"etc/mosquitto/sitewarden-{listener}.passwd"
        assert hashes.stat().st_mode & 0o777 == 0o640 and "example-" not in hashes.read_text()
    groups = subprocess.run(["chroot", str(root), "id", "-nG", "sw-badge"], capture_output=True, text=True).stdout
    assert set(groups.split()) == {"sitewarden", "dialout"}


def test_firewall_opens_ssh_to_admins_and_only_the_kiosk_and_mqtt_tls_to_all(provisioned: Provisioned) -> None:
    ruleset = (provisioned.root / "etc/nftables.conf").read_text()
    opened = re.findall(r"^\s*(.*dport.*)$", ruleset, re.M)
    ports = provisioned.ports
    assert opened == ["udp sport 67 udp dport 68 accept",
                      "ip6 saddr fe80::/10 udp sport 547 udp dport 546 accept",
                      "ip saddr { 10.0.0.0/8, 192.168.0.0/16 } tcp dport 22 accept",
                      f"tcp dport {{ {ports['kiosk']}, {ports['mqtt_tls']} }} accept"], opened
    assert "policy drop;" in ruleset.split("chain input", 1)[1].split("}", 1)[0]
    checked = provisioned.chroot("nft", "--check", "--file", "/etc/nftables.conf")
    assert checked.returncode == 0, checked.stderr
    # sshd's effective settings, with Debian's own config and the role's drop-in read together.
    (provisioned.root / "run/sshd").mkdir(exist_ok=True)
    sshd = provisioned.chroot("/usr/sbin/sshd", "-T")
    assert sshd.returncode == 0, sshd.stderr
    effective = dict(line.split(" ", 1) for line in sshd.stdout.splitlines() if " " in line)
    assert effective["passwordauthentication"] == "no" and effective["kbdinteractiveauthentication"] == "no"
    assert effective["permitrootlogin"] == "without-password"
    keys = (provisioned.root / "home/it-admin/.ssh/authorized_keys").read_text()
    assert keys.startswith("ssh-ed25519 ") and keys.count("\n") == 1


def test_systemd_accepts_every_unit(provisioned: Provisioned) -> None:
    units = sorted(p.name for p in (provisioned.root / "etc/systemd/system").glob("*.service")
                   if p.name.startswith(("sitewarden-", "kiosk-display")))
    assert units == ["kiosk-display.service", *(f"sitewarden-{s}.service" for s in
                                                ("badge", "edge", "kiosk", "netmon", "vision"))]
    done = provisioned.chroot("systemd-analyze", "verify", *(f"/etc/systemd/system/{u}" for u in units))
    assert done.returncode == 0, done.stdout + done.stderr
    for unit in units:
        enabled = provisioned.chroot("systemctl", "is-enabled", unit)
        assert enabled.stdout.strip() == "enabled", f"{unit}: {enabled.stdout}{enabled.stderr}"
    netmon = (provisioned.root / "etc/systemd/system/sitewarden-netmon.service").read_text()
    assert "CapabilityBoundingSet=CAP_NET_RAW CAP_NET_ADMIN\n" in netmon
    assert "AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN\n" in netmon
    edge = (provisioned.root / "etc/systemd/system/sitewarden-edge.service").read_text()
    for line in ("User=sw-edge", "NoNewPrivileges=yes", "ProtectSystem=strict", "ReadWritePaths=/var/lib/sitewarden",
                 "CapabilityBoundingSet=\n", "PrivateDevices=yes"):
        assert line in edge, line
    rules = (provisioned.root / "etc/udev/rules.d/70-sitewarden-serial.rules").read_text()
    assert 'SYMLINK+="sitewarden/controller-main"' in rules


# --- the broker and the services, started from what the playbook installed --------------------------------------


@dataclass
class Broker:
    """The provisioned mosquitto, running in the chroot."""

    ca: Path
    local_port: int
    tls_port: int
    passwords: dict[str, str]


@pytest.fixture(scope="module")
def box_broker(provisioned: Provisioned) -> Iterator[Broker]:
    """The rendered mosquitto config started in the root, as its systemd unit would (it makes /run/mosquitto)."""
    root = provisioned.root
    run_dir = root / "run/mosquitto"
    run_dir.mkdir(parents=True, exist_ok=True)
    os.chown(run_dir, provisioned.uid("mosquitto"), -1)
    broker = subprocess.Popen(["chroot", str(root), "/usr/sbin/mosquitto", "-c", "/etc/mosquitto/mosquitto.conf"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ports = provisioned.ports

    def listening() -> bool:
        if broker.poll() is not None:
            log = root / "var/log/mosquitto/mosquitto.log"
            pytest.fail(f"mosquitto exited: {broker.stdout.read() if broker.stdout else ''}"
                        f"{log.read_text() if log.exists() else ''}")
        try:
            socket.create_connection(("127.0.0.1", ports["mqtt_tls"]), timeout=0.5).close()
            return True
        except OSError:
            return False

    wait_until(listening, 20, "the provisioned mosquitto to listen")
    try:
        yield Broker(provisioned.inventory / "pki" / "ca.crt", ports["mqtt"], ports["mqtt_tls"], _vault_passwords())
    finally:
        broker.terminate()
        broker.wait(10)


class Client:
    """A paho MQTT v5 client that records its connect result, PUBACK reason codes and messages."""

    def __init__(self, user: str | None, password: str | None, port: int, ca: Path | None = None) -> None:
        self.connack: Any = None
        self.subacks: set[int] = set()
        self.pubacks: dict[int, Any] = {}
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        if user is not None:
            self.client.username_pw_set(user, password)
        if ca is not None:
            self.client.tls_set(ca_certs=str(ca))
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.connect_async("localhost", port)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        self.connack = reason_code

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        with self.lock:
            self.pubacks[mid] = reason_code

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any, properties: Any) -> None:
        with self.lock:
            self.subacks.add(mid)

    def subscribe(self, topic_filter: str) -> None:
        mid = self.client.subscribe(topic_filter, qos=1)[1]
        wait_until(lambda: mid in self.subacks, 10, f"the SUBACK for {topic_filter}")

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((message.topic, message.payload, message.retain))

    def connected(self) -> Any:
        return wait_until(lambda: self.connack, 10, "a CONNACK")

    def publish(self, topic: str, payload: bytes) -> Any:
        mid = self.client.publish(topic, payload, qos=1).mid
        return wait_until(lambda: self.pubacks.get(mid), 10, f"the PUBACK for {topic}")

    def seen(self, topic: str) -> list[bytes]:
        with self.lock:
            return [payload for t, payload, _ in self.messages if t == topic]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_broker_takes_tls_clients_and_holds_each_account_to_its_acl(box_broker: Broker) -> None:
    """Local listener: the services and ops. TLS listener: only the remote accounts (integration)."""
    passwords = box_broker.passwords
    for user, password, port, ca in (
            ("integration", "not-the-password", box_broker.tls_port, box_broker.ca),  # wrong password
            ("badge", passwords["badge"], box_broker.tls_port, box_broker.ca),  # a service, from the network
            (None, None, box_broker.local_port, None)):  # anonymous
        refused = Client(user, password, port, ca)
        assert refused.connected().is_failure, f"{user} was let in on port {port}"
        refused.close()

    watcher = Client("ops", passwords["ops"], box_broker.local_port)
    assert not watcher.connected().is_failure
    watcher.subscribe(f"sitewarden/{SITE}/#")
    badge = Client("badge", passwords["badge"], box_broker.local_port)
    integration = Client("integration", passwords["integration"], box_broker.tls_port, box_broker.ca)
    assert not badge.connected().is_failure and not integration.connected().is_failure
    forged = f"sitewarden/{SITE}/alert/door_forced_open"
    cases = ((badge, f"sitewarden/{SITE}/badge/controller-main/door_opened"),
             (integration, f"sitewarden/{SITE}/config/badge/cardholders"))
    for client, own in cases:
        denied = client.publish(forged, b'{"forged": true}')
        assert denied.value == 135, f"publish outside the ACL answered {denied}"  # Not authorized
        assert not client.publish(own, b"{}").is_failure
        # Same connection, so had the forged one gone through it would have arrived first.
        wait_until(lambda own=own: watcher.seen(own), 10, f"{own} at the watcher")
        assert watcher.seen(forged) == [], "a message outside an account's ACL was delivered"
    for client in (badge, integration, watcher):
        client.close()


def _unit(root: Path, service: str) -> dict[str, Any]:
    """User, groups, environment and command of an installed unit, read as systemd reads them."""
    text = (root / f"etc/systemd/system/sitewarden-{service}.service").read_text()
    keys: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            keys.setdefault(key, []).append(value)
    return {"user": keys["User"][0], "group": keys["Group"][0],
            "groups": keys.get("SupplementaryGroups", [""])[0].split(),
            "env": dict(v.split("=", 1) for v in keys["Environment"]), "exec": keys["ExecStart"][0].split(),
            "umask": int(keys["UMask"][0], 8)}


def _start_as_unit(provisioned: Provisioned, service: str) -> subprocess.Popen[str]:
    root = provisioned.root
    unit = _unit(root, service)
    spec = f"{provisioned.uid(unit['user'])}:{provisioned.gid(unit['group'])}"
    extra = [str(provisioned.gid(g)) for g in unit["groups"]]
    argv = ["chroot", f"--userspec={spec}"] + ([f"--groups={','.join(extra)}"] if extra else [])
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **unit["env"]}
    return subprocess.Popen([*argv, str(root), "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items()),
                             *unit["exec"]], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: os.umask(unit["umask"]), start_new_session=True)


def test_services_run_from_their_units_as_their_own_users(provisioned: Provisioned, box_broker: Broker) -> None:
    watcher = Client("ops", box_broker.passwords["ops"], box_broker.local_port)
    assert not watcher.connected().is_failure
    watcher.subscribe(f"sitewarden/{SITE}/status/+")
    watcher.subscribe(f"sitewarden/{SITE}/alert/+")
    services = {name: _start_as_unit(provisioned, name) for name in ("edge", "kiosk")}
    try:
        for name, proc in services.items():
            def online(name: str = name, proc: subprocess.Popen[str] = proc) -> bool:
                if proc.poll() is not None:
                    pytest.fail(f"{name} exited {proc.returncode}:\n{proc.stdout.read() if proc.stdout else ''}")
                return b"online" in watcher.seen(f"sitewarden/{SITE}/status/{name}")
            wait_until(online, 60, f"{name} online on the provisioned broker")
        # The kiosk answers over HTTPS with the certificate the site CA issued for this box. Its `online` comes
        # from its MQTT client, which starts before the web server binds its port: wait for the port too.
        def listening() -> bool:
            if services["kiosk"].poll() is not None:
                pytest.fail(f"kiosk exited {services['kiosk'].returncode}")
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", provisioned.ports["kiosk"])) == 0
        wait_until(listening, 60, "the kiosk's HTTPS port")
        context = ssl.create_default_context(cafile=str(box_broker.ca))
        with urllib.request.urlopen(f"https://localhost:{provisioned.ports['kiosk']}/", context=context,
                                    timeout=20) as page:
            assert page.status == 200 and b"<html" in page.read().lower()
        # A door opens with no grant: the edge raises an alert under its ACL, and IT acknowledges it with the
        # installed command as root (the ops account: a command to the edge, the edge's reply).
        badge = Client("badge", box_broker.passwords["badge"], box_broker.local_port)
        assert not badge.connected().is_failure
        opened = DoorOpened(site=SITE, source="badge/controller-main", door="front")
        badge.publish(topics.fact_topic(SITE, "badge", "controller-main", "door_opened"), dump_event(opened))
        badge.close()
        alert_topic = f"sitewarden/{SITE}/alert/door_forced_open"
        raised = json.loads(wait_until(lambda: watcher.seen(alert_topic), 30, "the forced-open alert")[0])
        alert_id = raised["alert"]["alert_id"]
        acked = provisioned.chroot("/usr/local/bin/sitewarden", "alerts", "ack", alert_id, "--by", "it-admin",
                                   timeout=60)
        assert acked.returncode == 0 and "is acknowledged (by it-admin)" in acked.stdout, acked.stdout + acked.stderr
    finally:
        for proc in services.values():
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in services.values():
            proc.wait(30)
        watcher.close()
    for service, name in (("edge", "edge.db"), ("kiosk", "kiosk.db"), ("kiosk", "kiosk.key")):
        made = (provisioned.root / "var/lib/sitewarden" / name).stat()
        assert made.st_uid == provisioned.uid(f"sw-{service}") and made.st_mode & 0o077 == 0, name
    # IT then makes the reception's staff account as the README says: the wrapper, as the kiosk's user.
    (provisioned.root / "tmp/anna.password").write_text("correct horse battery staple\n")
    (provisioned.root / "tmp/anna.password").chmod(0o644)
    kiosk_user = f"{provisioned.uid('sw-kiosk')}:{provisioned.gid('sitewarden')}"
    added = subprocess.run(["chroot", f"--userspec={kiosk_user}", str(provisioned.root),
                            "/usr/local/bin/sitewarden", "kiosk", "user", "add", "anna", "--role", "reception",
                            "--password-file", "/tmp/anna.password"], capture_output=True, text=True, timeout=60)
    assert added.returncode == 0 and "user anna (reception) added" in added.stdout, added.stdout + added.stderr


# --- updates --------------------------------------------------------------------------------------------------------


def _digests(root: Path, *paths: str) -> dict[str, str]:
    return {p: hashlib.sha256((root / p).read_bytes()).hexdigest() for p in paths}


KEPT = ("var/lib/sitewarden/edge.db", "var/lib/sitewarden/kiosk.db", "var/lib/sitewarden/kiosk.key",
        "etc/sitewarden/secrets/mqtt-edge.password", "etc/sitewarden/secrets/kiosk-tls.key",
        "etc/mosquitto/sitewarden-local.passwd", "etc/mosquitto/certs/server.key", "etc/ssl/sitewarden/site-ca.crt")


@pytest.fixture(scope="module")
def next_release(provisioned: Provisioned) -> Path:
    """The same source one commit later: what a site's update brings."""
    source = provisioned.tmp / "next-release"
    subprocess.run(["git", "clone", "-q", str(REPO), str(source)], check=True)
    subprocess.run(["git", "-C", str(source), "-c", "user.name=SiteWarden test", "-c", "user.email=test@localhost",
                    "commit", "-q", "--allow-empty", "-m", "next release"], check=True)
    return source


@pytest.mark.parametrize(("bad", "named"), [
    ({"edge": {"rules": {"max_open_s": -5}}}, "edge.rules.max_open_s"),
    # Readable by root, who renders the config, but by no service: each checks the whole config at start.
    ({"kiosk": {"watchlist_file": "/etc/shadow"}}, "kiosk.watchlist_file"),
], ids=["value", "unreadable-file"])
def test_bad_config_stops_an_update_before_anything_switches(provisioned: Provisioned, next_release: Path,
                                                             box_broker: Broker, bad: dict[str, Any],
                                                             named: str) -> None:
    """Restarts themselves cannot be seen in a chroot (no systemd); what they would run can: the release
    `current` points at and the config in place, both unchanged."""
    root = provisioned.root
    before = os.readlink(root / "opt/sitewarden/current")
    config_before = (root / "etc/sitewarden/config.yaml").read_bytes()
    run = provisioned.playbook("-e", json.dumps({"sitewarden_source_dir": str(next_release),
                                                 "sitewarden_config": bad}))
    assert run.rc != 0 and run.recap.get("failed") == 1, run.output[-8000:]
    assert named in run.output, run.output[-8000:]
    assert os.readlink(root / "opt/sitewarden/current") == before
    assert (root / "etc/sitewarden/config.yaml").read_bytes() == config_before


def test_a_controller_without_the_site_ca_refuses_to_make_a_new_one(provisioned: Provisioned) -> None:
    pki, aside = provisioned.inventory / "pki", provisioned.tmp / "pki-aside"
    pki.rename(aside)
    try:
        run = provisioned.playbook()
    finally:
        shutil.rmtree(pki, ignore_errors=True)
        aside.rename(pki)
    assert run.rc != 0 and "already trusts a site CA" in run.output, run.output[-8000:]
    assert (provisioned.root / "etc/ssl/sitewarden/site-ca.crt").read_bytes() == (pki / "ca.crt").read_bytes()


def test_update_switches_release_and_keeps_data_and_secrets(provisioned: Provisioned, next_release: Path,
                                                            box_broker: Broker) -> None:
    root = provisioned.root
    before = os.readlink(root / "opt/sitewarden/current")
    kept = _digests(root, *KEPT)
    run = provisioned.playbook("-e", json.dumps({"sitewarden_source_dir": str(next_release)}))
    print(f"update run: {run.seconds:.1f} s, {run.recap}")
    assert run.rc == 0, run.output[-15000:]
    after = os.readlink(root / "opt/sitewarden/current")
    commit = subprocess.run(["git", "-C", str(next_release), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                            text=True, check=True).stdout.strip()
    version = re.search(r'(?m)^version = "([^"]+)"', (REPO / "pyproject.toml").read_text())[1]
    assert after != before and after.endswith(f"/releases/{version}-{commit}"), (before, after)
    assert (root / before.lstrip("/")).is_dir(), "the previous release is kept for a roll back"
    assert _digests(root, *KEPT) == kept
    done = provisioned.chroot("/usr/local/bin/sitewarden", "config", "check")
    assert done.returncode == 0, done.stdout + done.stderr
