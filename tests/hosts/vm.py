"""One booted VM of the host matrix: qemu (KVM when it really works, TCG otherwise) on a
throwaway qcow2 overlay of a cached image, reached by ssh through qemu's user network.

The guest reaches nothing but what the harness forwards: qemu's user network runs with
restrict=on, and each package registry the host uses (apt mirror, PyPI) gets one
guestfwd address inside the guest's 10.0.2.0/24 whose connections qemu hands to
`socat - TCP:<registry>:<port>` on the host. The guest's /etc/hosts names those addresses.

Every qemu this module starts is killed by its PID when the VM is closed, on every exit
path (the caller uses it as a context manager; SIGTERM/SIGINT become exceptions in run.py).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

from .vmimage import KERNEL_CMDLINE, Image

GUEST_MEMORY_MB = 4096
GUEST_CPUS = 2
# Registries get addresses from here up, one per (host, port) the guest may reach.
FORWARD_BASE = 100
SSH_OPTIONS = [
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "LogLevel=ERROR",
    "-o", "BatchMode=yes",
    "-o", "ConnectTimeout=10",
    "-o", "ServerAliveInterval=15",
    "-o", "ServerAliveCountMax=8",
]  # fmt: skip


class VmError(RuntimeError):
    pass


@dataclass(frozen=True)
class Forward:
    """A registry the guest may reach: name, port and the guest-side address for it."""

    name: str
    port: int
    address: str


def registry_forwards(names_ports: list[tuple[str, int]]) -> list[Forward]:
    """One guest address per registry host name; several ports of one name share it."""
    addresses: dict[str, str] = {}
    forwards = []
    for name, port in names_ports:
        address = addresses.setdefault(name, f"10.0.2.{FORWARD_BASE + len(addresses)}")
        forwards.append(Forward(name, port, address))
    return forwards


def kvm_works(kernel: str, timeout: float = 30.0) -> bool:
    """Whether qemu's KVM accelerator really runs a guest here: the image's own kernel,
    booted without a root device, must reach its panic (it cannot mount one) in time.
    /dev/kvm existing is not enough: a paravirtual one may refuse the stock kernel."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    with tempfile.TemporaryDirectory(prefix="lxcexp-kvm-probe-") as tmp:
        serial = os.path.join(tmp, "serial.log")
        command = [
            "qemu-system-x86_64", "-accel", "kvm", "-cpu", "host", "-m", "256", "-smp", "1",
            "-kernel", kernel, "-append", "console=ttyS0 panic=-1 root=/dev/nonexistent",
            "-display", "none", "-serial", f"file:{serial}", "-no-reboot", "-nodefaults",
        ]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and process.poll() is None:
                time.sleep(0.5)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
        with open(serial, errors="replace") as handle:
            text = handle.read()
    return "Kernel panic" in text


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class GuestExitedError(VmError):
    """qemu ended before the guest's ssh answered: its kernel panicked (panic=1, -no-reboot) or qemu failed."""


BOOT_ATTEMPTS = 2


@dataclass
class Vm:
    image: Image
    run_dir: str
    key: str
    forwards: list[Forward]
    accel: str = "tcg"
    port: int = 0
    process: subprocess.Popen | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def serial_log(self) -> str:
        return os.path.join(self.run_dir, "serial.log")

    def command(self) -> list[str]:
        overlay = os.path.join(self.run_dir, "disk.qcow2")
        netdev = f"user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{self.port}-:22"
        for forward in self.forwards:
            target = shlex.quote(f"TCP:{forward.name}:{forward.port}")
            netdev += f",guestfwd=tcp:{forward.address}:{forward.port}-cmd:socat - {target}"
        accel = ["-accel", "kvm", "-cpu", "host"] if self.accel == "kvm" else [
            "-accel", "tcg,thread=multi,tb-size=512", "-cpu", "max"]  # fmt: skip
        return [
            "qemu-system-x86_64", *accel, "-smp", str(GUEST_CPUS), "-m", str(GUEST_MEMORY_MB),
            "-kernel", self.image.kernel, "-initrd", self.image.initrd, "-append", KERNEL_CMDLINE,
            "-drive", f"file={overlay},format=qcow2,if=virtio",
            "-netdev", netdev, "-device", "virtio-net-pci,netdev=n0",
            "-display", "none", "-serial", f"file:{self.serial_log}", "-no-reboot", "-nodefaults",
        ]  # fmt: skip

    def start(self) -> None:
        """Boot, and boot once more if the guest died on the way: under TCG a Debian 13 guest
        kernel once panicked 1.3 s into its boot (an int3 oops while it patched its own code),
        a fault of the emulation, not of what the matrix tests. The first boot's console is
        kept beside the second's (serial.log.1)."""
        for attempt in range(1, BOOT_ATTEMPTS + 1):
            try:
                self._boot()
                return
            except GuestExitedError:
                if attempt == BOOT_ATTEMPTS:
                    raise
                self.stop()
                os.replace(self.serial_log, f"{self.serial_log}.{attempt}")
                os.unlink(os.path.join(self.run_dir, "disk.qcow2"))

    def _boot(self) -> None:
        overlay = os.path.join(self.run_dir, "disk.qcow2")
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-b", self.image.rootfs, "-F", "raw", overlay], check=True
        )
        self.port = _free_port()
        started = time.monotonic()
        with open(os.path.join(self.run_dir, "qemu.log"), "w") as log:
            # A session of its own: qemu and the socat it spawns die together (stop()).
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        with open(os.path.join(self.run_dir, "qemu.pid"), "w") as handle:
            handle.write(f"{self.process.pid}\n")
        self.wait_for_ssh(timeout=600)
        self.timings["boot_s"] = time.monotonic() - started

    def ssh_command(self, remote: str) -> list[str]:
        return ["ssh", *SSH_OPTIONS, "-i", self.key, "-p", str(self.port), "root@127.0.0.1", remote]

    def wait_for_ssh(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise GuestExitedError(
                    f"qemu exited ({self.process.returncode}) before ssh answered; see {self.serial_log}"
                )
            result = subprocess.run(self.ssh_command("true"), capture_output=True, timeout=60)
            if result.returncode == 0:
                return
            time.sleep(3)
        raise VmError(f"no ssh after {timeout:.0f} s; see {self.serial_log}")

    def run(self, remote: str, log_path: str | None = None, timeout: float = 3600, check: bool = True, **kwargs):
        """A command in the guest (a shell line), its output appended to log_path if given."""
        if log_path is None:
            result = subprocess.run(self.ssh_command(remote), capture_output=True, text=True, timeout=timeout, **kwargs)
        else:
            with open(log_path, "a") as log:
                log.write(f"\n$ {remote}\n")
                log.flush()
                result = subprocess.run(
                    self.ssh_command(remote), stdout=log, stderr=subprocess.STDOUT, text=True, timeout=timeout, **kwargs
                )
        if check and result.returncode != 0:
            raise VmError(f"in the guest, `{remote[:120]}` failed ({result.returncode})")
        return result

    def push_tree(self, source_dir: str, files: list[str], target: str) -> None:
        """Copy `files` (relative to source_dir) into the guest's `target`, through tar over ssh."""
        tar = subprocess.Popen(
            ["tar", "-c", "-C", source_dir, "--null", "-T", "-"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        # Over what is there (a fresh VM has nothing; a held one keeps its .venv).
        remote = f"mkdir -p {shlex.quote(target)} && tar -x -C {shlex.quote(target)}"
        receiver = subprocess.Popen(self.ssh_command(remote), stdin=tar.stdout)
        assert tar.stdin is not None and tar.stdout is not None
        tar.stdout.close()
        tar.stdin.write(b"".join(name.encode() + b"\0" for name in files))
        tar.stdin.close()
        if tar.wait() != 0 or receiver.wait() != 0:
            raise VmError(f"copying {source_dir} into the guest failed")

    def push_file(self, source: str, target: str, mode: str = "0644") -> None:
        with open(source, "rb") as handle:
            remote = f"install -D -m {mode} /dev/stdin {shlex.quote(target)}"
            result = subprocess.run(self.ssh_command(remote), stdin=handle, capture_output=True)
        if result.returncode != 0:
            raise VmError(f"copying {source} to the guest's {target} failed: {result.stderr.decode()[-200:]}")

    def write_file(self, target: str, content: str, mode: str = "0644") -> None:
        remote = f"install -D -m {mode} /dev/stdin {shlex.quote(target)}"
        result = subprocess.run(self.ssh_command(remote), input=content.encode(), capture_output=True)
        if result.returncode != 0:
            raise VmError(f"writing the guest's {target} failed: {result.stderr.decode()[-200:]}")

    def fetch_tree(self, remote_dir: str, local_dir: str) -> bool:
        os.makedirs(local_dir, exist_ok=True)
        sender = subprocess.Popen(self.ssh_command(f"tar -c -C {shlex.quote(remote_dir)} ."), stdout=subprocess.PIPE)
        receiver = subprocess.run(["tar", "-x", "-C", local_dir], stdin=sender.stdout)
        assert sender.stdout is not None
        sender.stdout.close()
        return sender.wait() == 0 and receiver.returncode == 0

    def stop(self) -> None:
        """End qemu, by its PID (its process group: qemu and the socat it spawned). No guest
        shutdown: the disk is a throwaway overlay, and results were fetched before."""
        if self.process is None:
            return
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 30)):
            if self.process.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=wait)
        # socat children left in the group once qemu itself is gone.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process = None

    def __enter__(self) -> Vm:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def require_tools() -> None:
    tools = ("qemu-system-x86_64", "qemu-img", "socat", "ssh", "debootstrap")
    missing = [tool for tool in tools if not shutil.which(tool)]
    if missing:
        raise VmError(
            f"test-hosts needs {', '.join(missing)}: apt-get install qemu-system-x86 qemu-utils socat "
            "openssh-client debootstrap"
        )
